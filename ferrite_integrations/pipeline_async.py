"""Pipelining for asyncio code.

* ``AsyncRequestScope``: the async twin of ``RequestScope`` (deferred commands, sent with
  the next command that needs a reply, or at the end of the scope).
* ``AutoPipeliner``: automatic pipelining. Every command issued on the event loop in the
  same tick (under ``asyncio.gather``, or by many concurrent requests) goes out as one
  pipeline on one connection; while one batch is in flight, the next fills.

A scope on a pool that has an ``AutoPipeliner`` (``manager.async_client(alias,
auto_pipeline=True)`` made one on this loop) hands each batch (its queue, plus the read that
carries it) to the pipeliner as one group, kept adjacent and in order inside a shared batch;
the scope's send lock still orders the scope's own batches, so read-your-writes holds.

Cancellation safety (redis-py's CVE-2023-28858/28859 was a reply left on a connection by a
cancelled caller): a batch is written and read by its own task, never by a caller. A
caller cancelled while its command is in flight only stops waiting; the batch task still
reads that reply off the connection and throws it away, so no other caller ever receives
it. A batch that fails part-way closes its connection rather than return it to the pool.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import logging
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import partial
from inspect import isawaitable, iscoroutinefunction
from typing import Any, cast

import redis.asyncio
import redis.asyncio.client
import redis.exceptions
from redis.client import EMPTY_RESPONSE, NEVER_DECODE, CaseInsensitiveDict

from ferrite_integrations._requests import (
    EMPTY,
    callback_options,
    find_callback,
    needs_redis_py,
    reply_value,
)
from ferrite_integrations._wire_async import run_batch, run_command
from ferrite_integrations.pipeline import (
    IMMEDIATE,
    STATEFUL,
    Failures,
    HandleBase,
    OnError,
    async_scopes,
    discard_handles,
    report_failures,
    send_batch,
    settle_batch,
    settle_sync_scopes,
    stateful_error,
)
from ferrite_integrations.pipeline import _active as _sync_active
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

_active = cast("contextvars.ContextVar[tuple[AsyncRequestScope, ...]]", async_scopes)
# Transactions, blocking commands and pub/sub need a connection of their own.
BYPASS: frozenset[str] = IMMEDIATE | STATEFUL | {"PUBLISH"}
# The pipeliner each pool's scopes send through: the first one made for the pool (the
# manager makes one per pool). Weak both ways, so neither keeps the other alive.
_pipeliners: weakref.WeakKeyDictionary[AsyncFerritePool, weakref.ref[AutoPipeliner]] = (
    weakref.WeakKeyDictionary()
)
Commands = Sequence[tuple[tuple[Any, ...], Mapping[str, Any]]]


class AsyncHandle(HandleBase):
    """The future result of one deferred command of an async scope.

    A response callback that is a coroutine function (``set_response_callback``) runs when
    the result is first awaited, in the awaiting task, or else when the scope ends; never
    in a task of its own, so it may send commands through the same scope.
    """

    __slots__ = ("_later", "_running", "_scope")

    def __init__(self, scope: AsyncRequestScope | None, name: str) -> None:
        super().__init__(name)
        self._scope = scope
        self._later: Callable[[], Awaitable[Any]] | None = None  # the callback still due
        self._running: asyncio.Future[None] | None = None  # the callback being awaited

    @property
    def done(self) -> bool:
        return super().done or self._callback_due

    @property
    def _callback_due(self) -> bool:
        """The reply is in, and its async callback has not finished running."""
        return self._later is not None or self._running is not None

    async def result(self) -> Any:
        """The reply; sends the scope's queue first if the command is still queued."""
        if not self.done and self._scope is not None:
            await self._scope.flush()
        while self._callback_due:
            await self._run_callback()
        if self._error is not None:
            raise self._error
        return self._value

    def exception(self) -> BaseException | None:
        """The command's error, or ``None`` (only meaningful once ``done``; an async
        callback's error is known once ``result()`` was awaited or the scope ended)."""
        return self._error

    def __repr__(self) -> str:
        if self._callback_due:
            return f"<{type(self).__name__} {self.name} answered, callback due>"
        return super().__repr__()

    async def _run_callback(self) -> None:
        """Await the due callback once; concurrent awaiters wait for that run. A run cut
        short because the awaiting task was cancelled leaves the callback due for the next
        awaiter; any other outcome (a value, an error, the callback's own CancelledError)
        is final."""
        running = self._running
        if running is not None:
            await asyncio.shield(running)
            return
        later, self._later = self._later, None
        if later is None:
            return
        scope = self._scope
        if scope is not None:
            scope._callbacks_due.pop(self, None)
        running = self._running = asyncio.get_running_loop().create_future()
        try:
            self._value = await later()
        except Exception as error:
            self._error = error
            if scope is not None:
                scope._callback_failed(self.name, error)
        except asyncio.CancelledError as error:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                self._later = later  # this awaiter was cancelled: the next one runs it
                if scope is not None:
                    scope._callbacks_due[self] = None
            else:
                self._error = error
            raise
        except BaseException as error:  # KeyboardInterrupt, SystemExit: never run again
            self._error = error
            raise
        finally:
            self._running = None
            running.set_result(None)


class _AsyncQueue(redis.asyncio.client.Pipeline):
    scope: AsyncRequestScope

    def execute_command(self, *args: Any, **options: Any) -> AsyncHandle:  # type: ignore[override]
        return self.scope._defer(args, options)

    def multi(self) -> None:
        raise stateful_error("MULTI")

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Any:
        return self.scope.client.pipeline(transaction, shard_hint)

    def register_script(self, script: Any) -> Any:
        """Scripts run at once through ``scope.client`` (after the queue), as in the sync
        scope: redis-py's async script awaits its reply, which a queued command has not."""
        return self.scope.client.register_script(script)


class _FlushingPipeline(redis.asyncio.client.Pipeline):
    """Sends the async request scope's queue when it executes (see the sync twin)."""

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        await _flush_current(self.connection_pool)
        result: list[Any] = await super().execute(raise_on_error)
        return result

    async def immediate_execute_command(self, *args: Any, **options: Any) -> Any:
        # WATCH and the reads after it run at once (optimistic locking): after the queue.
        await _flush_current(self.connection_pool)
        return await super().immediate_execute_command(*args, **options)  # type: ignore[no-untyped-call]


async def _flush_current(pool: Any) -> None:
    if _sync_active.get():
        settle_sync_scopes(pool)
    scope = _scope_for(pool)
    if scope is not None:
        await scope.flush()


class AsyncScopeClient(redis.asyncio.Redis):
    """A ``redis.asyncio.Redis`` whose commands first send what the current async request
    scope of its pool has queued, in the same round trip."""

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        if _sync_active.get():
            settle_sync_scopes(self.connection_pool)
        scope = _scope_for(self.connection_pool) if _active.get() else None
        if scope is not None and scope.busy:
            return await scope._send_with(args, options)
        return await self._direct(args, options)

    async def _direct(self, args: tuple[Any, ...], options: dict[str, Any]) -> Any:
        # redis-py's own rules on a shorter path (see _wire_async).
        if self.single_connection_client or needs_redis_py(args):
            return await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
        return await run_command(self.connection_pool, args, options, self.response_callbacks)

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Any:
        return _FlushingPipeline(
            self.connection_pool, self.response_callbacks, transaction, shard_hint
        )


def _scope_for(pool: Any) -> AsyncRequestScope | None:
    for scope in reversed(_active.get()):
        if scope.pool is pool and scope.open:
            return scope
    return None


def current_async_scope(alias: str | None = None) -> AsyncRequestScope | None:
    """The innermost async request scope open in this context (for ``alias``, if given)."""
    for scope in reversed(_active.get()):
        if scope.open and (alias is None or alias in scope.aliases):
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
        self._in_flight: set[asyncio.Future[list[Any]]] = set()
        self._pipeliner: AutoPipeliner | None = None
        # Deferred commands whose async callback nobody awaited yet (insertion-ordered).
        self._callbacks_due: dict[AsyncHandle, None] = {}
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop that entered it
        self._closing = False  # in its final exit: no longer found by _scope_for and co.
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

    @property
    def open(self) -> bool:
        """Whether the scope is entered and not yet left. A task created during the
        request inherits its context and can outlive it: an ended scope is not found there."""
        return self._depth > 0 and not self._closing

    async def flush(self) -> None:
        """Send everything queued now, in one round trip; return once every batch of the
        scope (also one whose sender was cancelled) has its replies."""
        async with self._send_lock:
            if self._handles:
                await self._send(None)
            await self._drain()

    async def __aenter__(self) -> AsyncRequestScope:
        if self._depth == 0:
            self._loop = asyncio.get_running_loop()
            self._closing = False
            self._token = _active.set((*_active.get(), self))
        self._depth += 1
        return self

    async def __aexit__(self, kind: Any, error: Any, traceback: Any) -> None:
        if self._depth > 1:
            self._depth -= 1
            return
        completed = False
        # From here on, code that finds scopes (a task the request started, still running)
        # sends at once: the final flush below cannot be kept going by new writes. The
        # queue itself still takes what due callbacks defer through scope.deferred.
        self._closing = True
        try:
            if error is not None and self.on_error == "discard":
                self._discard()
                await self._drain()
                await self._run_due_callbacks()
                self._discard()
            else:
                await self.flush()
                while self._callbacks_due or self._handles:
                    await self._run_due_callbacks()
                    await self.flush()
            completed = True
        finally:
            self._depth -= 1
            if self._token is not None:
                _active.reset(self._token)
                self._token = None
            if not completed and (error is None or self.on_error == "flush"):
                self._flush_later()
            # Reported even when the exit itself fails or is cancelled; raised only after
            # a clean exit of a body that did not raise.
            failures, self._failures = self._failures, []
            report_failures(
                failures,
                self.pool.record_batch,
                completed and self.raise_on_error and error is None,
            )

    def _flush_later(self) -> None:
        """The exit was cancelled (a client that went away) before the queue went out: a
        task of its own sends it, and reports what failed, instead of losing it."""
        if not self._handles or self._loop is None or self._loop.is_closed():
            return

        async def send_and_report() -> None:
            try:
                await self.flush()
            finally:
                failures, self._failures = self._failures, []
                report_failures(failures, self.pool.record_batch, False)

        task = self._loop.create_task(send_and_report())
        _late_flushes.add(task)
        task.add_done_callback(_late_flushes.discard)

    def flush_from_sync(self, sync_pool: Any) -> None:
        """Send the queue from sync code in this scope's context, before a sync command on
        the same server. From another thread (``sync_to_async``), the scope's loop sends it
        and this waits. On the scope's own loop (blocking code called from a coroutine),
        the loop cannot run while this waits: the queue goes out through ``sync_pool``."""
        loop = self._loop
        if loop is None:  # never entered: nothing can be queued
            return
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not loop and loop.is_running():
            future = asyncio.run_coroutine_threadsafe(self.flush(), loop)
            wait = _longest_send(self.pool.config)
            try:
                future.result(wait)
            except concurrent.futures.TimeoutError:  # the writes still go out when it can
                raise redis.exceptions.TimeoutError(
                    "The request's queued async cache writes were not sent within "
                    f"{wait:g} s, before this sync call: their event loop is busy or blocked "
                    "(waiting for this thread?). Use the async API in async code."
                ) from None
            return
        if self._sending or self._in_flight:  # a batch of this loop is still on its way,
            _warn_unordered()  # maybe not yet written: what follows it must wait for it
            return
        handles, stack, scripts = self._take_queue()
        try:
            raw = send_batch(sync_pool, stack, scripts)
        except Exception as failure:  # nothing can be assumed applied: all fail
            raw = [failure] * len(handles)
        except BaseException as failure:
            for handle in handles:
                handle._settle(failure)
            raise
        self._count(len(handles))
        self._settle(handles, stack, raw, None)

    async def _run_due_callbacks(self) -> None:
        """At the scope's end, in the exiting task: the async callbacks of replies nobody
        awaited, in order, so that their errors are reported with the scope's other
        failures. Those not reached (the exit was cancelled) stay due."""
        while self._callbacks_due:
            handle = next(iter(self._callbacks_due))
            while handle._callback_due:
                await handle._run_callback()
            self._callbacks_due.pop(handle, None)

    def _callback_failed(self, name: str, error: BaseException) -> None:
        """A deferred command's async callback failed: reported with the scope's failures,
        or at once if the scope has already reported."""
        if self._token is not None:
            self._failures.append((name, error))
        else:
            report_failures([(name, error)], self.pool.record_batch, False)

    def _settle(
        self,
        handles: list[AsyncHandle],
        stack: list[Any],
        raw: list[Any],
        own: AsyncHandle | None,
    ) -> None:
        """``settle_batch``, except that a coroutine-function callback is not called here
        (there may be no task left to await it): its handle runs it when awaited."""
        callbacks = self.client.response_callbacks

        def later(handle: AsyncHandle, command: Any, reply: Any) -> bool:
            bound = _async_callback(callbacks, command, reply)
            if bound is None:
                return False
            handle._later = bound
            if handle is not own:  # the caller of _send_with awaits its own
                self._callbacks_due[handle] = None
            return True

        settle_batch(handles, stack, raw, callbacks, own=own, failures=self._failures, later=later)

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
        if _sync_active.get():
            settle_sync_scopes(self.pool)
        handle = AsyncHandle(self, name)
        self._queue.command_stack.append((args, options))
        self._handles.append(handle)
        return handle

    async def _send_with(
        self,
        args: tuple[Any, ...],
        options: dict[str, Any],
        pipeliner: AutoPipeliner | None = None,
    ) -> Any:
        """Send the queue and this command together; return this command's reply. With
        nothing left to carry (a batch in flight delayed it), the command goes alone, through
        ``pipeliner`` when the caller's client batches."""
        name = command_name(args)
        handle: AsyncHandle | None = None
        async with self._send_lock:
            await self._drain()
            if self._handles:
                handle = AsyncHandle(None, name)
                self._queue.command_stack.append((args, options))
                self._handles.append(handle)
                await self._send(handle)
        # Nothing of the scope was left to carry: the command goes alone, outside the lock
        # (what it must follow has its replies), so its callback may use the scope too.
        if handle is not None:
            value = await handle.result()
            return await value if isawaitable(value) else value  # as redis-py's read does
        if pipeliner is None or name in BYPASS:
            self._count(1)
            return await self.client._direct(args, options)
        return await pipeliner.submit(args, options, name)

    async def _send(self, own: AsyncHandle | None) -> None:
        # Caller holds _send_lock and has drained earlier batches. The queue is handed over
        # whole, with its handles and scripts; replies come back raw and callbacks are
        # applied per command afterwards, so a failing callback fails its command only.
        pipeliner = self._pipeliner_for(own.name if own is not None else None)
        handles, stack, scripts = self._take_queue()
        if pipeliner is not None:  # (never with scripts: see _pipeliner_for)
            await self._send_grouped(pipeliner, handles, stack, own)
            return
        self._sending += 1
        try:
            raw = await self._send_batch(stack, scripts)
        except asyncio.CancelledError:
            unknown = redis.exceptions.ConnectionError(
                "The request was cancelled while this command was in flight: whether the "
                "server applied it is unknown"
            )
            for handle in handles:
                handle._settle(unknown)
                if handle is not own:  # the cancelled caller's own read is not deferred
                    self._failures.append((handle.name, unknown))
            raise
        except Exception as failure:  # nothing can be assumed applied: all fail
            raw = [failure] * len(handles)
        finally:
            self._sending -= 1
        self._count(len(handles))
        self._settle(handles, stack, raw, own)

    async def _send_batch(self, stack: list[Any], scripts: set[Any]) -> list[Any]:
        if not scripts and not any(needs_redis_py(args) for args, _ in stack):
            return await run_batch(self.pool, stack)
        # Registered scripts may need loading first, and HIMPORT SET its fieldset's PREPARE
        # on this connection: redis-py's pipeline does both.
        batch = redis.asyncio.client.Pipeline(self.pool, CaseInsensitiveDict({}), False, None)
        batch.command_stack, batch.scripts = stack, scripts
        replies: list[Any] = await batch.execute(raise_on_error=False)
        return replies

    async def _send_grouped(
        self,
        pipeliner: AutoPipeliner,
        handles: list[AsyncHandle],
        stack: list[Any],
        own: AsyncHandle | None,
    ) -> None:
        # The group goes out whole even if this caller is cancelled: the pipeliner reads its
        # replies and the handles are settled from them when they arrive (busy, and _drain,
        # wait for that), so a cancelled read never loses or misreports the writes it carried.
        group = pipeliner.submit_many(stack)
        self._sending += 1
        self._in_flight.add(group)
        try:
            await asyncio.shield(group)
        except asyncio.CancelledError:
            if not group.done():
                group.add_done_callback(partial(self._settle_group, handles, stack, own))
                raise
            self._settle_group(handles, stack, own, group)
            raise
        except Exception:  # the group's own failure: settled below, per handle
            pass
        self._settle_group(handles, stack, own, group)

    def _settle_group(
        self,
        handles: list[AsyncHandle],
        stack: list[Any],
        own: AsyncHandle | None,
        group: asyncio.Future[list[Any]],
    ) -> None:
        # Runs once per group, on the loop; the pipeliner already counted the pool's batch.
        self._sending -= 1
        self._in_flight.discard(group)
        raw = _group_replies(group, len(handles))
        self.round_trips += 1
        self.commands_sent += len(handles)
        self._settle(handles, stack, raw, own)
        # The scope ended before this group settled (its exit was cancelled while draining):
        # report now, or these failures would never be logged and counted.
        if self._token is None and self._failures:
            failures, self._failures = self._failures, []
            report_failures(failures, self.pool.record_batch, False)

    async def _drain(self) -> None:
        """Wait for groups still in flight whose sender was cancelled (never cancels them)."""
        while self._in_flight:
            await asyncio.wait(list(self._in_flight))

    def _pipeliner_for(self, name: str | None) -> AutoPipeliner | None:
        """The pipeliner this scope's batches go through, or ``None`` for its own pipeline:
        no pipeliner on the pool, scripts queued (a pipeline loads them first), or a read
        that must not wait in a shared batch (blocking, pub/sub, state-changing)."""
        if self._queue.scripts or (name is not None and name in BYPASS):
            return None
        if self._pipeliner is None:  # pinned at first use: one order for all its batches
            found = _pipeliners.get(self.pool)
            self._pipeliner = found() if found is not None else None
        return self._pipeliner

    def _count(self, commands: int) -> None:
        self.round_trips += 1
        self.commands_sent += commands
        self.pool.record_batch(commands, 1)

    def _discard(self) -> None:
        discard_handles(self._take_queue()[0])

    def _take_queue(self) -> tuple[list[AsyncHandle], list[Any], set[Any]]:
        """The queue, handed over whole (handles, commands, scripts), leaving it empty."""
        handles, self._handles = self._handles, []
        stack, self._queue.command_stack = self._queue.command_stack, []
        scripts, self._queue.scripts = self._queue.scripts, set()
        return handles, stack, scripts


# Tasks sending the queue of a scope whose exit was cancelled (kept until they finish).
_late_flushes: set[asyncio.Task[None]] = set()


def _longest_send(config: Any) -> float | None:
    """How long one send of a queue may take under ``config``: waiting for a connection,
    then every attempt's connect and reply (``None``: no socket timeout, no bound)."""
    if config.socket_timeout is None:
        return None
    attempt = config.socket_connect_timeout + config.socket_timeout
    return float(config.acquire_timeout + (config.retries + 1) * attempt)


def _warn_unordered() -> None:
    logger.warning(
        "A blocking cache call ran on the event loop while the request's async batch was "
        "still on its way: its order relative to that batch is not guaranteed. Use the "
        "async API (aget, aset, ...) in async code."
    )


def _async_callback(
    callbacks: Any, command: tuple[tuple[Any, ...], Mapping[str, Any]], reply: Any
) -> Callable[[], Awaitable[Any]] | None:
    """The command's response callback bound to its reply, not yet called, when it is a
    coroutine function; ``None`` when ``settle_batch`` can apply it now."""
    args, options = command
    if isinstance(reply, BaseException) or reply is EMPTY:
        return None
    callback = find_callback(callbacks, args)
    if callback is None or not _is_async(callback):
        return None
    return partial(callback, reply, **callback_options(options))


def _is_async(callback: Any) -> bool:
    """A coroutine function, or an object whose ``__call__`` is one."""
    return iscoroutinefunction(callback) or iscoroutinefunction(type(callback).__call__)


def _group_replies(group: asyncio.Future[list[Any]], size: int) -> list[Any]:
    if group.cancelled():
        return [_stopped(asyncio.CancelledError())] * size
    failure = group.exception()
    if failure is not None:  # nothing of the group was read: none can be assumed applied
        return [failure] * size
    return group.result()


class _Call:
    __slots__ = ("args", "future", "name", "options")
    size = 1

    def __init__(
        self, args: tuple[Any, ...], options: dict[str, Any], future: Any, name: str
    ) -> None:
        self.args = args
        self.options = options
        self.future = future
        self.name = name


class _Group:
    """Commands that go out adjacent and in order; one future for all their raw replies."""

    __slots__ = ("commands", "future", "size")

    def __init__(self, commands: Commands, future: asyncio.Future[list[Any]]) -> None:
        self.commands = commands
        self.future = future
        self.size = len(commands)


class AutoPipeliner:
    """Batches the commands of one event loop's callers into pipelines.

    Invariant: one batch at a time, in arrival order; the sender task alone writes and
    reads the batch's connection.

    Args:
        pool: the loop's async pool.
        client: parses replies with its response callbacks.
        max_batch: the most commands one pipeline carries (a larger group goes alone).
    """

    def __init__(
        self, pool: AsyncFerritePool, client: redis.asyncio.Redis, max_batch: int = 1000
    ) -> None:
        self.pool = pool
        self.client = client
        self.max_batch = max_batch
        self._waiting: deque[_Call | _Group] = deque()
        self._sender: asyncio.Task[None] | None = None
        registered = _pipeliners.get(pool)
        if registered is None or registered() is None:
            _pipeliners[pool] = weakref.ref(self)

    async def submit(self, args: tuple[Any, ...], options: dict[str, Any], name: str) -> Any:
        """Queue one command and wait for its own reply (or its own error). The response
        callback runs here, in the caller's task, and is awaited if it is async: the batch
        task never waits for a callback, which may itself send through this pipeliner."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._waiting.append(_Call(args, options, future, name))
        if self._sender is None or self._sender.done():
            self._sender = loop.create_task(self._send_all())
        value = reply_value(await future, args, options, self.client.response_callbacks)
        return await value if isawaitable(value) else value

    def submit_many(self, commands: Commands) -> asyncio.Future[list[Any]]:
        """Queue ``(args, options)`` commands as one group: they go out adjacent and in
        order within one batch, after everything queued before them.

        Returns a future of the raw replies, in order (no response callbacks applied; a
        command's error in its place), or of the exception that failed the batch before
        any reply was read (a reply lost part-way fails that command and the rest in its
        place). Cancelling the future before its batch is sent withdraws the whole group;
        after that its replies are still read, and dropped.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Any]] = loop.create_future()
        self._waiting.append(_Group(commands, future))
        if self._sender is None or self._sender.done():
            self._sender = loop.create_task(self._send_all())
        return future

    async def _send_all(self) -> None:
        try:
            await asyncio.sleep(0)  # let every caller of this tick join the first batch
            while self._waiting:
                batch = self._take()
                if batch:
                    await self._send(batch)
        except BaseException as failure:  # the sender itself was cancelled: nobody may hang
            waiting, self._waiting = list(self._waiting), deque()
            _fail(waiting, _stopped(failure))
            raise

    def _take(self) -> list[_Call | _Group]:
        """The next batch: whole entries, up to ``max_batch`` commands (at least one entry)."""
        waiting, batch, size = self._waiting, [], 0
        while waiting and (size == 0 or size + waiting[0].size <= self.max_batch):
            entry = waiting.popleft()
            if not entry.future.cancelled():
                batch.append(entry)
                size += entry.size
        return batch

    async def _send(self, batch: list[_Call | _Group]) -> None:
        try:
            connection = await self.pool.get_connection()
        except BaseException as failure:
            _fail(batch, _stopped(failure))
            _raise_if_stopping(failure)
            return
        commands = _flatten(batch)
        healthy = False
        try:
            await connection.send_packed_command(connection.pack_commands(commands))
            await _read_replies(connection, batch)
            healthy = True
        except BaseException as failure:
            _fail(batch, _stopped(failure))
            _raise_if_stopping(failure)
        finally:
            if not healthy:
                await connection.disconnect(nowait=True)
            await self.pool.release(connection)
            self.pool.record_batch(len(commands), 1)


def _flatten(batch: list[_Call | _Group]) -> list[tuple[Any, ...]]:
    commands: list[tuple[Any, ...]] = []
    for entry in batch:
        if isinstance(entry, _Call):
            commands.append(entry.args)
        else:
            commands.extend(args for args, _ in entry.commands)
    return commands


async def _read_replies(connection: Any, batch: list[_Call | _Group]) -> None:
    """Read every raw reply of a sent batch, in order, into its caller's future. On a
    failure the entries not yet answered get it and it propagates (the connection is then
    closed)."""
    for index, entry in enumerate(batch):
        if isinstance(entry, _Group):
            try:
                await _read_group(connection, entry)
            except BaseException as failure:
                _fail(batch[index + 1 :], _stopped(failure))
                raise
            continue
        raw: Any
        try:
            raw = await connection.read_response(disable_decoding=NEVER_DECODE in entry.options)
        except redis.exceptions.ResponseError as error:
            raw = EMPTY if EMPTY_RESPONSE in entry.options else error
        except BaseException as failure:
            _fail(batch[index:], _stopped(failure))
            raise
        if not entry.future.done():  # a cancelled caller's reply is read and dropped
            if isinstance(raw, BaseException):
                entry.future.set_exception(raw)
            else:
                entry.future.set_result(raw)


async def _read_group(connection: Any, group: _Group) -> None:
    # Replies read before a failure are real outcomes: they stay; the rest get the failure.
    replies: list[Any] = []
    try:
        for _, options in group.commands:
            try:
                replies.append(
                    await connection.read_response(disable_decoding=NEVER_DECODE in options)
                )
            except redis.exceptions.ResponseError as error:
                replies.append(options.get(EMPTY_RESPONSE, error))
    except BaseException as failure:
        replies.extend([_stopped(failure)] * (group.size - len(replies)))
        raise
    finally:
        if not group.future.done():
            group.future.set_result(replies)


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


def _fail(calls: list[_Call | _Group], failure: BaseException) -> None:
    for call in calls:
        if not call.future.done():
            call.future.set_exception(failure)


class AutoPipelineClient(redis.asyncio.Redis):
    """A ``redis.asyncio.Redis`` whose commands are batched by an ``AutoPipeliner``.
    Blocking commands, pub/sub, transactions and WATCH bypass the batcher."""

    pipeliner: AutoPipeliner

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        if _sync_active.get():
            settle_sync_scopes(self.connection_pool)
        scope = _scope_for(self.connection_pool)
        if scope is not None and scope.busy:  # read-your-writes: after the scope's queue
            return await scope._send_with(args, options, self.pipeliner)
        name = command_name(args)
        if name in BYPASS:
            return await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
        return await self.pipeliner.submit(args, options, name)

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Any:
        return _FlushingPipeline(
            self.connection_pool, self.response_callbacks, transaction, shard_hint
        )
