"""``EmbeddedServer``: a real Redis-protocol server process for tests and demos."""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ferrite_integrations.testing._binary import (
    NO_TLS_HINT,
    binary_version,
    find_server_binary,
    supports_tls,
)
from ferrite_integrations.testing._certs import TLSFiles, make_tls_files
from ferrite_integrations.testing._conf import ServerOptions, extra_directives, render_config
from ferrite_integrations.testing._errors import EmbeddedServerError
from ferrite_integrations.testing._net import LOOPBACK, free_port
from ferrite_integrations.testing._process import spawn, terminate, wait_for_state

if TYPE_CHECKING:
    import trustme

__all__ = ["HARNESS_CLIENT_NAME", "EmbeddedServer"]

HARNESS_CLIENT_NAME = "ferrite-harness"
"""``CLIENT SETNAME`` of the harness's control connection, left out of every client count."""

_MAX_SOCKET_PATH = 100
_PORT_ATTEMPTS = 3
_READY_POLL = 0.02
_PROBE_TIMEOUT = 0.25
_CONTROL_TIMEOUT = 5.0


class _PortTakenError(EmbeddedServerError):
    """The server could not bind its port: another process took it."""


class EmbeddedServer:
    """A real Redis-protocol server process on a free loopback port, for tests and demos.

    The server runs in its own temporary directory without persistence; its configuration
    file, logs and TLS certificates live there. Use it as a context manager (``with
    EmbeddedServer() as server:`` starts it and closes it), or call :meth:`start` and
    :meth:`close`. Servers still open when the interpreter exits are closed then, and on
    Linux the kernel kills the server if the Python process dies (``PR_SET_PDEATHSIG``;
    servers are forked by one long-lived helper thread, so a server started from a
    short-lived thread outlives that thread).

    Controls (``start``, ``stop``, ``pause``, ``kill_clients``, ...) are serialised by a
    lock, so one server can be driven from several threads.

    Args:
        password: require this password (``requirepass``, or the ACL user's password).
        username: create this ACL user with every permission and switch the default user
            off; needs ``password``.
        tls: serve TLS only, with certificates made by ``trustme`` (see ``tls_files``).
        mutual_tls: like ``tls``, and the server also requires a client certificate.
        unix_socket: also listen on a unix socket (see ``unix_socket_path``).
        binary: the server binary; by default found by :func:`find_server_binary`.
        startup_timeout: seconds to wait for the server to answer PING after each start.
        extra_config: more configuration directives, written verbatim as ``name value``.
        db: the database number in ``url`` and ``redis_kwargs()``.

    Raises:
        ConfigError: an option has an impossible value.
        ServerBinaryNotFoundError: no server binary could be found.
        EmbeddedServerError: TLS was asked for but the binary lacks TLS or ``trustme`` is
            missing.
    """

    def __init__(
        self,
        *,
        password: str | None = None,
        username: str | None = None,
        tls: bool = False,
        mutual_tls: bool = False,
        unix_socket: bool = False,
        binary: str | None = None,
        startup_timeout: float = 10.0,
        extra_config: Mapping[str, str] | None = None,
        db: int = 0,
    ) -> None:
        self._options = ServerOptions(
            password=password,
            username=username,
            tls=tls or mutual_tls,
            mutual_tls=mutual_tls,
            unix_socket=unix_socket,
            startup_timeout=startup_timeout,
            extra_config=extra_directives(extra_config),
            db=db,
        )
        self._binary = find_server_binary(binary)
        if self._options.tls and not supports_tls(self._binary):
            raise EmbeddedServerError(
                f"{self._binary} was built without TLS support; {NO_TLS_HINT}"
            )
        self._binary_version = binary_version(self._binary)
        self._lock = threading.RLock()
        self._process: subprocess.Popen[bytes] | None = None
        self._control: redis.Redis | None = None
        self._port: int | None = None
        self._paused = False
        self._closed = False
        self._version: str | None = None
        self._workdir = tempfile.mkdtemp(prefix="ferrite-server-")
        self._socket_dir: str | None = None
        try:
            self._tls = make_tls_files(self._workdir) if self._options.tls else None
            self._socket_path = self._make_socket_path() if unix_socket else None
        except BaseException:
            self._remove_dirs()
            raise
        _register(self)

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Start the server and wait until it answers PING; a no-op if it is running.

        The first start picks a free port; later starts reuse that port, so ``url`` stays
        valid across :meth:`restart`.

        Raises:
            EmbeddedServerError: the server exited or did not answer within
                ``startup_timeout``; the message ends with the server's last log lines.
        """
        with self._lock:
            self._check_open()
            if self.running:
                return
            self._discard_process()
            if self._port is not None:
                self._launch(self._port)
                return
            self._launch_on_free_port()

    def _launch_on_free_port(self) -> None:
        for attempt in range(1, _PORT_ATTEMPTS + 1):
            try:
                self._launch(free_port())
            except _PortTakenError:
                self._port = None
                if attempt == _PORT_ATTEMPTS:
                    raise
            except BaseException:
                self._port = None
                raise
            else:
                return

    def _launch(self, port: int) -> None:
        self._port = port
        config_file = os.path.join(self._workdir, "server.conf")
        with open(config_file, "w", encoding="utf-8") as config:
            config.write(self._render_config(port))
        marks = (_size(self._output_file), _size(self._log_file))
        self._process = spawn(
            [self._binary, config_file], cwd=self._workdir, output_file=self._output_file
        )
        try:
            info = self._wait_ready(self._process, marks)
            self._version = str(info.get("redis_version", "unknown"))
            self._control = self._connect_control()
        except BaseException:
            self._discard_process()
            raise

    def _render_config(self, port: int) -> str:
        return render_config(
            self._options,
            port=port,
            workdir=self._workdir,
            logfile=self._log_file,
            socket_path=self._socket_path,
            tls_files=self._tls[0] if self._tls else None,
        )

    def _wait_ready(
        self, process: subprocess.Popen[bytes], marks: tuple[int, int]
    ) -> dict[str, Any]:
        deadline = time.monotonic() + self._options.startup_timeout
        with redis.Redis(**self._control_kwargs(_PROBE_TIMEOUT)) as probe:
            while (info := _own_server_info(probe, process.pid)) is None:
                status = process.poll()
                if status is not None:
                    raise self._startup_error(f"exited with status {status}", marks)
                if time.monotonic() >= deadline:
                    timeout = self._options.startup_timeout
                    raise self._startup_error(f"did not answer PING within {timeout:g} s", marks)
                time.sleep(_READY_POLL)
        return info

    def _connect_control(self) -> redis.Redis:
        control = redis.Redis(**self._control_kwargs(_CONTROL_TIMEOUT))
        # The server may not have noticed yet that the readiness probe hung up, and
        # kill_clients would then count (and kill) it: wait until only one harness
        # connection remains.
        deadline = time.monotonic() + _PROBE_TIMEOUT
        while time.monotonic() < deadline and _harness_connections(control) > 1:
            time.sleep(_READY_POLL / 4)
        return control

    def _control_kwargs(self, socket_timeout: float) -> dict[str, Any]:
        return {
            **self.redis_kwargs(),
            "client_name": HARNESS_CLIENT_NAME,
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": socket_timeout,
            "retry": Retry(NoBackoff(), 0),
        }

    def _startup_error(self, reason: str, marks: tuple[int, int]) -> EmbeddedServerError:
        output = _read_from(self._output_file, marks[0]) + _read_from(self._log_file, marks[1])
        tail = _last_lines(output, 20) or "(no output)"
        error = (
            _PortTakenError if "address already in use" in output.lower() else EmbeddedServerError
        )
        return error(
            f"{self._binary} on port {self._port} {reason}; its last output lines:\n{tail}"
        )

    def stop(self) -> None:
        """Stop the server: SIGTERM, a bounded wait, then SIGKILL; a no-op if not running.

        A paused server is resumed first so that it can act on SIGTERM. The harness's
        control connection is closed.
        """
        with self._lock:
            self._discard_process()

    def _discard_process(self) -> None:
        control, self._control = self._control, None
        if control is not None:
            control.close()
        process, self._process = self._process, None
        if process is not None:
            terminate(process, paused=self._paused)
        self._paused = False

    def restart(self) -> None:
        """Stop the server and start it again on the same port (its data is gone)."""
        with self._lock:
            self.stop()
            self.start()

    def pause(self) -> None:
        """Freeze the server with SIGSTOP, like a hung server: connections stay open and
        requests time out. A no-op if already paused.

        Raises:
            EmbeddedServerError: the server is not running.
        """
        with self._lock:
            process = self._running_process()
            if not self._paused:
                process.send_signal(signal.SIGSTOP)
                wait_for_state(process.pid, stopped=True)
                self._paused = True

    def resume(self) -> None:
        """Let a paused server run again (SIGCONT); a no-op if it is not paused."""
        with self._lock:
            process = self._running_process()
            if self._paused:
                process.send_signal(signal.SIGCONT)
                wait_for_state(process.pid, stopped=False)
                self._paused = False

    def close(self) -> None:
        """Stop the server and delete its temporary directory; idempotent.

        A closed server cannot be started again.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._discard_process()
            finally:
                self._remove_dirs()
                _unregister(self)

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- clients -----------------------------------------------------------------------

    def kill_clients(self) -> int:
        """Close every client connection (normal and pub/sub) except the harness's own.

        Returns:
            How many connections the server closed.
        """
        with self._lock:
            control = self._ready_control()
            killed = 0
            for kind in ("normal", "pubsub"):
                killed += control.client_kill_filter(_type=kind, skipme=True)
            return killed

    def client_list(self) -> list[dict[str, str]]:
        """Return the server's ``CLIENT LIST`` without the harness's control connection."""
        with self._lock:
            entries = self._ready_control().client_list()
        return [entry for entry in entries if entry.get("name") != HARNESS_CLIENT_NAME]

    def connected_clients(self, name: str | None = None) -> int:
        """Count client connections, not counting the harness's control connection.

        Args:
            name: count only connections with this ``CLIENT SETNAME`` name.
        """
        clients = self.client_list()
        return sum(1 for entry in clients if name is None or entry.get("name") == name)

    def redis_kwargs(self, *, unix_socket: bool = False) -> dict[str, Any]:
        """Keyword arguments for ``redis.Redis(**kwargs)`` that connect to this server.

        Args:
            unix_socket: connect over the unix socket instead of TCP (and so without TLS).
        """
        kwargs: dict[str, Any] = {"db": self._options.db}
        if unix_socket:
            kwargs["unix_socket_path"] = self.unix_socket_path
        else:
            kwargs.update(host=LOOPBACK, port=self.port, **self._ssl_kwargs())
        if self._options.username is not None:
            kwargs["username"] = self._options.username
        if self._options.password is not None:
            kwargs["password"] = self._options.password
        return kwargs

    def _ssl_kwargs(self) -> dict[str, Any]:
        if not self._options.tls:
            return {}
        files = self.tls_files
        kwargs: dict[str, Any] = {"ssl": True, "ssl_ca_certs": files.ca_file}
        if self._options.mutual_tls:
            kwargs.update(ssl_certfile=files.client_cert_file, ssl_keyfile=files.client_key_file)
        return kwargs

    # -- properties --------------------------------------------------------------------

    @property
    def binary(self) -> str:
        """Absolute path of the server binary."""
        return self._binary

    @property
    def supports_tls(self) -> bool:
        """Whether this server's binary was built with TLS support."""
        return supports_tls(self._binary)

    @property
    def directory(self) -> str:
        """The server's temporary directory: config, logs and certificates."""
        return self._workdir

    @property
    def host(self) -> str:
        """The address the server listens on: always ``127.0.0.1``."""
        return LOOPBACK

    @property
    def port(self) -> int:
        """The TCP port (the TLS port for TLS servers); fixed after the first start."""
        if self._port is None:
            raise EmbeddedServerError("the server has no port yet: call start() first")
        return self._port

    @property
    def url(self) -> str:
        """A redis-py URL for this server over TCP, with credentials and TLS files."""
        scheme = "rediss" if self._options.tls else "redis"
        query = urllib.parse.urlencode(
            {key: value for key, value in self._ssl_kwargs().items() if key != "ssl"}
        )
        address = f"{self._userinfo()}{LOOPBACK}:{self.port}/{self._options.db}"
        return f"{scheme}://{address}" + (f"?{query}" if query else "")

    @property
    def unix_url(self) -> str:
        """A redis-py URL for this server over its unix socket."""
        path = urllib.parse.quote(self.unix_socket_path)
        return f"unix://{self._userinfo()}{path}?db={self._options.db}"

    def _userinfo(self) -> str:
        if self._options.password is None:
            return ""
        username = urllib.parse.quote(self._options.username or "", safe="")
        return f"{username}:{urllib.parse.quote(self._options.password, safe='')}@"

    @property
    def unix_socket_path(self) -> str:
        """Path of the unix socket the server also listens on.

        Raises:
            EmbeddedServerError: the server was not created with ``unix_socket=True``.
        """
        if self._socket_path is None:
            raise EmbeddedServerError("this server has no unix socket: pass unix_socket=True")
        return self._socket_path

    @property
    def tls_files(self) -> TLSFiles:
        """The PEM files of the server's TLS setup.

        Raises:
            EmbeddedServerError: the server was not created with ``tls`` or ``mutual_tls``.
        """
        return self._tls_setup()[0]

    @property
    def tls_ca(self) -> trustme.CA:
        """The ``trustme.CA`` that signed the certificates, to sign more of them."""
        return self._tls_setup()[1]

    def _tls_setup(self) -> tuple[TLSFiles, trustme.CA]:
        if self._tls is None:
            raise EmbeddedServerError("this server does not use TLS: pass tls=True")
        return self._tls

    @property
    def pid(self) -> int | None:
        """The server process id while it runs, else ``None``."""
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    @property
    def running(self) -> bool:
        """Whether the server process is alive (a paused server is running)."""
        return self.pid is not None

    @property
    def paused(self) -> bool:
        """Whether the server is paused by :meth:`pause`."""
        return self._paused

    @property
    def version(self) -> str:
        """The server version from ``INFO server`` (``redis_version``) at the last start."""
        if self._version is None:
            raise EmbeddedServerError("the server version is known once it started")
        return self._version

    def log_tail(self, lines: int = 50) -> str:
        """Return the last lines of the server's log and captured stdout/stderr.

        Args:
            lines: how many lines at most.
        """
        return _last_lines(_read_from(self._output_file, 0) + _read_from(self._log_file, 0), lines)

    def __repr__(self) -> str:
        address = f"{LOOPBACK}:{self._port}" if self._port is not None else "no port yet"
        mode = "mutual-tls" if self._options.mutual_tls else "tls" if self._options.tls else "tcp"
        name = os.path.basename(self._binary)
        version = self._version or self._binary_version
        return f"<EmbeddedServer {name} {version} {address} {mode} {self._state()}>"

    def _state(self) -> str:
        if self._closed:
            return "closed"
        if self._paused:
            return "paused"
        if self.running:
            return f"running pid={self.pid}"
        return "stopped" if self._port is not None else "not started"

    # -- internals ---------------------------------------------------------------------

    @property
    def _output_file(self) -> str:
        return os.path.join(self._workdir, "stdout.log")

    @property
    def _log_file(self) -> str:
        return os.path.join(self._workdir, "server.log")

    def _make_socket_path(self) -> str:
        path = os.path.join(self._workdir, "server.sock")
        if len(os.fsencode(path)) < _MAX_SOCKET_PATH:
            return path
        self._socket_dir = tempfile.mkdtemp(prefix="ferrite-", dir="/tmp")
        return os.path.join(self._socket_dir, "server.sock")

    def _remove_dirs(self) -> None:
        for directory in (self._workdir, self._socket_dir):
            if directory is not None:
                shutil.rmtree(directory, ignore_errors=True)

    def _check_open(self) -> None:
        if self._closed:
            raise EmbeddedServerError("the server is closed; create a new EmbeddedServer")

    def _running_process(self) -> subprocess.Popen[bytes]:
        self._check_open()
        process = self._process
        if process is None or process.poll() is not None:
            raise EmbeddedServerError("the server is not running: call start() first")
        return process

    def _ready_control(self) -> redis.Redis:
        self._running_process()
        if self._paused:
            raise EmbeddedServerError("the server is paused: call resume() first")
        assert self._control is not None  # set whenever a started process is kept
        return self._control


def _own_server_info(probe: redis.Redis, pid: int) -> dict[str, Any] | None:
    """``INFO server`` of the server process ``pid``, or ``None`` if it does not answer.

    Another process may have taken the port: a server that answers with another
    ``process_id`` is not ours.
    """
    try:
        info = probe.info("server")
    except redis.AuthenticationError as exc:
        raise EmbeddedServerError(f"the server rejected the harness's credentials: {exc}") from exc
    except (redis.ConnectionError, redis.TimeoutError):
        return None
    return info if int(info.get("process_id", pid)) == pid else None


def _harness_connections(control: redis.Redis) -> int:
    return sum(entry.get("name") == HARNESS_CLIENT_NAME for entry in control.client_list())


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _read_from(path: str, offset: int) -> str:
    try:
        with open(path, "rb") as file:
            file.seek(offset)
            return file.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _last_lines(text: str, lines: int) -> str:
    return "\n".join(text.splitlines()[-lines:]) if lines > 0 else ""


# -- servers still open at interpreter exit ----------------------------------------------


class _Live:
    """Servers of this process still open; ``lock`` guards ``servers``."""

    lock = threading.Lock()
    servers: dict[int, EmbeddedServer] = {}  # noqa: RUF012  (process-wide registry)


def _register(server: EmbeddedServer) -> None:
    with _Live.lock:
        _Live.servers[id(server)] = server


def _unregister(server: EmbeddedServer) -> None:
    with _Live.lock:
        _Live.servers.pop(id(server), None)


def _forget_all_in_child() -> None:
    # A forked child (a gunicorn worker, a test that forks) does not own the parent's
    # servers: at its exit it must neither stop them nor delete their directories.
    _Live.lock = threading.Lock()
    _Live.servers = {}


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_all_in_child)


@atexit.register
def _close_all_at_exit() -> None:
    with _Live.lock:
        servers = list(_Live.servers.values())
    for server in servers:
        # Nothing can report an error this late; keep closing the others.
        with contextlib.suppress(Exception):
            server.close()
