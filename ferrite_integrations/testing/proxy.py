"""``FaultProxy``: a loopback TCP proxy that injects network faults a real server cannot.

It sits between a client and a real server and, on request, delays traffic, hangs it,
refuses connections, resets them, or lets a command reach the server and then loses the
reply: the case a client must not answer by re-sending a non-idempotent command.

One accept thread owns the listening socket; each client connection gets one thread that
pumps bytes both ways through non-blocking sockets and a selector. Every wait is bounded by
a short poll interval, so :meth:`FaultProxy.close` returns promptly.
"""

from __future__ import annotations

import contextlib
import enum
import selectors
import socket
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from ferrite_integrations.errors import FerriteError
from ferrite_integrations.testing._net import LOOPBACK

__all__ = ["FaultProxy", "FaultProxyError"]

_POLL = 0.05
_CHUNK = 65536
_QUEUE_LIMIT = 1 << 20
_CONNECT_TIMEOUT = 1.0
_JOIN_TIMEOUT = 5.0
_BACKLOG = 128


class FaultProxyError(FerriteError):
    """The fault proxy could not listen, or was used after :meth:`FaultProxy.close`."""


class _Mode(enum.Enum):
    PASS_THROUGH = "pass-through"
    DELAY = "delay"
    BLACKHOLE = "blackhole"
    REFUSE = "refuse"
    DROP_REPLY = "drop-reply"


@dataclass(frozen=True)
class _Policy:
    """What a connection does with the bytes it reads, read afresh for every chunk."""

    forward: bool
    delay: float


class FaultProxy:
    """A loopback TCP proxy in front of ``target_host:target_port`` with switchable faults.

    It listens on ``127.0.0.1`` on a free port (see :attr:`url`). Use it as a context
    manager, or call :meth:`start` and :meth:`close`. The fault methods may be called from
    any thread at any time; unless noted they affect new and existing connections alike,
    and each replaces the previous fault.

    Args:
        target_host: the host of the server to forward to.
        target_port: the port of the server to forward to.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._port = 0
        self._closed = False
        self._listener: _Listener | None = None
        # _control serialises the public controls; it may be held while joining threads
        # because connection and accept threads only ever take _state.
        self._control = threading.Lock()
        self._state = threading.Lock()
        self._mode = _Mode.PASS_THROUGH
        self._delay = 0.0
        self._drops_left = 0
        self._drop_match: bytes | None = None
        self._accepted = 0
        self._requests = 0
        self._faults = 0
        self._links: set[_Link] = set()

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Start listening (on a free port the first time); a no-op while listening.

        Raises:
            FaultProxyError: the proxy is closed, or the port could not be bound.
        """
        with self._control:
            self._check_open()
            if self._mode is not _Mode.REFUSE:
                self._listen()

    def close(self) -> None:
        """Stop listening, close every connection and join every thread; idempotent."""
        with self._control:
            if self._closed:
                return
            self._closed = True
            self._unlisten()
            self._cut_links()

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

    # -- faults ------------------------------------------------------------------------

    def pass_through(self) -> None:
        """Forward everything unchanged (the default); listens again after :meth:`refuse`."""
        self._switch(_Mode.PASS_THROUGH)

    def delay(self, seconds: float) -> None:
        """Hold every chunk forwarded in either direction for ``seconds`` before sending it.

        The delay applies per chunk read, not per byte, so ``delay(0.001)`` adds about 2 ms
        to a request/reply round trip, like a network hop. Listens again after
        :meth:`refuse`.

        Args:
            seconds: how long to hold each chunk; ``0`` is the same as :meth:`pass_through`.

        Raises:
            ValueError: ``seconds`` is negative.
        """
        if seconds < 0:
            raise ValueError(f"delay must be >= 0 seconds, got {seconds!r}")
        self._switch(_Mode.DELAY, delay=seconds)

    def blackhole(self) -> None:
        """Accept connections and read what clients send, but forward nothing either way.

        Models a hung network: clients time out rather than fail. Chunks still waiting out
        a :meth:`delay` are dropped too. Listens again after :meth:`refuse`.
        """
        self._switch(_Mode.BLACKHOLE)

    def refuse(self) -> None:
        """Stop listening, so new connects are refused, and close every open connection.

        :meth:`pass_through`, :meth:`delay`, :meth:`blackhole` and :meth:`drop_reply_after`
        listen again on the same port.
        """
        with self._control:
            self._check_open()
            self._set_mode(_Mode.REFUSE)
            self._unlisten()
            self._cut_links()

    def drop_reply_after(self, count: int = 1, match: bytes | None = None) -> None:
        """Lose the server's reply to the next ``count`` requests, after the server ran them.

        Each chunk a client sends counts as one request. A request that arms the fault is
        forwarded to the server; when the server's next bytes arrive on that connection the
        proxy closes the client's socket (the client sees EOF or a reset) and the server-side
        socket without forwarding them, and counts the fault in :attr:`faults_triggered`.
        Other requests pass through. Once ``count`` requests have armed the fault the proxy
        is back in pass-through. Listens again after :meth:`refuse`.

        Args:
            count: how many requests arm the fault.
            match: when given, only requests whose bytes contain it arm the fault
                (e.g. ``b"INCR"``).

        Raises:
            ValueError: ``count`` is less than 1.
        """
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count!r}")
        self._switch(_Mode.DROP_REPLY, drops=count, match=match)

    def cut_all(self, *, reset: bool = False) -> None:
        """Close every open client connection now; keep listening.

        Args:
            reset: close with a TCP reset (RST), as a load balancer or a NAT that dropped
                the connection does, instead of an orderly close (FIN).
        """
        with self._control:
            self._check_open()
            self._cut_links(reset=reset)

    # -- observation -------------------------------------------------------------------

    @property
    def host(self) -> str:
        """The address the proxy listens on: always ``127.0.0.1``."""
        return LOOPBACK

    @property
    def port(self) -> int:
        """The port the proxy listens on; the same across :meth:`refuse` and reopening.

        Raises:
            FaultProxyError: the proxy was never started.
        """
        if not self._port:
            raise FaultProxyError("the proxy has no port until start() is called")
        return self._port

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``, for ``redis.Redis.from_url``."""
        return f"redis://{self.host}:{self.port}/0"

    @property
    def target(self) -> tuple[str, int]:
        """The ``(host, port)`` the proxy forwards to."""
        return self._target

    @property
    def mode(self) -> str:
        """The current fault: ``pass-through``, ``delay``, ``blackhole``, ``refuse`` or
        ``drop-reply``."""
        return self._mode.value

    @property
    def connections_accepted(self) -> int:
        """Client connections accepted since start or :meth:`reset_counters`."""
        with self._state:
            return self._accepted

    @property
    def open_connections(self) -> int:
        """Client connections currently open through the proxy."""
        with self._state:
            return len(self._links)

    @property
    def faults_triggered(self) -> int:
        """Replies lost by :meth:`drop_reply_after` since start or :meth:`reset_counters`."""
        with self._state:
            return self._faults

    @property
    def requests_forwarded(self) -> int:
        """Chunks of client data forwarded to the server: one per round trip for requests
        that fit one read (a command, or a pipeline of small commands)."""
        with self._state:
            return self._requests

    def reset_counters(self) -> None:
        """Set every counter back to zero."""
        with self._state:
            self._accepted = 0
            self._faults = 0
            self._requests = 0

    def _count_request(self) -> None:
        with self._state:
            self._requests += 1

    def __repr__(self) -> str:
        port = self._port or "-"
        state = "closed" if self._closed else self.mode
        return (
            f"<FaultProxy 127.0.0.1:{port} -> {self._target[0]}:{self._target[1]} {state}, "
            f"open={self.open_connections} accepted={self.connections_accepted} "
            f"faults={self.faults_triggered}>"
        )

    # -- internals used by the accept and connection threads ---------------------------

    def _policy(self) -> _Policy:
        with self._state:
            return _Policy(forward=self._mode is not _Mode.BLACKHOLE, delay=self._delay)

    def _claim_drop(self, request: bytes) -> bool:
        """Whether ``request`` arms a lost reply; each claim uses up one of ``count``."""
        with self._state:
            if self._mode is not _Mode.DROP_REPLY:
                return False
            if self._drop_match is not None and self._drop_match not in request:
                return False
            self._drops_left -= 1
            if self._drops_left == 0:
                self._mode = _Mode.PASS_THROUGH
            return True

    def _record_fault(self) -> None:
        with self._state:
            self._faults += 1

    def _adopt(self, client: socket.socket) -> None:
        link = _Link(self, client)
        # Started under _state, so a link another thread finds in _links can be joined.
        with self._state:
            self._accepted += 1
            self._links.add(link)
            link.start()

    def _forget(self, link: _Link) -> None:
        with self._state:
            self._links.discard(link)

    # -- internals (caller holds _control) ---------------------------------------------

    def _switch(
        self,
        mode: _Mode,
        *,
        delay: float = 0.0,
        drops: int = 0,
        match: bytes | None = None,
    ) -> None:
        with self._control:
            self._check_open()
            self._set_mode(mode, delay=delay, drops=drops, match=match)
            if self._port:
                self._listen()

    def _set_mode(
        self,
        mode: _Mode,
        *,
        delay: float = 0.0,
        drops: int = 0,
        match: bytes | None = None,
    ) -> None:
        with self._state:
            self._mode = mode
            self._delay = delay
            self._drops_left = drops
            self._drop_match = match

    def _listen(self) -> None:
        if self._listener is None:
            self._listener = _Listener.open(self, self._port)
            self._port = self._listener.port

    def _unlisten(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()

    def _cut_links(self, *, reset: bool = False) -> None:
        with self._state:
            links = list(self._links)
        for link in links:
            link.stop(reset=reset)
        for link in links:
            link.join()

    def _check_open(self) -> None:
        if self._closed:
            raise FaultProxyError("the proxy is closed")


class _Listener:
    """The listening socket and the thread that accepts on it; owned by one FaultProxy."""

    def __init__(self, proxy: FaultProxy, sock: socket.socket) -> None:
        self._proxy = proxy
        self._sock = sock
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"fault-proxy-accept-{self.port}", daemon=True
        )

    @classmethod
    def open(cls, proxy: FaultProxy, port: int) -> _Listener:
        """Listen on ``127.0.0.1:port`` (a free port if ``0``) and start accepting."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((LOOPBACK, port))
            sock.listen(_BACKLOG)
            sock.setblocking(False)
        except OSError as error:
            sock.close()
            raise FaultProxyError(f"the proxy could not listen on port {port}: {error}") from error
        listener = cls(proxy, sock)
        listener._thread.start()
        return listener

    @property
    def port(self) -> int:
        port: int = self._sock.getsockname()[1]
        return port

    def close(self) -> None:
        """Stop accepting, join the thread, then close the socket (never while selected)."""
        self._stopping.set()
        self._thread.join(_JOIN_TIMEOUT)
        self._sock.close()

    def _run(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self._sock, selectors.EVENT_READ)
            while not self._stopping.is_set():
                if selector.select(_POLL):
                    self._accept_pending()

    def _accept_pending(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            self._proxy._adopt(client)


class _Queue:
    """Chunks waiting to be sent one way: ``(due time, bytes, arms a lost reply)``."""

    def __init__(self) -> None:
        self.chunks: deque[tuple[float, bytes, bool]] = deque()
        self.size = 0

    def put(self, due: float, data: bytes, arms: bool) -> None:
        self.chunks.append((due, data, arms))
        self.size += len(data)

    def clear(self) -> None:
        self.chunks.clear()
        self.size = 0

    def due_in(self, now: float) -> float | None:
        """Seconds until the first chunk may be sent (``0`` if now), ``None`` if empty."""
        if not self.chunks:
            return None
        return max(0.0, self.chunks[0][0] - now)


class _Link:
    """One client connection and its server connection, pumped by one thread.

    Only the link's own thread touches its sockets; other threads ask it to stop and join.
    """

    def __init__(self, proxy: FaultProxy, client: socket.socket) -> None:
        self._proxy = proxy
        self._client = client
        self._server: socket.socket | None = None
        self._to_server = _Queue()
        self._to_client = _Queue()
        self._awaiting_reply = False
        self._stopping = threading.Event()
        self._reset = False
        self._thread = threading.Thread(target=self._run, name="fault-proxy-link", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, *, reset: bool = False) -> None:
        self._reset = reset
        self._stopping.set()

    def join(self) -> None:
        self._thread.join(_JOIN_TIMEOUT)

    def _run(self) -> None:
        try:
            _prepare(self._client)
            with selectors.DefaultSelector() as selector:
                self._pump(selector)
        except OSError:
            pass
        finally:
            self._close()
            self._proxy._forget(self)

    def _pump(self, selector: selectors.BaseSelector) -> None:
        while not self._stopping.is_set():
            if self._server is None and not self._connect():
                return
            now = time.monotonic()
            self._watch(selector, now)
            for key, events in selector.select(self._timeout(now)):
                if not self._handle(key.fileobj, events):
                    return

    def _connect(self) -> bool:
        """Connect to the server unless blackholed; ``False`` if the server is unreachable."""
        if not self._proxy._policy().forward:
            return True
        try:
            server = socket.create_connection(self._proxy.target, timeout=_CONNECT_TIMEOUT)
        except OSError:
            return False
        self._server = server
        _prepare(server)
        return True

    def _watch(self, selector: selectors.BaseSelector, now: float) -> None:
        _watch(selector, self._client, _interest(self._to_server, self._to_client, now))
        if self._server is not None:
            _watch(selector, self._server, _interest(self._to_client, self._to_server, now))

    def _timeout(self, now: float) -> float:
        waits = [_POLL, self._to_server.due_in(now), self._to_client.due_in(now)]
        return min(wait for wait in waits if wait is not None)

    def _handle(self, sock: object, events: int) -> bool:
        """Serve one ready socket; ``False`` once the link must close."""
        from_client = sock is self._client
        if events & selectors.EVENT_WRITE:
            self._flush(self._to_client if from_client else self._to_server)
        if events & selectors.EVENT_READ:
            return self._read_client() if from_client else self._read_server()
        return True

    def _read_client(self) -> bool:
        data = _recv(self._client)
        if data is None:
            return True
        if not data:
            return False
        policy = self._proxy._policy()
        if policy.forward and self._server is not None:
            self._proxy._count_request()
            arms = self._proxy._claim_drop(data)
            self._to_server.put(time.monotonic() + policy.delay, data, arms)
        return True

    def _read_server(self) -> bool:
        assert self._server is not None
        data = _recv(self._server)
        if data is None:
            return True
        if not data:
            return False
        if self._awaiting_reply:
            # Counted before the sockets close, so a client that sees the close also sees
            # the count.
            self._proxy._record_fault()
            return False
        policy = self._proxy._policy()
        if policy.forward:
            self._to_client.put(time.monotonic() + policy.delay, data, False)
        return True

    def _flush(self, queue: _Queue) -> None:
        if not self._proxy._policy().forward:
            queue.clear()
            return
        sock = self._server if queue is self._to_server else self._client
        assert sock is not None
        while queue.due_in(time.monotonic()) == 0:
            if not self._send_head(sock, queue):
                return

    def _send_head(self, sock: socket.socket, queue: _Queue) -> bool:
        """Send the first chunk; ``False`` if the socket would block before it is all sent."""
        due, data, arms = queue.chunks[0]
        try:
            sent = sock.send(data)
        except (BlockingIOError, InterruptedError):
            return False
        queue.size -= sent
        if sent < len(data):
            queue.chunks[0] = (due, data[sent:], arms)
            return False
        queue.chunks.popleft()
        # A lost reply is awaited only once the whole request is in the server's hands, so
        # the server has the request before the client can see the close.
        self._awaiting_reply = self._awaiting_reply or arms
        return True

    def _close(self) -> None:
        if self._reset:  # a zero linger time makes close() send RST instead of FIN
            with contextlib.suppress(OSError):  # a peer that reset first leaves nothing to do
                linger = struct.pack("ii", 1, 0)
                self._client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            self._client.close()
        for sock in (self._client, self._server):
            if sock is not None and sock.fileno() != -1:
                _shutdown_and_close(sock)


def _prepare(sock: socket.socket) -> None:
    sock.setblocking(False)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _interest(outgoing: _Queue, incoming: _Queue, now: float) -> int:
    """Read while the other way has room; write when a chunk for this socket is due."""
    events = 0
    if outgoing.size < _QUEUE_LIMIT:
        events |= selectors.EVENT_READ
    if incoming.due_in(now) == 0:
        events |= selectors.EVENT_WRITE
    return events


def _watch(selector: selectors.BaseSelector, sock: socket.socket, events: int) -> None:
    key = selector.get_map().get(sock)
    if key is None:
        if events:
            selector.register(sock, events)
    elif not events:
        selector.unregister(sock)
    elif key.events != events:
        selector.modify(sock, events)


def _recv(sock: socket.socket) -> bytes | None:
    """The next chunk, ``b""`` at end of stream, ``None`` if nothing is ready yet."""
    try:
        return sock.recv(_CHUNK)
    except (BlockingIOError, InterruptedError):
        return None


def _shutdown_and_close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
