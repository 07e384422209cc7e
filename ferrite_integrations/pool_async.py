"""The async pool: the ``redis.asyncio.ConnectionPool`` twin of ``FerritePool``.

Same decisions (they live in ``_pool_state``), same behaviour, asyncio waiting. One pool
belongs to one event loop (the manager keeps one per loop); every method runs on that
loop's thread, so the bookkeeping needs no lock: no ``await`` happens between reading and
updating it.
"""

from __future__ import annotations

import asyncio
import logging
from time import monotonic
from typing import Any

import redis.asyncio
import redis.exceptions

from ferrite_integrations._pool_common import PoolCommon
from ferrite_integrations._pool_state import (
    PoolState,
    Waiter,
    borrow_stack,
    timeout_message,
)
from ferrite_integrations.breaker import CircuitBreaker
from ferrite_integrations.config import PoolConfig
from ferrite_integrations.errors import PoolTimeoutError, ServerUnavailableError

__all__ = ["AsyncFerritePool"]

logger = logging.getLogger("ferrite_integrations.pool")

_CHECK_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)


class _FutureWaiter(Waiter):
    __slots__ = ("future",)

    def __init__(self, future: asyncio.Future[None]) -> None:
        super().__init__(self._wake)
        self.future = future

    def _wake(self) -> None:
        if not self.future.done():
            self.future.set_result(None)


class AsyncFerritePool(PoolCommon, redis.asyncio.ConnectionPool):
    """The asyncio twin of ``FerritePool`` (same arguments, same behaviour)."""

    def __init__(
        self,
        config: PoolConfig,
        *,
        name: str = "default",
        client_name: str | None = None,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        kwargs = self._prepare(config, name, client_name, breaker, use_asyncio=True)
        super().__init__(**kwargs)
        self._pending_close: list[Any] = []
        self._state = PoolState(
            config, self._available_connections, self._in_use_connections, self._new
        )

    # -- redis-py's pool interface ------------------------------------------------------

    async def get_connection(self, command_name: Any = None, *keys: Any, **options: Any) -> Any:
        """A connected, checked connection; waits up to ``acquire_timeout`` when all
        ``max_connections`` are in use, and is served before anyone who asks later."""
        self.breaker.admit()
        started = monotonic()
        retired = self._pending_close
        self._pending_close = []
        connection = self._state.take(started, retired)
        if connection is None:
            waiter = _FutureWaiter(asyncio.get_running_loop().create_future())
            self._state.enqueue(waiter)
            self._report_leaks(self._state.overdue(started), started)
            self._discard(retired)
            connection = await self._wait(waiter, started)
            retired = []
        else:
            self._state.waits.add(monotonic() - started)
        # From here the caller owns a slot: any failure, even cancellation, must give it back.
        try:
            await self._close(retired)
            await self._make_ready(connection)
        except BaseException:
            self._forget(connection)
            raise
        if self.config.leak_detection_threshold is not None:
            connection.ferrite_lease.borrow_stack = borrow_stack()
        return connection

    async def release(self, connection: Any) -> None:
        """Give a connection back: to the longest waiter, else to the idle stack."""
        retired: list[Any] = []
        self._give_back(connection, retired)
        await self._close(retired)

    async def disconnect(self, inuse_connections: bool = True) -> None:
        """Close idle connections (and, by default, those in use: their next command
        reconnects). Safe to call more than once."""
        pending, self._pending_close = self._pending_close, []
        await self._close(pending)
        idle = list(self._available_connections)
        self._available_connections.clear()
        self._state.closed["closed"] += len(idle)
        in_use = list(self._in_use_connections) if inuse_connections else []
        await self._close(idle + in_use)

    # -- lifecycle ------------------------------------------------------------------------

    async def warm(self) -> int:
        """Open connections until ``min_idle`` are idle. Returns how many were opened.

        Raises:
            redis.ConnectionError: the first connect error, after trying every one.
        """
        fresh = self._state.reserve_for_warming(monotonic())
        try:
            results = await asyncio.gather(
                *(connection.connect() for connection in fresh), return_exceptions=True
            )
        except BaseException:  # cancelled: give every reserved slot back
            for connection in fresh:
                self._forget(connection, warming=True)
            raise
        first_error = None
        for connection, result in zip(fresh, results, strict=True):
            ok = not isinstance(result, BaseException)
            if ok:
                connection.ferrite_lease.fresh = False
            else:
                first_error = first_error or result
                self._discard([connection])
            waiter = self._state.add_warmed(connection, monotonic(), ok=ok)
            if waiter is not None:
                waiter.on_grant()
        if first_error is not None:
            raise first_error
        return sum(1 for result in results if not isinstance(result, BaseException))

    def reset(self) -> None:
        """Start afresh: idle connections are closed (at the next pool operation on the
        loop, since closing needs it); connections in use close when given back."""
        state: PoolState | None = getattr(self, "_state", None)
        if state is None:
            super().reset()  # type: ignore[no-untyped-call]
            return
        retired = list(self._available_connections)
        self._available_connections.clear()
        state.closed["closed"] += len(retired)
        self._pending_close.extend(retired)

    async def maintain(self) -> None:
        """Retire expired and surplus idle connections, report leaks, top up ``min_idle``."""
        retired: list[Any] = []
        now = monotonic()
        self._state.sweep(now, retired)
        self._report_leaks(self._state.overdue(now), now)
        checking = [self._state.take_idle(now) for _ in range(len(self._available_connections))]
        try:
            await self._close(retired)
            while checking:  # lent to us while checked: nobody else reads them
                connection = checking.pop(0)
                if await self._checked(connection):
                    await self.release(connection)
                else:
                    self._forget(connection)  # counted as closed, broken
        finally:  # cancelled: the unchecked rest goes back as it was
            expired: list[Any] = []
            for connection in checking:
                self._give_back(connection, expired)
            self._discard(expired)
        try:
            await self.warm()
        except ServerUnavailableError:
            pass  # the breaker already says so; the monitor's ping probes for recovery
        except _CHECK_ERRORS as error:
            logger.warning("Pool %r could not open idle connections: %s", self.name, error)

    async def ping(self, timeout: float) -> float:
        """The async twin of ``FerritePool.ping``."""
        self.breaker.admit()
        connection = self._state.take_idle(monotonic())
        if connection is not None and not await self._checked(connection):
            self._forget(connection)  # it may hold part of a reply: never lent again
            connection = None
        temporary = connection is None
        if temporary:
            connection = self._new_probe(timeout)
        started = monotonic()
        try:
            if temporary:
                await connection.connect()
            await connection.send_command("PING", check_health=False)
            await connection.read_response(timeout=timeout)
        except BaseException as error:
            self._state.record_ping(None, error)
            await connection.disconnect(nowait=True)
            raise
        finally:
            if temporary:
                await connection.disconnect()
            else:
                await self.release(connection)
        latency = monotonic() - started
        self._state.record_ping(latency, None)
        return latency

    def record_batch(self, commands: int, round_trips: int, failed: int = 0) -> None:
        """Count commands sent by request scopes and the auto-pipeliner, the round trips
        they took, and deferred commands that failed."""
        self._state.batch_commands += commands
        self._state.batch_round_trips += round_trips
        self._state.batch_failures += failed

    def stats(self) -> dict[str, Any]:
        """Counts and timings as plain values (see docs/pooling.md)."""
        return {"name": self.name, "address": self.config.address, **self._state.stats()}

    # -- internals ------------------------------------------------------------------------

    async def _checked(self, connection: Any) -> bool:
        """``looks_clean`` for an idle connection lent to the pool itself (maintenance, a
        ping). A check cut short by cancellation closes it and frees its slot: nobody
        else would ever give it back."""
        try:
            clean: bool = await connection.looks_clean()
        except BaseException:
            self._forget(connection)
            raise
        return clean

    def _give_back(self, connection: Any, retired: list[Any]) -> None:
        waiter = self._state.give_back(connection, monotonic(), broken=False, retired=retired)
        if waiter is not None:
            waiter.on_grant()

    async def _wait(self, waiter: _FutureWaiter, started: float) -> Any:
        try:
            async with asyncio.timeout(self.config.acquire_timeout):
                await waiter.future
        except BaseException as error:
            now = monotonic()
            message = timeout_message(self.name, now - started, self._state, now)
            granted = self._state.withdraw(waiter)
            if granted is not None and isinstance(error, TimeoutError):
                pass  # granted in the same instant the timeout fired: use it
            elif granted is not None:  # cancelled after being granted: pass it on
                retired: list[Any] = []
                self._give_back(granted, retired)
                await self._close(retired)
                raise
            elif isinstance(error, TimeoutError):
                self._state.timeouts += 1
                raise PoolTimeoutError(message) from None
            else:
                raise
        self._state.waits.add(monotonic() - started)
        return waiter.connection

    async def _make_ready(self, connection: Any) -> None:
        """Connect a fresh connection, or check a reused one and replace it transparently
        if it died while idle."""
        lease = connection.ferrite_lease
        if lease.fresh:
            await connection.connect()
            lease.fresh = False
        elif not await self._usable(connection, lease.last_used):
            self._state.closed["broken"] += 1
            self._state.created += 1
            await connection.disconnect(nowait=True)
            await connection.connect()

    def _forget(self, connection: Any, *, warming: bool = False) -> None:
        """A borrowed connection that could not be made ready leaves the pool; its slot
        goes to the next waiter. Never suspends, so cancellation cannot interrupt it."""
        self._discard([connection])
        if warming:
            self._state.warming -= 1
        waiter = self._state.forget_failed(connection, monotonic())
        if waiter is not None:
            waiter.on_grant()

    def _discard(self, connections: list[Any]) -> None:
        """Close connections without suspending (redis-py's own synchronous close, the one
        it uses when no task is running), so that cancellation cannot cut it short."""
        for connection in connections:
            try:
                connection._parser.on_disconnect()
                connection._close()
            except Exception as error:  # closing a dead socket must not fail the caller
                logger.debug("Pool %r: error while closing a connection: %s", self.name, error)

    async def _usable(self, connection: Any, last_used: float) -> bool:
        if not await connection.looks_clean():
            return False
        interval = self.config.health_check_interval
        if not interval or monotonic() - last_used < interval:
            return True
        try:
            await connection.send_command("PING", check_health=False)
            return bool(await connection.read_response())
        except _CHECK_ERRORS:
            self._state.health_check_failures += 1
            return False

    async def _close(self, connections: list[Any]) -> None:
        for connection in connections:
            try:
                await connection.disconnect()
            except Exception as error:  # closing a dead socket must not fail the caller
                logger.debug("Pool %r: error while closing a connection: %s", self.name, error)
