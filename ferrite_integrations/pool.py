"""The sync pool: a ``redis.ConnectionPool`` with fair blocking checkout, pre-warming,
idle and lifetime limits, checks on borrow, leak detection and stats.

Because it subclasses ``redis.ConnectionPool``, ``redis.Redis(connection_pool=pool)``,
pipelines, pub/sub, locks and scripts work unchanged.

Locking: ``self._lock`` guards the bookkeeping (``self._state``) only; connecting, PINGs
and closing sockets always happen outside it, so a slow server never blocks the pool.
"""

from __future__ import annotations

import logging
import os
import threading
from time import monotonic
from typing import Any

import redis
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

__all__ = ["FerritePool"]

logger = logging.getLogger("ferrite_integrations.pool")

_CHECK_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)


class _ThreadWaiter(Waiter):
    __slots__ = ("gate",)

    def __init__(self) -> None:
        gate = threading.Lock()
        gate.acquire()
        super().__init__(gate.release)
        self.gate = gate


class FerritePool(PoolCommon, redis.ConnectionPool):
    """A fair, self-maintaining connection pool for one configuration.

    Args:
        config: the validated configuration.
        name: the pool's name in messages, logs, ``repr`` and stats (the manager uses the
            first alias that asked for it).
        client_name: ``CLIENT SETNAME`` for its connections when the configuration has no
            ``client_name``.
    """

    def __init__(
        self,
        config: PoolConfig,
        *,
        name: str = "default",
        client_name: str | None = None,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        kwargs = self._prepare(config, name, client_name, breaker, use_asyncio=False)
        super().__init__(**kwargs)

    # -- redis-py's pool interface ------------------------------------------------------

    def reset(self) -> None:
        # Runs from __init__, from _checkpid() in a forked child, and when a user calls it.
        # In a child the parent's lock may be held by a thread that does not exist there and
        # the parent's sockets must not be touched: replace the lock, drop the connections
        # unclosed. In the same process, reset means "start afresh": close them.
        if getattr(self, "_state", None) is not None and self.pid == os.getpid():
            self.disconnect()
            return
        self._lock = threading.RLock()
        previous: PoolState | None = getattr(self, "_state", None)
        self._created_connections = 0
        self._available_connections = []
        self._in_use_connections = set()
        state = PoolState(
            self.config, self._available_connections, self._in_use_connections, self._new
        )
        if previous is not None:
            state.closed.update(previous.closed)
            state.closed["fork"] += previous.total
        self._state = state
        self.pid = os.getpid()  # last: other threads watch pid to notice the reset

    def get_connection(self, command_name: Any = None, *keys: Any, **options: Any) -> Any:
        """A connected, checked connection; waits up to ``acquire_timeout`` when all
        ``max_connections`` are in use, and is served before anyone who asks later."""
        if self.pid != os.getpid():
            self._checkpid()
        self.breaker.admit()
        started = monotonic()
        retired: list[Any] = []
        waiter = None
        with self._lock:
            connection = self._state.take(started, retired)
            if connection is None:
                waiter = _ThreadWaiter()
                self._state.enqueue(waiter)
                overdue = self._state.overdue(started)
            else:
                self._state.waits.add(0.0)  # served at once: no wait worth a clock read
        if waiter is not None:
            self._close(retired)
            self._report_leaks(overdue, started)
            connection = self._wait(waiter, started)
            retired = []
        # From here the caller owns a slot: any failure, even Ctrl-C, must give it back.
        try:
            if retired:
                self._close(retired)
            self._make_ready(connection, started if waiter is None else monotonic())
        except BaseException:
            self._forget(connection)
            raise
        if self.config.leak_detection_threshold is not None:
            connection.ferrite_lease.borrow_stack = borrow_stack()
        return connection

    def release(self, connection: Any) -> None:
        """Give a connection back: to the longest waiter, else to the idle stack."""
        if self.pid != os.getpid():
            self._checkpid()
        retired: list[Any] = []
        with self._lock:
            waiter = self._state.give_back(connection, monotonic(), broken=False, retired=retired)
            if waiter is not None:
                waiter.on_grant()
        if retired:
            self._close(retired)

    def disconnect(self, inuse_connections: bool = True) -> None:
        """Close idle connections (and, by default, those in use: their next command
        reconnects). Safe to call more than once."""
        self._checkpid()
        with self._lock:
            idle = list(self._available_connections)
            self._available_connections.clear()
            self._state.closed["closed"] += len(idle)
            in_use = list(self._in_use_connections) if inuse_connections else []
        self._close(idle + in_use)

    # -- lifecycle ------------------------------------------------------------------------

    def warm(self) -> int:
        """Open connections until ``min_idle`` are idle. Returns how many were opened.

        Raises:
            redis.ConnectionError: the first connect error, after trying every one.
        """
        self._checkpid()
        with self._lock:
            fresh = self._state.reserve_for_warming(monotonic())
        opened, first_error = 0, None
        pending = list(fresh)
        try:
            while pending:
                connection = pending[0]
                try:
                    connection.connect()
                    connection.ferrite_lease.fresh = False
                    opened, ok = opened + 1, True
                except Exception as error:  # reported below, after the others were tried
                    first_error, ok = first_error or error, False
                self._settle_warmed(pending.pop(0), ok=ok)
        finally:
            for connection in pending:  # interrupted (Ctrl-C): give the slots back
                connection.disconnect()
                self._settle_warmed(connection, ok=False)
        if first_error is not None:
            raise first_error
        return opened

    def _settle_warmed(self, connection: Any, *, ok: bool) -> None:
        with self._lock:
            waiter = self._state.add_warmed(connection, monotonic(), ok=ok)
            if waiter is not None:
                waiter.on_grant()

    def maintain(self) -> None:
        """Retire expired and surplus idle connections, report leaks, top up ``min_idle``.

        The background monitor calls this periodically; it is safe to call at any time.
        """
        self._checkpid()
        retired: list[Any] = []
        now = monotonic()
        with self._lock:
            self._state.sweep(now, retired)
            overdue = self._state.overdue(now)
            checking = [self._state.take_idle(now) for _ in range(len(self._available_connections))]
        self._close(retired)
        self._report_leaks(overdue, now)
        while checking:  # lent to us while checked: nobody else reads them
            connection = checking.pop(0)
            if self._checked(connection, checking):
                self.release(connection)
            else:
                self._forget(connection)  # counted as closed, broken
        try:
            self.warm()
        except ServerUnavailableError:
            pass  # the breaker already says so; the monitor's ping probes for recovery
        except _CHECK_ERRORS as error:
            logger.warning("Pool %r could not open idle connections: %s", self.name, error)

    def ping(self, timeout: float) -> float:
        """One PING that waits at most ``timeout`` seconds; returns the round trip in seconds.

        Uses an idle connection when one is free and nobody waits for it (never one a caller
        is waiting for), else a short-lived extra connection. The circuit breaker hears of
        the result; while it is open this raises ``ServerUnavailableError`` at once, and when
        a probe is due this ping is the probe.
        """
        self._checkpid()
        self.breaker.admit()
        with self._lock:
            connection = self._state.take_idle(monotonic())
        if connection is not None and not self._checked(connection, []):
            self._forget(connection)  # it may hold part of a reply: never lent again
            connection = None
        temporary = connection is None
        if temporary:
            connection = self._new_probe(timeout)
        started = monotonic()
        try:
            if temporary:
                connection.connect()
            connection.send_command("PING", check_health=False)
            connection.read_response(timeout=timeout)
        except BaseException as error:
            with self._lock:
                self._state.record_ping(None, error)
            connection.disconnect()
            raise
        finally:
            if temporary:
                connection.disconnect()
            else:
                self.release(connection)
        latency = monotonic() - started
        with self._lock:
            self._state.record_ping(latency, None)
        return latency

    def record_batch(self, commands: int, round_trips: int, failed: int = 0) -> None:
        """Count commands sent by request scopes, the round trips they took, and deferred
        commands that failed."""
        with self._lock:
            self._state.batch_commands += commands
            self._state.batch_round_trips += round_trips
            self._state.batch_failures += failed

    def stats(self) -> dict[str, Any]:
        """Counts and timings as plain values (see docs/pooling.md)."""
        self._checkpid()
        with self._lock:
            report = self._state.stats()
        return {"name": self.name, "address": self.config.address, **report}

    # -- internals ------------------------------------------------------------------------

    def _wait(self, waiter: _ThreadWaiter, started: float) -> Any:
        timeout = self.config.acquire_timeout
        try:
            granted = waiter.gate.acquire(timeout=timeout) if timeout > 0 else False
        except BaseException:
            with self._lock:
                abandoned = self._state.withdraw(waiter)
            if abandoned is not None:
                self.release(abandoned)
            raise
        with self._lock:
            now = monotonic()
            if not granted:
                # The message counts this caller among the waiters: it describes the pool
                # as the caller saw it when giving up.
                message = timeout_message(self.name, now - started, self._state, now)
                if self._state.withdraw(waiter) is None:
                    self._state.timeouts += 1
                    raise PoolTimeoutError(message)
            self._state.waits.add(now - started)
        return waiter.connection

    def _make_ready(self, connection: Any, now: float) -> None:
        """Connect a fresh connection, or check a reused one and replace it transparently
        if it died while idle."""
        lease = connection.ferrite_lease
        if lease.fresh:
            connection.connect()
            lease.fresh = False
            return
        if connection.looks_clean():
            interval = self.config.health_check_interval
            if not interval or now - lease.last_used < interval or self._answers_ping(connection):
                return
        with self._lock:
            self._state.closed["broken"] += 1
            self._state.created += 1
        connection.disconnect()
        connection.connect()

    def _checked(self, connection: Any, unchecked: list[Any]) -> bool:
        """``looks_clean`` for an idle connection lent to the pool itself (maintenance, a
        ping). If the check itself is interrupted, that connection is closed and the
        ``unchecked`` rest goes back: nobody else would ever give them back."""
        try:
            clean: bool = connection.looks_clean()
        except BaseException:
            self._forget(connection)
            for other in unchecked:
                self.release(other)
            raise
        return clean

    def _forget(self, connection: Any) -> None:
        """A borrowed connection that could not be made ready leaves the pool; its slot
        goes to the next waiter."""
        try:
            connection.disconnect()
        finally:
            with self._lock:
                waiter = self._state.forget_failed(connection, monotonic())
                if waiter is not None:
                    waiter.on_grant()

    def _answers_ping(self, connection: Any) -> bool:
        """The check of a connection idle for longer than ``health_check_interval``."""
        try:
            connection.send_command("PING", check_health=False)
            return bool(connection.read_response())
        except _CHECK_ERRORS:
            with self._lock:
                self._state.health_check_failures += 1
            return False

    def _close(self, connections: list[Any]) -> None:
        for connection in connections:
            try:
                connection.disconnect()
            except Exception as error:  # closing a dead socket must not fail the caller
                logger.debug("Pool %r: error while closing a connection: %s", self.name, error)
