"""Pipelining for asyncio code.

* ``AsyncRequestScope``: the async twin of ``RequestScope`` (deferred commands, sent with
  the next command that needs a reply, or at the end of the scope).
* ``AutoPipeliner``: automatic pipelining. Every command issued on the event loop in the
  same tick (under ``asyncio.gather``, or by many concurrent requests) goes out as one
  pipeline on one connection; while one batch is in flight, the next fills.

Cancellation safety (redis-py's CVE-2023-28858/28859 was a reply left on a connection by a
cancelled caller): a batch is written and read by its own task, never by a caller. A
caller cancelled while its command is in flight only stops waiting; the batch task still
reads that reply off the connection and throws it away, so no other caller ever receives
it. A batch that fails part-way closes its connection rather than return it to the pool.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections import deque
from typing import Any

import redis.asyncio
import redis.asyncio.client
import redis.exceptions
from redis.client import EMPTY_RESPONSE, NEVER_DECODE, CaseInsensitiveDict

from ferrite_integrations.pipeline import (
    IMMEDIATE,
    STATEFUL,
    Failures,
    HandleBase,
    OnError,
    apply_callback,
    discard_handles,
    report_failures,
    settle_batch,
    stateful_error,
)
from ferrite_integrations.pool_async import AsyncFerritePool
from ferrite_integrations.retry import command_name

__all__ = [
    "AsyncHandle",
    "AsyncRequestScope",
    "AsyncScopeClient",
    "AutoPipelineClient",
    "AutoPipeliner",
    "current_async_scope",
]

logger = logging.getLogger("ferrite_integrations.pipeline")

_active: contextvars.ContextVar[tuple[AsyncRequestScope, ...]] = contextvars.ContextVar(
    "ferrite_async_request_scopes", default=()
)
# Transactions, blocking commands and pub/sub need a connection of their own.
BYPASS: frozenset[str] = IMMEDIATE | STATEFUL | {"PUBLISH"}


class AsyncHandle(HandleBase):
    """The future result of one deferred command of an async scope."""

    __slots__ = ("_scope",)

    def __init__(self, scope: AsyncRequestScope | None, name: str) -> None:
        super().__init__(name)
        self._scope = scope

    async def result(self) -> Any:
        """The reply; sends the scope's queue first if the command is still queued."""
        if not self.done and self._scope is not None:
            await self._scope.flush()
        if self._error is not None:
            raise self._error
        return self._value

    def exception(self) -> BaseException | None:
        """The command's error, or ``None`` (only meaningful once ``done``)."""
        return self._error


class _AsyncQueue(redis.asyncio.client.Pipeline):
    scope: AsyncRequestScope

    def execute_command(self, *args: Any, **options: Any) -> AsyncHandle:  # type: ignore[override]
        return self.scope._defer(args, options)

    def multi(self) -> None:
        raise stateful_error("MULTI")

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Any:
        return self.scope.client.pipeline(transaction, shard_hint)


class _FlushingPipeline(redis.asyncio.client.Pipeline):
    """Sends the async request scope's queue when it executes (see the sync twin)."""

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        scope = _scope_for(self.connection_pool)
        if scope is not None:
            await scope.flush()
        result: list[Any] = await super().execute(raise_on_error)
        return result


class AsyncScopeClient(redis.asyncio.Redis):
    """A ``redis.asyncio.Redis`` whose commands first send what the current async request
    scope of its pool has queued, in the same round trip."""

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        scope = _scope_for(self.connection_pool)
        if scope is None or not scope.busy:
            return await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
        return await scope._send_with(args, options)

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Any:
        return _FlushingPipeline(
            self.connection_pool, self.response_callbacks, transaction, shard_hint
        )


def _scope_for(pool: Any) -> AsyncRequestScope | None:
    for scope in reversed(_active.get()):
        if scope.pool is pool:
            return scope
    return None


def current_async_scope(alias: str | None = None) -> AsyncRequestScope | None:
    """The innermost async request scope open in this context (for ``alias``, if given)."""
    for scope in reversed(_active.get()):
        if alias is None or alias in scope.aliases:
            return scope
    return None


class AsyncRequestScope:
    """The async twin of ``RequestScope``; open one with ``manager.arequest_scope(alias)``
    as ``async with``. Deferred commands are queued synchronously (``scope.deferred.set``
    returns an ``AsyncHandle`` without awaiting); ``await handle.result()``."""

    def __init__(
        self,
        pool: AsyncFerritePool,
        client: AsyncScopeClient,
        aliases: tuple[str, ...],
        *,
        raise_on_error: bool = False,
        on_error: OnError = "flush",
    ) -> None:
        if on_error not in ("flush", "discard"):
            raise ValueError(f"on_error must be 'flush' or 'discard', not {on_error!r}")
        self.pool = pool
        self.client = client
        self.aliases = aliases
        self.raise_on_error = raise_on_error
        self.on_error: OnError = on_error
        self._queue = _AsyncQueue(pool, client.response_callbacks, False, None)
        self._queue.scope = self
        self._handles: list[AsyncHandle] = []
        self._failures: Failures = []
        self._token: contextvars.Token[tuple[AsyncRequestScope, ...]] | None = None
        self._depth = 0
        self._send_lock = asyncio.Lock()  # orders sends: a read waits for a batch in flight
        self._sending = 0
        self.round_trips = 0
        self.commands_sent = 0

    @property
    def deferred(self) -> _AsyncQueue:
        return self._queue

    @property
    def queued(self) -> int:
        return len(self._handles)

    @property
    def busy(self) -> bool:
        """Whether commands are queued or a batch is in flight: a read must go after them."""
        return bool(self._handles) or self._sending > 0

    async def flush(self) -> None:
        """Send everything queued now, in one round trip."""
        async with self._send_lock:
            if self._handles:
                await self._send(None)

    async def __aenter__(self) -> AsyncRequestScope:
        if self._depth == 0:
            self._token = _active.set((*_active.get(), self))
        self._depth += 1
        return self

    async def __aexit__(self, kind: Any, error: Any, traceback: Any) -> None:
        self._depth -= 1
        if self._depth > 0:
            return
        try:
            if error is not None and self.on_error == "discard":
                self._discard()
            else:
                await self.flush()
        finally:
            if self._token is not None:
                _active.reset(self._token)
                self._token = None
        failures, self._failures = self._failures, []
        report_failures(failures, self.pool.record_batch, self.raise_on_error and error is None)

    def _defer(self, args: tuple[Any, ...], options: dict[str, Any]) -> AsyncHandle:
        name = command_name(args)
        if name in STATEFUL:
            raise stateful_error(name)
        if name in IMMEDIATE:
            raise TypeError(
                f"{name} cannot wait in a request scope's queue; await it through "
                "scope.client (the queue is sent first)"
            )
        if self._depth == 0:
            raise RuntimeError(
                f"{name} was deferred outside its request scope (the scope has ended, or "
                "was never entered); use the client, or open a new scope"
            )
        handle = AsyncHandle(self, name)
        self._queue.command_stack.append((args, options))
        self._handles.append(handle)
        return handle

    async def _send_with(self, args: tuple[Any, ...], options: dict[str, Any]) -> Any:
        async with self._send_lock:
            if not self._handles:
                self._count(1)
                return await redis.asyncio.Redis.execute_command(self.client, *args, **options)  # type: ignore[no-untyped-call]
            handle = AsyncHandle(None, command_name(args))
            self._queue.command_stack.append((args, options))
            self._handles.append(handle)
            await self._send(handle)
        return await handle.result()

    async def _send(self, own: AsyncHandle | None) -> None:
        # Caller holds _send_lock. See RequestScope._send: own pipeline, raw replies,
        # callbacks applied per command afterwards.
        handles, self._handles = self._handles, []
        stack, self._queue.command_stack = self._queue.command_stack, []
        batch = redis.asyncio.client.Pipeline(self.pool, CaseInsensitiveDict({}), False, None)
        batch.command_stack = stack
        batch.scripts, self._queue.scripts = self._queue.scripts, set()
        self._sending += 1
        try:
            raw = await batch.execute(raise_on_error=False)
        except asyncio.CancelledError:
            unknown = redis.exceptions.ConnectionError(
                "The request was cancelled while this command was in flight: whether the "
                "server applied it is unknown"
            )
            for handle in handles:
                handle._settle(unknown)
                self._failures.append((handle.name, unknown))
            raise
        except Exception as failure:  # nothing can be assumed applied: all fail
            raw = [failure] * len(handles)
        finally:
            self._sending -= 1
        self._count(len(handles))
        settle_batch(
            handles, stack, raw, self.client.response_callbacks, own=own, failures=self._failures
        )

    def _count(self, commands: int) -> None:
        self.round_trips += 1
        self.commands_sent += commands
        self.pool.record_batch(commands, 1)

    def _discard(self) -> None:
        handles, self._handles = self._handles, []
        self._queue.command_stack = []
        discard_handles(handles)


class _Call:
    __slots__ = ("args", "future", "name", "options")

    def __init__(
        self, args: tuple[Any, ...], options: dict[str, Any], future: Any, name: str
    ) -> None:
        self.args = args
        self.options = options
        self.future = future
        self.name = name


class AutoPipeliner:
    """Batches the commands of one event loop's callers into pipelines.

    Args:
        pool: the loop's async pool.
        client: parses replies with its response callbacks.
        max_batch: the most commands one pipeline carries.
    """

    def __init__(
        self, pool: AsyncFerritePool, client: redis.asyncio.Redis, max_batch: int = 1000
    ) -> None:
        self.pool = pool
        self.client = client
        self.max_batch = max_batch
        self._waiting: deque[_Call] = deque()
        self._sender: asyncio.Task[None] | None = None

    async def submit(self, args: tuple[Any, ...], options: dict[str, Any], name: str) -> Any:
        """Queue one command and wait for its own reply (or its own error)."""
        future = asyncio.get_running_loop().create_future()
        self._waiting.append(_Call(args, options, future, name))
        if self._sender is None or self._sender.done():
            self._sender = asyncio.get_running_loop().create_task(self._send_all())
        return await future

    async def _send_all(self) -> None:
        try:
            await asyncio.sleep(0)  # let every caller of this tick join the first batch
            while self._waiting:
                count = min(self.max_batch, len(self._waiting))
                batch = [self._waiting.popleft() for _ in range(count)]
                batch = [call for call in batch if not call.future.cancelled()]
                if batch:
                    await self._send(batch)
        except BaseException as failure:  # the sender itself was cancelled: nobody may hang
            waiting, self._waiting = list(self._waiting), deque()
            _fail(waiting, _stopped(failure))
            raise

    async def _send(self, batch: list[_Call]) -> None:
        try:
            connection = await self.pool.get_connection()
        except BaseException as failure:
            _fail(batch, _stopped(failure))
            _raise_if_stopping(failure)
            return
        healthy = False
        try:
            await connection.send_packed_command(
                connection.pack_commands([call.args for call in batch])
            )
            callbacks = self.client.response_callbacks
            for index, call in enumerate(batch):
                try:
                    raw = await connection.read_response(
                        disable_decoding=NEVER_DECODE in call.options
                    )
                except redis.exceptions.ResponseError as error:
                    raw = call.options.get(EMPTY_RESPONSE, error)
                except BaseException as failure:
                    _fail(batch[index:], _stopped(failure))
                    raise
                outcome = apply_callback(callbacks, call.args, call.options, raw)
                if not call.future.done():  # a cancelled caller's reply is read and dropped
                    if isinstance(outcome, BaseException):
                        call.future.set_exception(outcome)
                    else:
                        call.future.set_result(outcome)
            healthy = True
        except BaseException as failure:
            _fail(batch, _stopped(failure))
            _raise_if_stopping(failure)
        finally:
            if not healthy:
                await connection.disconnect(nowait=True)
            await self.pool.release(connection)
            self.pool.record_batch(len(batch), 1)


def _stopped(failure: BaseException) -> BaseException:
    if isinstance(failure, asyncio.CancelledError):
        return redis.exceptions.ConnectionError(
            "The pipelining task was cancelled (event loop shutting down?) before this "
            "command's reply was read: whether the server applied it is unknown"
        )
    return failure


def _raise_if_stopping(failure: BaseException) -> None:
    if not isinstance(failure, Exception):
        raise failure


def _fail(calls: list[_Call], failure: BaseException) -> None:
    for call in calls:
        if not call.future.done():
            call.future.set_exception(failure)


class AutoPipelineClient(redis.asyncio.Redis):
    """A ``redis.asyncio.Redis`` whose commands are batched by an ``AutoPipeliner``.
    Blocking commands, pub/sub, transactions and WATCH bypass the batcher."""

    pipeliner: AutoPipeliner

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        scope = _scope_for(self.connection_pool)
        if scope is not None and scope.busy:  # read-your-writes: after the scope's queue
            return await scope._send_with(args, options)
        name = command_name(args)
        if name in BYPASS:
            return await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
        return await self.pipeliner.submit(args, options, name)

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Any:
        return _FlushingPipeline(
            self.connection_pool, self.response_callbacks, transaction, shard_hint
        )
