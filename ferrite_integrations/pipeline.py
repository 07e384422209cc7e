"""Per-request pipelining for sync code: a request scope with deferred commands.

Writes whose reply the request does not need are queued (``scope.deferred``) and sent
together with the next command that needs a reply (``scope.client``), in one round trip,
or at the end of the scope. Read-your-writes holds within a scope: a read always goes out
after every write queued before it, in the same request.

A scope is bound to the current context (``contextvars``), so code deep in a request (a
cache backend, a template tag) finds it with ``current_scope()``. Invariant: the scope's
queue is only touched by the thread (context) that opened it.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import redis
import redis.client
import redis.exceptions
from redis.client import CaseInsensitiveDict

from ferrite_integrations._requests import needs_redis_py, reply_value
from ferrite_integrations._wire import run_batch, run_command
from ferrite_integrations.errors import FerriteError
from ferrite_integrations.pool import FerritePool
from ferrite_integrations.retry import command_name

__all__ = [
    "IMMEDIATE",
    "Handle",
    "PipelineError",
    "RequestScope",
    "ScopeClient",
    "current_scope",
]

logger = logging.getLogger("ferrite_integrations.pipeline")

OnError = Literal["flush", "discard"]

# Commands that cannot wait in a queue: they block, change the connection's state, or
# return a cursor or a value the caller needs before it can go on. They run at once, after
# everything queued before them.
IMMEDIATE: frozenset[str] = frozenset(
    {
        "BLPOP", "BRPOP", "BLMOVE", "BRPOPLPUSH", "BLMPOP", "BZPOPMIN", "BZPOPMAX",
        "BZMPOP", "XREAD", "XREADGROUP", "WAIT", "WAITAOF",
        "SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE", "UNSUBSCRIBE", "PUNSUBSCRIBE",
        "SUNSUBSCRIBE",
        "SCAN", "SSCAN", "HSCAN", "ZSCAN",
    }
)  # fmt: skip

# Commands that change the connection's own state: run through a pooled connection they
# would leave it changed for the next user. The transaction API is scope.client.pipeline().
STATEFUL: frozenset[str] = frozenset(
    {"WATCH", "UNWATCH", "MULTI", "EXEC", "DISCARD", "SELECT", "AUTH", "HELLO", "RESET"}
    | {"CLIENT REPLY", "MONITOR", "QUIT"}
)


def stateful_error(name: str) -> TypeError:
    return TypeError(
        f"{name} changes the connection's state and cannot run through a request scope; "
        "use scope.client.pipeline() for transactions and a dedicated client for the rest"
    )


def apply_callback(
    callbacks: Any, args: tuple[Any, ...], options: Mapping[str, Any], raw: Any
) -> Any:
    """Turn one raw reply into what redis-py's command method returns. Errors (from the
    server, or from the callback) are returned, not raised: they belong to that command."""
    if isinstance(raw, BaseException):
        return raw
    try:
        return reply_value(raw, args, options, callbacks)
    except Exception as error:
        return error


_active: contextvars.ContextVar[tuple[RequestScope, ...]] = contextvars.ContextVar(
    "ferrite_request_scopes", default=()
)
# The async request scopes open in this context. Kept here, beside the sync ones, so that
# each side can find the other's: pipeline_async builds on this module, not the reverse.
async_scopes: contextvars.ContextVar[tuple[Any, ...]] = contextvars.ContextVar(
    "ferrite_async_request_scopes", default=()
)


def _same_config(one: Any, other: Any) -> bool:
    return one is other or one == other


def settle_async_scopes(pool: Any) -> None:
    """Before a sync command or a sync deferral on ``pool``: the writes that async request
    scopes of the same configuration queued in this context go out first (code that hops
    between sync and async within one request, through asgiref's ``sync_to_async`` or by
    calling blocking code from a coroutine, reads its own writes and keeps their order)."""
    for scope in async_scopes.get():
        if scope.open and scope.busy and _same_config(scope.pool.config, pool.config):
            scope.flush_from_sync(pool)


def settle_sync_scopes(pool: Any) -> None:
    """The other direction of ``settle_async_scopes``: before an async command or deferral
    on ``pool``, the writes sync request scopes of the same configuration queued in this
    context go out first. This blocks the event loop for that round trip, as the blocking
    code that queued them did."""
    for scope in _active.get():
        if scope.open and scope.busy and _same_config(scope.pool.config, pool.config):
            scope.flush()


def send_batch(pool: Any, stack: list[Any], scripts: set[Any]) -> list[Any]:
    """Send a queue's commands through a sync ``pool`` in one round trip; raw replies, a
    command's server error in its place."""
    if not scripts and not any(needs_redis_py(args) for args, _ in stack):
        return run_batch(pool, stack)
    # Registered scripts may need loading first, and HIMPORT SET its fieldset's PREPARE
    # on this connection: redis-py's pipeline does both.
    batch = redis.client.Pipeline(pool, CaseInsensitiveDict({}), False, None)
    batch.command_stack, batch.scripts = stack, scripts
    replies: list[Any] = batch.execute(raise_on_error=False)
    return replies


class PipelineError(FerriteError):
    """Deferred commands of a request scope failed (``raise_on_error=True``).

    Attributes:
        failures: ``(command name, error)`` for each failed command, in order.
    """

    def __init__(self, failures: list[tuple[str, BaseException]]) -> None:
        listed = ", ".join(f"{name} ({type(error).__name__}: {error})" for name, error in failures)
        super().__init__(f"{len(failures)} deferred command(s) failed: {listed}")
        self.failures = failures


class DiscardedError(FerriteError):
    """A deferred command was never sent: its scope ended by an exception with
    ``on_error="discard"``."""


_PENDING = object()


class HandleBase:
    """What sync and async handles share: a command's name and its outcome once known."""

    __slots__ = ("_error", "_value", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self._value: Any = _PENDING
        self._error: BaseException | None = None

    @property
    def done(self) -> bool:
        """Whether the command was sent and answered (or failed)."""
        return self._value is not _PENDING or self._error is not None

    def _settle(self, outcome: Any) -> None:
        if isinstance(outcome, BaseException):
            self._error = outcome
        else:
            self._value = outcome

    def __repr__(self) -> str:
        state = "queued" if not self.done else ("failed" if self._error else "done")
        return f"<{type(self).__name__} {self.name} {state}>"


class Handle(HandleBase):
    """The future result of one deferred command."""

    __slots__ = ("_scope",)

    def __init__(self, scope: RequestScope | None, name: str) -> None:
        super().__init__(name)
        self._scope = scope

    def result(self) -> Any:
        """The command's reply; sends the scope's queue first if still queued.

        Raises:
            the command's own error (a ``redis.ResponseError``, a connection error, or
            ``DiscardedError``).
        """
        if not self.done and self._scope is not None:
            self._scope.flush()
        if self._error is not None:
            raise self._error
        return self._value

    def exception(self) -> BaseException | None:
        """The command's error, or ``None``; sends the queue first if still queued."""
        if not self.done and self._scope is not None:
            self._scope.flush()
        return self._error


Failures = list[tuple[str, BaseException]]
Record = Callable[[int, int, int], None]


def settle_batch(
    handles: list[Any],
    stack: Sequence[tuple[tuple[Any, ...], Mapping[str, Any]]],
    raw: list[Any],
    callbacks: Any,
    *,
    own: HandleBase | None,
    failures: Failures,
    later: Callable[[Any, tuple[tuple[Any, ...], Mapping[str, Any]], Any], bool] | None = None,
) -> None:
    """Give each handle of a sent batch its own outcome; failures of deferred commands (not
    of the command a caller awaits itself) are kept for the scope's report. ``later``, if
    given, may take a handle, its command and its raw reply to settle them itself later
    (it returns whether it did)."""
    for handle, command, reply in zip(handles, stack, raw, strict=True):
        if later is not None and later(handle, command, reply):
            continue
        args, options = command
        outcome = apply_callback(callbacks, args, options, reply)
        handle._settle(outcome)
        if isinstance(outcome, BaseException) and handle is not own:
            failures.append((handle.name, outcome))


def discard_handles(handles: list[Any]) -> None:
    """Fail the handles of a queue that will never be sent, and say so once."""
    for handle in handles:
        handle._settle(DiscardedError(f"{handle.name} was not sent: the request failed first"))
    if handles:
        logger.warning(
            "Request scope discarded %d deferred command(s) after an error: %s",
            len(handles),
            ", ".join(handle.name for handle in handles),
        )


def report_failures(failures: Failures, record: Record | None, raise_error: bool) -> None:
    """At a scope's end: count and log each failed deferred command (by name, never its
    values, which may be personal data or secrets); raise ``PipelineError`` if asked."""
    if failures and record is not None:
        record(0, 0, len(failures))
    for name, failure in failures:
        logger.warning("Deferred %s failed: %s: %s", name, type(failure).__name__, failure)
    if failures and raise_error:
        raise PipelineError(failures)


class _Queue(redis.client.Pipeline):
    """redis-py's pipeline as the scope's queue: its command methods return handles."""

    scope: RequestScope

    def execute_command(self, *args: Any, **options: Any) -> Handle:
        return self.scope._defer(args, options)

    def lock(self, *args: Any, **kwargs: Any) -> Any:
        """A lock works immediately: it is taken through ``scope.client``."""
        self.scope.flush()
        return self.scope.client.lock(*args, **kwargs)

    def register_script(self, script: Any) -> Any:
        """Scripts run immediately (they may need to load themselves first)."""
        return self.scope.client.register_script(script)

    def pubsub(self, **kwargs: Any) -> Any:
        self.scope.flush()
        return self.scope.client.pubsub(**kwargs)

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Any:
        return self.scope.client.pipeline(transaction, shard_hint)

    def multi(self) -> None:
        raise stateful_error("MULTI")


class _FlushingPipeline(redis.client.Pipeline):
    """A pipeline that sends the request scope's queue when it executes, not when it was
    made: writes deferred in between are seen by its reads."""

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        _flush_current(self.connection_pool)
        return super().execute(raise_on_error)

    def immediate_execute_command(self, *args: Any, **options: Any) -> Any:
        # WATCH and the reads after it run at once (optimistic locking): after the queue.
        _flush_current(self.connection_pool)
        return super().immediate_execute_command(*args, **options)  # type: ignore[no-untyped-call]


class ScopeClient(redis.Redis):
    """A ``redis.Redis`` on a pool whose commands first send what the current request
    scope has queued, in the same round trip. Outside a scope it is a plain client."""

    def execute_command(self, *args: Any, **options: Any) -> Any:
        if async_scopes.get():
            settle_async_scopes(self.connection_pool)
        scope = _scope_for(self.connection_pool) if _active.get() else None
        if scope is not None and scope.busy:
            return scope._send_with(args, options)
        # _direct's body, inlined: one call layer fewer on every command.
        if self.connection is not None or needs_redis_py(args):
            return super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
        return run_command(self.connection_pool, args, options, self.response_callbacks)

    def _direct(self, args: tuple[Any, ...], options: dict[str, Any]) -> Any:
        # redis-py's own rules on a shorter path (see _wire): same connection checks, same
        # retry policy, same disconnect on failure, same callbacks.
        if self.connection is not None or needs_redis_py(args):
            return super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
        return run_command(self.connection_pool, args, options, self.response_callbacks)

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Any:
        return _FlushingPipeline(
            self.connection_pool, self.response_callbacks, transaction, shard_hint
        )

    def pubsub(self, **kwargs: Any) -> Any:
        _flush_current(self.connection_pool)
        return super().pubsub(**kwargs)  # type: ignore[no-untyped-call]


def _scope_for(pool: Any) -> RequestScope | None:
    for scope in reversed(_active.get()):
        if scope.pool is pool and scope.open:
            return scope
    return None


def _flush_current(pool: Any) -> None:
    if async_scopes.get():
        settle_async_scopes(pool)
    scope = _scope_for(pool)
    if scope is not None:
        scope.flush()


def current_scope(alias: str | None = None) -> RequestScope | None:
    """The innermost request scope open in this context (for ``alias``, if given)."""
    for scope in reversed(_active.get()):
        if scope.open and (alias is None or alias in scope.aliases):
            return scope
    return None


class RequestScope:
    """Deferred commands for one request, sent in as few round trips as read-your-writes
    allows. Open one with ``manager.request_scope(alias)``.

    Args:
        pool: the pool the scope sends through (one connection per flush, returned in
            between, so a long request does not pin a connection).
        client: the pool's ``ScopeClient``.
        aliases: the aliases that share the pool (``current_scope(alias)`` finds it).
        raise_on_error: at exit, raise ``PipelineError`` if deferred commands failed.
        on_error: when the scope is left by an exception, ``"flush"`` (default) still sends
            the queue; ``"discard"`` drops it (its handles fail with ``DiscardedError``).
        record: called with ``(commands, round_trips, failed)`` for stats.
    """

    def __init__(
        self,
        pool: FerritePool,
        client: ScopeClient,
        aliases: tuple[str, ...],
        *,
        raise_on_error: bool = False,
        on_error: OnError = "flush",
        record: Record | None = None,
    ) -> None:
        if on_error not in ("flush", "discard"):
            raise ValueError(f"on_error must be 'flush' or 'discard', not {on_error!r}")
        self.pool = pool
        self.client = client
        self.aliases = aliases
        self.raise_on_error = raise_on_error
        self.on_error: OnError = on_error
        self._record = record
        self._queue = _Queue(pool, client.response_callbacks, transaction=False, shard_hint=None)
        self._queue.scope = self
        self._handles: list[Handle] = []
        # Guards the queue and orders sends: a read waits for a batch in flight that may hold
        # earlier writes (a scope can be shared by threads through copied contexts).
        self._send_lock = threading.RLock()
        self._sending = 0
        self._failures: Failures = []
        self._token: contextvars.Token[tuple[RequestScope, ...]] | None = None
        self._depth = 0
        self.round_trips = 0
        self.commands_sent = 0

    @property
    def deferred(self) -> _Queue:
        """redis-py's command methods; each queues its command and returns a ``Handle``."""
        return self._queue

    @property
    def queued(self) -> int:
        """How many commands wait to be sent."""
        return len(self._handles)

    @property
    def busy(self) -> bool:
        """Whether commands are queued or a batch is in flight: a read must go after them."""
        return bool(self._handles) or self._sending > 0

    @property
    def open(self) -> bool:
        """Whether the scope is entered and not yet left. A context copied during the
        request (a thread, a task) can outlive it: an ended scope is not found there."""
        return self._depth > 0

    def flush(self) -> None:
        """Send everything queued now, in one round trip."""
        with self._send_lock:
            if self._handles:
                self._send(None)

    # -- the context manager ----------------------------------------------------------------

    def __enter__(self) -> RequestScope:
        if self._depth == 0:
            self._token = _active.set((*_active.get(), self))
        self._depth += 1
        return self

    def __exit__(self, kind: Any, error: Any, traceback: Any) -> None:
        completed = False
        failures: Failures = []
        try:
            # Under the send lock: a thread sharing this scope through a copied context
            # either queued before this final flush (and is sent by it) or finds the scope
            # closed and sends at once (_defer checks _depth under the same lock).
            with self._send_lock:
                self._depth -= 1
                if self._depth > 0:
                    return
                try:
                    if error is not None and self.on_error == "discard":
                        self._discard()
                    else:
                        self.flush()
                    completed = True
                finally:
                    if self._token is not None:
                        _active.reset(self._token)
                        self._token = None
                    failures, self._failures = self._failures, []
        finally:
            # Outside the lock (a log handler may use the cache too), and even when the
            # flush was interrupted (a BaseException such as a request timeout's); raised
            # only after a clean exit of a body that did not raise.
            raising = completed and error is None and self.raise_on_error
            report_failures(failures, self._record, raising)

    # -- internals --------------------------------------------------------------------------

    def _defer(self, args: tuple[Any, ...], options: dict[str, Any]) -> Handle:
        name = command_name(args)
        if name in STATEFUL:
            raise stateful_error(name)
        if async_scopes.get():
            settle_async_scopes(self.pool)
        with self._send_lock:
            if name not in IMMEDIATE and self._depth > 0:
                handle = Handle(self, name)
                self._queue.command_stack.append((args, options))
                self._handles.append(handle)
                return handle
            # Sent at once: a blocking command, or the scope has ended (a thread that
            # shares it through a copied context can outlive it).
            handle = Handle(None, name)
            try:
                handle._settle(self._send_with(args, options))
            except redis.exceptions.RedisError as failure:
                handle._settle(failure)
                if self._depth > 0:
                    self._failures.append((name, failure))
            return handle

    def _send_with(self, args: tuple[Any, ...], options: dict[str, Any]) -> Any:
        """Send the queue and this command together; return this command's reply."""
        with self._send_lock:
            if not self._handles:
                self._count(1)
                return self.client._direct(args, options)
            handle = Handle(None, command_name(args))
            self._queue.command_stack.append((args, options))
            self._handles.append(handle)
            self._send(handle)
        return handle.result()

    def _send(self, own: Handle | None) -> None:
        # Caller holds _send_lock. The queue is handed over whole, with its handles and
        # scripts, to a pipeline of its own. The batch reads raw replies (no callbacks), so
        # a callback that fails cannot leave unread replies on the connection; callbacks
        # run afterwards, each failure belonging to its own command.
        handles, self._handles = self._handles, []
        stack, self._queue.command_stack = self._queue.command_stack, []
        scripts, self._queue.scripts = self._queue.scripts, set()
        self._sending += 1
        try:
            raw = self._send_batch(stack, scripts)
        except BaseException as failure:  # nothing can be assumed applied: all fail
            raw = [failure] * len(handles)
            if not isinstance(failure, Exception):
                for handle in handles:
                    handle._settle(failure)
                raise
        finally:
            self._sending -= 1
        self._count(len(handles))
        settle_batch(
            handles, stack, raw, self.client.response_callbacks, own=own, failures=self._failures
        )

    def _send_batch(self, stack: list[Any], scripts: set[Any]) -> list[Any]:
        return send_batch(self.pool, stack, scripts)

    def _discard(self) -> None:
        with self._send_lock:
            handles, self._handles = self._handles, []
            self._queue.command_stack = []
        discard_handles(handles)

    def _count(self, commands: int) -> None:
        self.round_trips += 1
        self.commands_sent += commands
        if self._record is not None:
            self._record(commands, 1, 0)

    def __repr__(self) -> str:
        return (
            f"<RequestScope {self.aliases[0]!r} queued {self.queued} round trips "
            f"{self.round_trips} commands {self.commands_sent}>"
        )
