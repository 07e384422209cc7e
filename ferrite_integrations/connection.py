"""Connection classes: redis-py's own, with two changes.

* TLS connections wrap their socket with the configuration's one shared ``SSLContext``
  instead of building a new context (and re-reading certificate files) on every connect,
  and bound the TLS handshake by ``socket_connect_timeout``.
* A failed connect that is really a TLS mistake (untrusted CA, host name mismatch, missing
  client certificate, TLS to a plaintext port or plaintext to a TLS port) raises a
  ``TLSError`` whose message names the cause and the fix, chained to redis-py's error.
* With ``busy_poll`` (sync only), the first read after a request polls the socket for up
  to that long before it sleeps in the kernel.

Sync and async classes share the explanation code; the I/O itself stays redis-py's.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import select
import socket
import ssl
from time import monotonic, perf_counter
from typing import Any, NoReturn

import redis
import redis.asyncio.connection as async_connection
import redis.connection as sync_connection
import redis.exceptions
from redis.utils import SENTINEL

from ferrite_integrations.breaker import CircuitBreaker
from ferrite_integrations.config import PoolConfig
from ferrite_integrations.errors import TLSError
from ferrite_integrations.retry import command_name
from ferrite_integrations.tls import TLSSettings, explain_tls_failure

__all__ = [
    "AsyncConnection",
    "AsyncSSLConnection",
    "AsyncUnixConnection",
    "Connection",
    "SSLConnection",
    "UnixConnection",
    "connection_kwargs",
]

_CONNECT_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
_RESP3 = ("3", 3)
# The sync connection sends and reads itself, with the bodies of redis-py's own
# send_packed_command and read_response (identical from 8.0.0 to 8.1.x); any other
# version goes through redis-py's methods.
OWN_IO = redis.__version__.startswith(("8.0.", "8.1."))
# Refusals that say nothing about the server's health: a wrong password or ACL must not open
# the breaker that every correctly configured pool of the same server shares.
_NOT_OUTAGES = (redis.exceptions.AuthenticationError, redis.exceptions.AuthorizationError)


def _is_outage(error: BaseException) -> bool:
    if isinstance(error, _NOT_OUTAGES):
        return False
    return not (isinstance(error, TLSError) and error.permanent)


def _counts_as_outage(error: BaseException) -> bool:
    """Whether a failed read or write tells the breaker that the server is away."""
    return isinstance(error, _CONNECT_ERRORS) and _is_outage(error)


def _write_failure(exc: BaseException) -> BaseException:
    """What redis-py's ``send_packed_command`` raises for ``exc`` from ``sendall``."""
    if isinstance(exc, socket.timeout):
        return redis.exceptions.TimeoutError("Timeout writing to socket")
    if isinstance(exc, OSError):
        args = exc.args
        if len(args) > 1:
            errno, message = args[:2]
        else:  # (redis-py itself fails with IndexError on an OSError without arguments)
            errno, message = "UNKNOWN", args[0] if args else type(exc).__name__
        return redis.exceptions.ConnectionError(
            f"Error {errno} while writing to socket. {message}."
        )
    return exc


def _read_failure(exc: BaseException, host_error: str) -> BaseException:
    """What redis-py's ``read_response`` raises for ``exc`` from its parser."""
    if isinstance(exc, socket.timeout):
        return redis.exceptions.TimeoutError(f"Timeout reading from {host_error}")
    if isinstance(exc, OSError):
        return redis.exceptions.ConnectionError(
            f"Error while reading from {host_error} : {exc.args}"
        )
    return exc


_CLOSED_BY_SERVER = "Connection closed by server"


def _explain_plaintext_failure(exc: BaseException, host: str, port: int) -> TLSError | None:
    """A plaintext handshake the server cut off: most often a TLS-only port."""
    current: BaseException | None = exc
    while current is not None:
        if isinstance(current, ConnectionResetError | BrokenPipeError) or (
            isinstance(current, redis.exceptions.ConnectionError)
            and _CLOSED_BY_SERVER in str(current)
        ):
            return TLSError(
                f"The server at {host}:{port} closed the connection during the connection "
                "handshake, before answering the first command: it may be shutting down, a "
                "proxy in front of it may have lost it, or it serves TLS on this port (then "
                "use a rediss:// URL; a plaintext connection is never upgraded silently).",
                permanent=False,
            )
        current = current.__cause__ or current.__context__
    return None


def _explain(exc: BaseException, host: str, port: int, tls: TLSSettings | None) -> TLSError | None:
    if tls is not None:
        return explain_tls_failure(exc, tls, host, port)
    return _explain_plaintext_failure(exc, host, port)


def _raise_explained(exc: Exception, host: str, port: int, tls: TLSSettings | None) -> NoReturn:
    explained = _explain(exc, host, port, tls)
    if explained is None:
        raise exc
    raise explained from exc


_HAS_POLL = hasattr(select, "poll")
# Loop turns an async borrow check waits for the reader to receive what the kernel holds.
_READER_TURNS = 3
_GREEN_MODULES = ("gevent", "eventlet")


def _parser_holds_data(parser: Any) -> bool:
    """Whether a sync parser has bytes already read from the socket but not yet parsed (a
    second reply that came in the same packet as the one read)."""
    reader = getattr(parser, "_reader", None)  # hiredis
    if reader is not None:
        return bool(reader.has_data())
    buffer = getattr(parser, "_buffer", None)  # redis-py's pure-Python parsers
    unread = getattr(buffer, "unread_bytes", None)
    return unread is not None and unread() > 0


def _readable_now(connection: Any, sock: Any) -> bool:
    """One non-blocking poll: has the kernel data (or an EOF) waiting on this socket?

    The poll object is kept on ``connection`` (``ferrite_watch``) for as long as it has
    this socket: registering once costs a third of ``select.select`` on every borrow.
    """
    if isinstance(sock, ssl.SSLSocket) and sock.pending():
        return True
    if not _HAS_POLL:
        return bool(select.select([sock], [], [], 0)[0])
    watch = connection.ferrite_watch
    if watch is None or watch[0] is not sock:
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        watch = connection.ferrite_watch = (sock, poller)
    return bool(watch[1].poll(0))


# How long an async borrow check waits for the rest of a push the reader holds in part.
_PUSH_REST_WAIT = 0.05


class _CountedPushes:
    """While open, counts the pushes that ``parser`` hands to its push handlers (sync or
    async parser alike); the handlers themselves still run."""

    def __init__(self, parser: Any) -> None:
        self.parser = parser
        self.count = 0

    def __enter__(self) -> _CountedPushes:
        handle = self.parser.handle_push_response
        if inspect.iscoroutinefunction(handle):

            async def counted_async(response: Any, **kwargs: Any) -> Any:
                self.count += 1
                return await handle(response, **kwargs)

            self.parser.handle_push_response = counted_async
        else:

            def counted(response: Any, **kwargs: Any) -> Any:
                self.count += 1
                return handle(response, **kwargs)

            self.parser.handle_push_response = counted
        return self

    def __exit__(self, *exc_info: object) -> None:
        del self.parser.handle_push_response  # the class's method again


class _ExplainingConnection(sync_connection.AbstractConnection):
    """What every sync connection adds to redis-py's: failed connects that are TLS mistakes
    become a ``TLSError``; the circuit breaker hears of every connection-level success and
    failure; the retry policy can ask whether the last request was sent and what it held;
    the pool can ask whether an idle connection is still usable."""

    host: str
    port: int
    tls_settings: TLSSettings | None = None
    explains_failures = True
    ferrite_breaker: CircuitBreaker | None = None
    ferrite_sent = False
    ferrite_commands: tuple[str, ...] = ()
    ferrite_connecting = False  # the handshake's own reads and writes count with the connect
    ferrite_watch: tuple[Any, Any] | None = None  # see _readable_now
    ferrite_busy_poll = 0.0
    ferrite_reply_due = False  # a request went out and nothing has read since

    def __init__(
        self,
        *args: Any,
        busy_poll: float = 0.0,
        default_client_name: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.ferrite_busy_poll = busy_poll
        self.ferrite_default_name = default_client_name

    def on_connect_check_health(self, check_health: bool = True) -> None:
        super().on_connect_check_health(check_health)
        name = self.ferrite_default_name
        if name is not None and not self.client_name:
            # A name nobody asked for must not cost the connection: an ACL user without
            # CLIENT SETNAME connects unnamed (redis-py treats CLIENT SETINFO the same way).
            self.send_command("CLIENT", "SETNAME", name, check_health=False)
            with contextlib.suppress(redis.exceptions.ResponseError):
                self.read_response()

    def connect_check_health(
        self, check_health: bool = True, retry_socket_connect: bool = True
    ) -> None:
        breaker = self.ferrite_breaker
        if breaker is not None and breaker.state == "open":
            breaker.admit()
        self.ferrite_sent = False
        self.ferrite_connecting = True
        try:
            try:
                super().connect_check_health(check_health, retry_socket_connect)
            except _CONNECT_ERRORS as exc:
                if not self.explains_failures:
                    raise
                _raise_explained(exc, self.host, self.port, self.tls_settings)
        except _CONNECT_ERRORS as failure:
            if breaker is not None and _is_outage(failure):
                breaker.failed(failure)
            raise
        finally:
            self.ferrite_connecting = False
        if breaker is not None:
            breaker.succeeded()

    def send_command(self, *args: Any, **kwargs: Any) -> None:
        self.ferrite_commands = (command_name(args),)
        super().send_command(*args, **kwargs)  # type: ignore[no-untyped-call]

    def pack_commands(self, commands: Any) -> Any:
        commands = list(commands)
        self.ferrite_commands = tuple(command_name(args) for args in commands)
        return super().pack_commands(commands)  # type: ignore[no-untyped-call]

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        # Connecting and redis-py's health-check PING send commands of their own: do them
        # first, then restore the record of *this* request before its bytes go out.
        request = self.ferrite_commands
        if self._sock is None:
            self.connect_check_health(check_health=False)
        if check_health and self.health_check_interval:
            self.check_health()  # type: ignore[no-untyped-call]
        self.ferrite_commands = request
        # A request of several commands may have complete commands on the server as soon
        # as its first bytes leave; a single command is incomplete until the last byte.
        self.ferrite_sent = len(request) > 1 and not self.ferrite_connecting
        if OWN_IO:  # redis-py's own send, inlined (one call layer fewer on every command)
            sock: Any = self._sock
            try:
                if isinstance(command, str):
                    command = [command]
                for item in command:
                    sock.sendall(item)
            except BaseException as exc:
                raise self._ferrite_failed(_write_failure(exc), close=True)  # noqa: B904
        else:
            try:
                super().send_packed_command(command, False)  # type: ignore[no-untyped-call]
            except _CONNECT_ERRORS as exc:
                raise self._ferrite_failed(exc, close=False)  # noqa: B904 (it has closed)
        self.ferrite_sent = not self.ferrite_connecting  # a handshake is always safe to redo
        self.ferrite_reply_due = self.ferrite_busy_poll > 0

    def read_response(
        self,
        disable_decoding: bool = False,
        *,
        timeout: Any = SENTINEL,
        disconnect_on_error: bool = True,
        push_request: bool = False,
        **newer: Any,
    ) -> Any:
        if self.ferrite_reply_due:
            self._ferrite_poll_first(close_if_interrupted=disconnect_on_error)
        if newer or not OWN_IO:  # an argument or a version of redis-py not checked here
            return self._ferrite_read_via_redis_py(
                disable_decoding,
                timeout=timeout,
                disconnect_on_error=disconnect_on_error,
                push_request=push_request,
                **newer,
            )
        # redis-py's read_response, inlined (one call layer fewer on every command): the
        # same parser calls, errors and closes.
        host_error = self._host_error()  # type: ignore[no-untyped-call]
        try:
            if self.protocol in _RESP3:
                response = self._parser.read_response(
                    disable_decoding=disable_decoding, push_request=push_request, timeout=timeout
                )
            else:
                response = self._parser.read_response(
                    disable_decoding=disable_decoding, timeout=timeout
                )
        except BaseException as exc:
            failure = _read_failure(exc, host_error)
            raise self._ferrite_failed(failure, close=disconnect_on_error)  # noqa: B904
        if self.health_check_interval:
            self.next_health_check = monotonic() + self.health_check_interval  # type: ignore[assignment]
        if isinstance(response, redis.exceptions.ResponseError):
            try:
                raise response
            finally:
                del response  # no reference cycle through the traceback
        breaker = self.ferrite_breaker
        if breaker is not None and not self.ferrite_connecting:
            breaker.succeeded()
        return response

    def _ferrite_read_via_redis_py(self, *args: Any, **kwargs: Any) -> Any:
        try:
            response = super().read_response(*args, **kwargs)
        except _CONNECT_ERRORS as exc:
            raise self._ferrite_failed(exc, close=False)  # noqa: B904 (it has closed)
        if self.ferrite_breaker is not None and not self.ferrite_connecting:
            self.ferrite_breaker.succeeded()
        return response

    def _ferrite_failed(self, failure: BaseException, *, close: bool) -> BaseException:
        """A read or write failed with ``failure`` (as redis-py words it): close the
        connection if asked, tell the breaker of an outage, and hand ``failure`` back to
        be raised."""
        if close:
            self.disconnect()
        breaker = self.ferrite_breaker
        if breaker is not None and not self.ferrite_connecting and _counts_as_outage(failure):
            breaker.failed(failure)
        return failure

    def _ferrite_poll_first(self, *, close_if_interrupted: bool) -> None:
        self.ferrite_reply_due = False
        try:
            self._poll_for_reply()
        except BaseException:  # an interrupt (Ctrl-C, a signal's exception): as redis-py
            # does for a read cut short, close, or the next command reads this reply
            if close_if_interrupted:
                self.disconnect()
            raise

    def ferrite_drop(self, error: Exception) -> None:
        """A failed attempt's connection is closed before any retry (redis-py does the same)."""
        self.disconnect()

    def disconnect(self, *args: Any, **kwargs: Any) -> None:
        self.ferrite_reply_due = False
        super().disconnect(*args, **kwargs)  # type: ignore[no-untyped-call]

    def _poll_for_reply(self) -> None:
        """Poll for up to ``busy_poll`` seconds before the read sleeps in the kernel. A
        reply that comes in meanwhile is read without this thread's CPU going idle, which
        on a VM that halts an idle vCPU at once saves a wake-up on every round trip. Each
        poll releases the GIL; the read that follows keeps ``socket_timeout``. Green
        sockets (gevent, eventlet) never poll: it would stall every other greenlet."""
        sock: Any = self._sock
        if sock is None or type(sock).__module__.startswith(_GREEN_MODULES):
            return
        deadline = perf_counter() + self.ferrite_busy_poll
        while not _readable_now(self, sock) and perf_counter() < deadline:
            pass

    def looks_clean(self) -> bool:
        """True when this idle connection is connected and nothing waits to be read on it:
        no stray reply, no EOF from a server that closed it (``CLIENT KILL``, restart)."""
        sock: Any = self._sock
        if sock is None:
            return False
        if not _parser_holds_data(self._parser) and not _readable_now(self, sock):
            return True
        try:  # readable: a TLS record without data is fine, a reply or an EOF is not
            return not self.can_read(timeout=0) or self._ferrite_only_pushes()
        except Exception:  # a parser or push handler failing: the connection is not usable
            return False

    def _ferrite_only_pushes(self) -> bool:
        """RESP3: hand the pushes waiting on this idle connection (a ``CLIENT TRACKING``
        invalidation) to the parser's push handlers, as its next read would; ``False`` when
        anything else waits. Raises when a push is not all there yet, cannot be parsed, or
        its handler fails."""
        if self.protocol not in _RESP3:
            return False
        parser = self._parser
        with _CountedPushes(parser) as pushes:
            while self.can_read(timeout=0):
                before = pushes.count
                parser.read_response(push_request=True, timeout=0)  # errors: see looks_clean
                if pushes.count == before:
                    return False
        return True


class _AsyncExplainingConnection(async_connection.AbstractConnection):
    """The ``redis.asyncio`` twin of ``_ExplainingConnection``."""

    host: str
    port: int
    tls_settings: TLSSettings | None = None
    explains_failures = True
    ferrite_breaker: CircuitBreaker | None = None
    ferrite_sent = False
    ferrite_commands: tuple[str, ...] = ()
    ferrite_connecting = False  # the handshake's own reads and writes count with the connect
    ferrite_watch: tuple[Any, Any] | None = None  # see _readable_now

    ferrite_default_name: str | None = None

    def __init__(self, *args: Any, default_client_name: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ferrite_default_name = default_client_name

    async def on_connect_check_health(self, check_health: bool = True) -> None:
        await super().on_connect_check_health(check_health)
        name = self.ferrite_default_name
        if name is not None and not self.client_name:  # see the sync twin
            await self.send_command("CLIENT", "SETNAME", name, check_health=False)
            with contextlib.suppress(redis.exceptions.ResponseError):
                await self.read_response()

    async def connect_check_health(
        self, check_health: bool = True, retry_socket_connect: bool = True
    ) -> None:
        breaker = self.ferrite_breaker
        if breaker is not None and breaker.state == "open":
            breaker.admit()
        self.ferrite_sent = False
        self.ferrite_connecting = True
        try:
            try:
                await super().connect_check_health(check_health, retry_socket_connect)
            except _CONNECT_ERRORS as exc:
                if not self.explains_failures:
                    raise
                _raise_explained(exc, self.host, self.port, self.tls_settings)
        except _CONNECT_ERRORS as failure:
            if breaker is not None and _is_outage(failure):
                breaker.failed(failure)
            raise
        finally:
            self.ferrite_connecting = False
        if breaker is not None:
            breaker.succeeded()

    def pack_command(self, *args: Any) -> Any:
        self.ferrite_commands = (command_name(args),)
        return super().pack_command(*args)

    def pack_commands(self, commands: Any) -> Any:
        commands = list(commands)
        packed = super().pack_commands(commands)  # calls pack_command for each command
        self.ferrite_commands = tuple(command_name(args) for args in commands)
        return packed

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        # See _ExplainingConnection.send_packed_command for why the order matters.
        request = self.ferrite_commands
        if not self.is_connected:
            await self.connect_check_health(check_health=False)
        if check_health:
            await self.check_health()  # type: ignore[no-untyped-call]
        self.ferrite_commands = request
        self.ferrite_sent = len(request) > 1 and not self.ferrite_connecting
        try:
            await self._ferrite_write(command)
        except _CONNECT_ERRORS as exc:
            if self.ferrite_breaker and not self.ferrite_connecting and _is_outage(exc):
                self.ferrite_breaker.failed(exc)
            raise
        self.ferrite_sent = not self.ferrite_connecting  # a handshake is always safe to redo

    async def _ferrite_write(self, command: Any) -> None:
        """redis-py's write, with the same errors, minus its ``asyncio.wait_for`` (a new
        task per command): ``drain()`` can only wait while the transport holds unsent
        bytes, and only then is ``socket_timeout`` armed.

        A write that fails, times out or is cancelled aborts the transport: closing it
        would go on sending the buffered rest of the request, and a server that wakes up
        would apply a command its caller was told had failed (and that a retry resends).
        """
        if isinstance(command, str):
            command = command.encode()
        if isinstance(command, bytes):
            command = [command]
        writer: Any = self._writer
        try:
            if writer.transport.is_closing():  # Python 3.12.1's writelines would fail oddly
                raise ConnectionResetError("Connection lost")
            writer.writelines(command)
            if self.socket_timeout and writer.transport.get_write_buffer_size():
                async with asyncio.timeout(self.socket_timeout):
                    await writer.drain()
            else:
                await writer.drain()
        except TimeoutError:
            await self._ferrite_abort(writer)
            raise redis.exceptions.TimeoutError("Timeout writing to socket") from None
        except OSError as error:
            await self._ferrite_abort(writer)
            number, text = error.args[:2] if len(error.args) > 1 else ("UNKNOWN", error)
            raise redis.exceptions.ConnectionError(
                f"Error {number} while writing to socket. {text}."
            ) from error
        except BaseException:
            await self._ferrite_abort(writer)
            raise

    async def _ferrite_abort(self, writer: Any) -> None:
        writer.transport.abort()  # drops what was not sent yet
        await self.disconnect(nowait=True)

    async def read_response(self, *args: Any, **kwargs: Any) -> Any:
        writer = self._writer
        try:
            response = await super().read_response(*args, **kwargs)
        except BaseException as exc:
            if writer is not None and self._writer is None:
                # redis-py closed the connection, which would go on sending what the
                # transports still buffer of the request (on TLS, or a remainder below
                # the high-water mark, the write itself did not wait for it): drop it.
                writer.transport.abort()
            if (
                isinstance(exc, _CONNECT_ERRORS)
                and self.ferrite_breaker
                and not self.ferrite_connecting
                and _is_outage(exc)
            ):
                self.ferrite_breaker.failed(exc)
            raise
        if self.ferrite_breaker is not None and not self.ferrite_connecting:
            self.ferrite_breaker.succeeded()
        return response

    async def ferrite_drop(self, error: Exception) -> None:
        """A failed attempt's connection is closed before any retry (redis-py does the same)."""
        await self.disconnect()

    async def looks_clean(self) -> bool:
        """The async twin of ``_ExplainingConnection.looks_clean``."""
        writer = self._writer
        if writer is None or writer.transport.is_closing():
            return False
        sock = writer.transport.get_extra_info("socket")
        try:
            if sock is not None and _readable_now(self, sock):
                # The kernel holds bytes, an EOF or a reset that the loop has not handed to
                # the reader. The transport's read callback can be queued behind this task
                # on the loop's next turn, so it gets a few turns. A reset closes the
                # transport without leaving anything for can_read to see.
                for _ in range(_READER_TURNS):
                    await asyncio.sleep(0)
                    if writer.transport.is_closing():
                        return False
                    if await self.can_read():
                        break
                else:
                    return True  # a TLS record without data: nothing reached the reader
            return not await self.can_read() or await self._ferrite_only_pushes()
        except Exception:  # a parser or push handler failing: the connection is not usable
            return False

    async def _ferrite_only_pushes(self) -> bool:
        """The async twin of ``_ExplainingConnection._ferrite_only_pushes``: a push the
        reader holds only in part gets ``_PUSH_REST_WAIT`` seconds for the rest."""
        if self.protocol not in _RESP3:
            return False
        parser: Any = self._parser
        with _CountedPushes(parser) as pushes:
            while await self.can_read():
                before = pushes.count
                async with asyncio.timeout(_PUSH_REST_WAIT):  # errors: see looks_clean
                    await parser.read_response(push_request=True)
                if pushes.count == before:
                    return False
        writer = self._writer
        return writer is not None and not writer.transport.is_closing()


class Connection(_ExplainingConnection, sync_connection.Connection):
    """redis-py's TCP connection; a connect cut off by a TLS-only server says so."""


class SSLConnection(_ExplainingConnection, sync_connection.SSLConnection):
    """redis-py's TLS connection using one shared ``SSLContext``.

    Args:
        ssl_context: the context every connection of the configuration shares.
        tls_settings: the settings the context was built from (used in error messages).
        **kwargs: redis-py ``Connection`` arguments (host, port, timeouts, ...).
    """

    def __init__(
        self, *, ssl_context: ssl.SSLContext, tls_settings: TLSSettings, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.shared_ssl_context = ssl_context
        self.tls_settings = tls_settings

    def _wrap_socket_with_ssl(self, sock: socket.socket) -> ssl.SSLSocket:
        sock.settimeout(self.socket_connect_timeout)
        wrapped = self.shared_ssl_context.wrap_socket(sock, server_hostname=self.host)
        wrapped.settimeout(self.socket_timeout)
        return wrapped


class UnixConnection(_ExplainingConnection, sync_connection.UnixDomainSocketConnection):
    """redis-py's unix socket connection, with the pool's idle check."""

    explains_failures = False


class AsyncConnection(_AsyncExplainingConnection, async_connection.Connection):
    """The ``redis.asyncio`` twin of ``Connection``."""


class AsyncUnixConnection(_AsyncExplainingConnection, async_connection.UnixDomainSocketConnection):
    """The ``redis.asyncio`` twin of ``UnixConnection``."""

    explains_failures = False


class AsyncSSLConnection(_AsyncExplainingConnection, async_connection.SSLConnection):
    """The ``redis.asyncio`` twin of ``SSLConnection`` (same arguments)."""

    def __init__(
        self, *, ssl_context: ssl.SSLContext, tls_settings: TLSSettings, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.shared_ssl_context = ssl_context
        self.tls_settings = tls_settings

    def _connection_arguments(self) -> dict[str, Any]:
        arguments = dict(async_connection.Connection._connection_arguments(self))
        arguments["ssl"] = self.shared_ssl_context
        arguments["server_hostname"] = self.host
        if self.socket_connect_timeout:
            # The handshake deadline falls inside the connect deadline, so that a server that
            # never answers the TLS hello is recognised as such rather than as a slow connect.
            arguments["ssl_handshake_timeout"] = self.socket_connect_timeout * 0.9
        return arguments


def connection_kwargs(config: PoolConfig, *, use_asyncio: bool = False) -> dict[str, Any]:
    """Keyword arguments for a redis-py connection pool built from ``config``.

    The result includes ``connection_class`` and everything the connections need, but not
    ``max_connections`` (a pool setting). Use it as
    ``redis.ConnectionPool(max_connections=config.max_connections, **connection_kwargs(config))``.

    Args:
        config: the validated configuration.
        use_asyncio: ``True`` for ``redis.asyncio`` connection classes.
    """
    kwargs: dict[str, Any] = {
        "db": config.db,
        "username": config.username,
        "password": config.password,
        "socket_timeout": config.socket_timeout,
        "socket_connect_timeout": config.socket_connect_timeout,
        "health_check_interval": config.health_check_interval,
        "retry_on_timeout": config.retry_on_timeout,
        "client_name": config.client_name,
        "encoding": config.encoding,
        "encoding_errors": config.encoding_errors,
        "decode_responses": config.decode_responses,
        "protocol": config.protocol,
    }
    if config.busy_poll and not use_asyncio:  # polling would stall the event loop
        kwargs["busy_poll"] = config.busy_poll
    if config.unix_socket_path is not None:
        kwargs["path"] = config.unix_socket_path
        kwargs["connection_class"] = AsyncUnixConnection if use_asyncio else UnixConnection
        return kwargs
    kwargs.update(host=config.host, port=config.port, socket_keepalive=config.socket_keepalive)
    settings = config.tls
    if settings is None:
        kwargs["connection_class"] = AsyncConnection if use_asyncio else Connection
        return kwargs
    kwargs["connection_class"] = AsyncSSLConnection if use_asyncio else SSLConnection
    kwargs["ssl_context"] = config.ssl_context()
    kwargs["tls_settings"] = settings
    return kwargs
