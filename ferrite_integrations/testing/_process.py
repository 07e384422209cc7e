"""Spawning server processes that cannot outlive the Python process that started them.

On Linux every child is started with ``PR_SET_PDEATHSIG`` = ``SIGKILL``, so the kernel kills
it when its parent goes away, even on ``SIGKILL`` of the parent, where no Python cleanup
runs. The kernel sends that signal when the *thread* that forked the child exits, not the
process; so every child is forked by one long-lived daemon thread (:class:`_Spawner`), and a
server started from a short-lived thread keeps running after that thread ends.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import TypeVar, cast

__all__ = ["spawn", "terminate", "wait_for_state"]

_T = TypeVar("_T")
_PR_SET_PDEATHSIG = 1
_STOP_GRACE = 5.0
_POLL_INTERVAL = 0.005

_Job = tuple[Callable[[], object], "concurrent.futures.Future[object]"]


class _Spawner:
    """Runs callables on one daemon thread that lives as long as the process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def call(self, func: Callable[[], _T]) -> _T:
        """Run ``func`` on the spawner thread and return its result (or raise its error)."""
        future: concurrent.futures.Future[object] = concurrent.futures.Future()
        self._ensure_thread()
        self._jobs.put((func, future))
        return cast(_T, future.result())

    def _ensure_thread(self) -> None:
        with self._lock:
            # After os.fork() the thread object survives but the thread does not.
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._serve, name="ferrite-embedded-spawner", daemon=True
                )
                self._thread.start()

    def _serve(self) -> None:
        while True:
            func, future = self._jobs.get()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(func())
            except BaseException as exc:
                future.set_exception(exc)


_SPAWNER = _Spawner()


def _pdeathsig_preexec() -> Callable[[], None] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec


def spawn(argv: Sequence[str], *, cwd: str, output_file: str) -> subprocess.Popen[bytes]:
    """Start ``argv`` with stdout and stderr appended to ``output_file``.

    The child runs in its own process group, so a terminal's Ctrl-C reaches only the
    Python process, whose exit handlers stop the child in order.

    Args:
        argv: the command line.
        cwd: working directory of the child.
        output_file: file that receives the child's stdout and stderr.
    """

    def start() -> subprocess.Popen[bytes]:
        with open(output_file, "ab") as output:
            return subprocess.Popen(
                list(argv),
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                # The hook only calls prctl, getppid and kill: no Python lock that another
                # thread may have held at fork time is needed in the child.
                preexec_fn=_pdeathsig_preexec(),  # noqa: PLW1509
                process_group=0,
            )

    return _SPAWNER.call(start)


def terminate(process: subprocess.Popen[bytes], *, paused: bool) -> None:
    """Stop ``process``: SIGTERM, a bounded wait, then SIGKILL.

    Args:
        process: the child to stop; returns at once if it already exited.
        paused: the child was stopped with SIGSTOP and must get SIGCONT to act on SIGTERM.
    """
    if process.poll() is None:
        if paused:
            process.send_signal(signal.SIGCONT)
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=_STOP_GRACE)
        except subprocess.TimeoutExpired:
            process.kill()
    process.wait()


def wait_for_state(pid: int, *, stopped: bool, timeout: float = 1.0) -> None:
    """Wait until the kernel reports ``pid`` as stopped (or as not stopped).

    Signals reach another process asynchronously; this makes pause/resume take effect
    before they return. A no-op where ``/proc`` is unavailable.

    Args:
        pid: the process to watch.
        stopped: wait for the stopped state when true, for any other state when false.
        timeout: seconds to wait at most.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = _proc_state(pid)
        if state is None or (state in "Tt") == stopped:
            return
        time.sleep(_POLL_INTERVAL)


def _proc_state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            return stat.read().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return None
