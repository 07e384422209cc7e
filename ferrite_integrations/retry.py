"""Retries that never apply a write twice.

A failure before a command reached the server (connecting, or a send that did not
complete) is retried for any command. A failure after the command was sent (a read
timeout, a reset mid-reply) is retried only when every command in the request is safe to
run twice: the read-only commands in ``SAFE_TO_REPEAT``. INCR, LPUSH, SET NX and
pipelines containing them are not retried: the caller gets the error, so nothing is
applied twice.

The policy is a ``redis.retry.Retry`` given to every connection, so redis-py's own retry
loop (single commands, pipelines, pub/sub) applies it; the connection records whether its
last request was sent and which commands it held.
"""

from __future__ import annotations

import socket
import weakref
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar

import redis.exceptions
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry

from ferrite_integrations.errors import ServerUnavailableError, TLSError

__all__ = [
    "RETRYABLE_ERRORS",
    "SAFE_TO_REPEAT",
    "AsyncCommandRetry",
    "CommandRetry",
    "command_name",
    "is_safe_to_repeat",
]

T = TypeVar("T")

# Read-only commands: running one twice returns the same answer and changes nothing.
SAFE_TO_REPEAT: frozenset[str] = frozenset(
    {
        # keys and strings
        "GET", "MGET", "EXISTS", "TTL", "PTTL", "EXPIRETIME", "PEXPIRETIME", "TYPE",
        "STRLEN", "GETRANGE", "SUBSTR", "LCS", "KEYS", "SCAN", "RANDOMKEY", "DBSIZE",
        "OBJECT", "DUMP", "TOUCH",
        # hashes
        "HGET", "HMGET", "HGETALL", "HEXISTS", "HLEN", "HKEYS", "HVALS", "HSTRLEN",
        "HSCAN", "HRANDFIELD",
        # lists
        "LRANGE", "LLEN", "LINDEX", "LPOS",
        # sets
        "SMEMBERS", "SISMEMBER", "SMISMEMBER", "SCARD", "SSCAN", "SRANDMEMBER", "SDIFF",
        "SINTER", "SINTERCARD", "SUNION",
        # sorted sets
        "ZRANGE", "ZRANGEBYSCORE", "ZRANGEBYLEX", "ZREVRANGE", "ZREVRANGEBYSCORE",
        "ZREVRANGEBYLEX", "ZSCORE", "ZMSCORE", "ZCARD", "ZCOUNT", "ZLEXCOUNT", "ZRANK",
        "ZREVRANK", "ZSCAN", "ZRANDMEMBER", "ZDIFF", "ZINTER", "ZUNION", "ZINTERCARD",
        # streams, bitmaps, hyperloglog, geo
        "XRANGE", "XREVRANGE", "XLEN", "XINFO", "XPENDING", "BITCOUNT", "BITPOS",
        "GETBIT", "BITFIELD_RO", "PFCOUNT", "GEOPOS", "GEODIST", "GEOHASH", "GEOSEARCH",
        "GEORADIUS_RO", "GEORADIUSBYMEMBER_RO",
        # scripts and functions declared read-only
        "EVAL_RO", "EVALSHA_RO", "FCALL_RO", "SCRIPT EXISTS",
        # pub/sub membership: subscribing twice leaves the same subscriptions (redis-py
        # subscribes again after a reconnect anyway); PUBLISH is not here
        "SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE", "UNSUBSCRIBE", "PUNSUBSCRIBE",
        "SUNSUBSCRIBE",
        # server and connection
        "PING", "ECHO", "TIME", "INFO", "LASTSAVE", "COMMAND", "ROLE", "SELECT",
        "CLIENT GETNAME", "CLIENT ID", "CLIENT INFO", "CLIENT LIST", "CONFIG GET",
        "MEMORY USAGE", "SLOWLOG GET", "LATENCY LATEST", "ACL WHOAMI",
    }
)  # fmt: skip

# Subcommands that decide whether a container command is read-only.
_CONTAINERS = frozenset(
    {"CLIENT", "CONFIG", "MEMORY", "SLOWLOG", "LATENCY", "ACL", "SCRIPT", "XINFO", "OBJECT"}
)
_TRANSACTION = frozenset({"MULTI", "EXEC"})


def command_name(args: Sequence[Any]) -> str:
    """``("client", "list")`` -> ``"CLIENT LIST"``; ``(b"get", b"k")`` -> ``"GET"``.

    Runs for every command sent: no copies of the arguments.
    """
    if not args:
        return ""
    first = args[0]
    name = (first if type(first) is str else _text(first)).upper()
    if name in _CONTAINERS and len(args) > 1:
        return f"{name} {_text(args[1]).upper()}"
    return name


def _text(part: Any) -> str:
    if isinstance(part, bytes | bytearray | memoryview):
        return bytes(part).decode("latin-1")
    return str(part)


def is_safe_to_repeat(names: Iterable[str]) -> bool:
    """Whether a request made of these commands may be sent again after a lost reply."""
    seen = False
    for name in names:
        if name in _TRANSACTION:
            continue
        if name not in SAFE_TO_REPEAT and name.split(" ")[0] not in SAFE_TO_REPEAT:
            return False
        seen = True
    return seen


# The failures a retry policy considers at all (it then decides with ``may_retry``).
RETRYABLE_ERRORS = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    socket.timeout,
)


def _timed_out(error: BaseException) -> bool:
    """Whether a timeout is among the causes of ``error`` (asyncio reports a TLS handshake
    that took too long as a ``ConnectionAbortedError``)."""
    seen: BaseException | None = error.__cause__ or error.__context__
    while seen is not None:
        if isinstance(seen, redis.exceptions.TimeoutError | TimeoutError):
            return True
        if isinstance(seen, ConnectionAbortedError) and "handshake" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class _Decision:
    """What both retry classes share: whether a failed request may be sent again."""

    retry_on_timeout: bool
    _connection: Callable[[], Any]

    def may_retry(self, error: BaseException) -> bool:
        """Whether this failure of the bound connection's last request may be retried."""
        if isinstance(error, ServerUnavailableError | redis.exceptions.AuthenticationError):
            return False
        if isinstance(error, TLSError) and (error.permanent or _timed_out(error)):
            # A TLS handshake that hung is a connect timeout: another attempt would cost
            # socket_connect_timeout again; the circuit breaker takes over instead.
            return False
        connection = self._connection()
        timed_out = isinstance(error, redis.exceptions.TimeoutError | socket.timeout)
        if connection is None or not getattr(connection, "ferrite_sent", False):
            # The request never (completely) reached the server: safe to send again, unless
            # connecting itself timed out (an unreachable or hung host would cost another
            # socket_connect_timeout per attempt; the circuit breaker takes over instead).
            return not (timed_out and not getattr(connection, "is_connected", False))
        if timed_out and not self.retry_on_timeout:
            return False
        return is_safe_to_repeat(getattr(connection, "ferrite_commands", ()))

    def _allowed(
        self, is_retryable: Callable[[Exception], bool] | None
    ) -> Callable[[Exception], bool]:
        def allowed(error: Exception) -> bool:
            return self.may_retry(error) and (is_retryable is None or is_retryable(error))

        return allowed


class CommandRetry(_Decision, Retry):
    """redis-py's ``Retry``, asking the connection whether a failed request may be resent.

    Args:
        retries: how many times to retry.
        backoff_cap: the longest pause between attempts (exponential with jitter, from
            10 ms).
        retry_on_timeout: also resend a safe request after a read timeout (a timeout
            usually means a slow server, where resending doubles the wait).
    """

    def __init__(self, retries: int, backoff_cap: float = 0.5, retry_on_timeout: bool = False):
        super().__init__(
            ExponentialWithJitterBackoff(base=0.01, cap=backoff_cap), retries, RETRYABLE_ERRORS
        )
        self.backoff_cap = backoff_cap
        self.retry_on_timeout = retry_on_timeout
        self._connection = _nothing

    def bind(self, connection: Any) -> CommandRetry:
        """A copy of this policy for one connection, whose request state it consults."""
        bound = CommandRetry(self._retries, self.backoff_cap, self.retry_on_timeout)
        bound._connection = weakref.ref(connection)
        return bound

    def call_with_retry(
        self,
        do: Callable[[], T],
        fail: Any,
        is_retryable: Callable[[Exception], bool] | None = None,
        with_failure_count: bool = False,
    ) -> T:
        return super().call_with_retry(do, fail, self._allowed(is_retryable), with_failure_count)

    def __deepcopy__(self, memo: dict[int, Any]) -> CommandRetry:
        return CommandRetry(self._retries, self.backoff_cap, self.retry_on_timeout)


class AsyncCommandRetry(_Decision, AsyncRetry):
    """The ``redis.asyncio`` twin of ``CommandRetry`` (same arguments)."""

    def __init__(self, retries: int, backoff_cap: float = 0.5, retry_on_timeout: bool = False):
        backoff = ExponentialWithJitterBackoff(base=0.01, cap=backoff_cap)
        super().__init__(backoff, retries, RETRYABLE_ERRORS)  # type: ignore[arg-type]
        self.backoff_cap = backoff_cap
        self.retry_on_timeout = retry_on_timeout
        self._connection = _nothing

    def bind(self, connection: Any) -> AsyncCommandRetry:
        """A copy of this policy for one connection, whose request state it consults."""
        bound = AsyncCommandRetry(self._retries, self.backoff_cap, self.retry_on_timeout)
        bound._connection = weakref.ref(connection)
        return bound

    async def call_with_retry(
        self,
        do: Callable[[], Awaitable[T]],
        fail: Any,
        is_retryable: Callable[[Exception], bool] | None = None,
        with_failure_count: bool = False,
    ) -> T:
        return await super().call_with_retry(
            do, fail, self._allowed(is_retryable), with_failure_count
        )

    def __deepcopy__(self, memo: dict[int, Any]) -> AsyncCommandRetry:
        return AsyncCommandRetry(self._retries, self.backoff_cap, self.retry_on_timeout)


def _nothing() -> None:
    return None
