"""No server process outlives the Python process that started it, however that ends."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

CHILD = """
import sys, threading
from ferrite_integrations.testing import EmbeddedServer

servers = []
if sys.argv[1] == "thread":
    worker = threading.Thread(target=lambda: servers.append(EmbeddedServer().__enter__()))
    worker.start()
    worker.join()
else:
    servers.append(EmbeddedServer().__enter__())
print(servers[0].pid, servers[0].directory, flush=True)
sys.stdin.readline()
"""

ENDINGS = {
    "sigkill": lambda child: child.send_signal(signal.SIGKILL),
    "sigterm": lambda child: child.send_signal(signal.SIGTERM),
    "sigint": lambda child: child.send_signal(signal.SIGINT),
    "exit without close": lambda child: child.stdin.write("\n"),
}


@pytest.mark.parametrize("ending", list(ENDINGS))
@pytest.mark.parametrize("started_from", ["main", "thread"])
def test_no_server_outlives_its_python_process(ending: str, started_from: str) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, started_from],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    directory = ""
    try:
        assert child.stdout is not None
        pid, _, directory = child.stdout.readline().strip().partition(" ")
        assert pid.isdigit(), child.communicate(timeout=10)[1]
        server_pid = int(pid)
        assert not _gone(server_pid)

        ENDINGS[ending](child)
        child.communicate(timeout=10)

        assert _wait_gone(server_pid), f"server {server_pid} survived {ending}"
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
        if directory:
            # Only a clean exit removes the temporary directory; signals leave it behind.
            shutil.rmtree(directory, ignore_errors=True)


def _wait_gone(pid: int, timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _gone(pid):
            return True
        time.sleep(0.02)
    return False


def _gone(pid: int) -> bool:
    """Whether ``pid`` has exited. Its parent died, so nobody may reap it: a zombie is gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as status:
            return any(line.split()[1:2] == ["Z"] for line in status if line.startswith("State:"))
    except FileNotFoundError:
        return True


FORKING_PARENT = """
import os, sys
import redis
from ferrite_integrations.testing import EmbeddedServer

server = EmbeddedServer(unix_socket=True).__enter__()
child = os.fork()
if child == 0:
    sys.exit(0)  # a normal exit runs the inherited atexit hooks
os.waitpid(child, 0)
client = redis.Redis(unix_socket_path=server.unix_socket_path)
assert client.ping()
client.close()
server.restart()
assert redis.Redis(**server.redis_kwargs()).ping()
server.close()
print("parent server intact")
"""


def test_a_forked_child_leaves_the_parents_servers_alone() -> None:
    done = subprocess.run(
        [sys.executable, "-W", "ignore::DeprecationWarning", "-c", FORKING_PARENT],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "parent server intact" in done.stdout
