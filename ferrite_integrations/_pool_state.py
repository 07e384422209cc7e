"""Pool bookkeeping shared by the sync and the async pool.

Which connection a caller gets, who waits and in what order, what to close and why, and the
numbers behind ``stats()``. No I/O and no locking happen here: the sync pool calls every
method while holding its lock, the async pool from its event loop's thread. Keeping the
decisions in one place is what keeps the two pools from drifting apart.

Invariants (hold whenever the owner's lock is free):

* ``idle`` and ``in_use`` are redis-py's own ``_available_connections`` list and
  ``_in_use_connections`` set; ``len(idle) + len(in_use)`` is every connection the pool
  owns, at most ``max_connections``.
* ``idle`` is a stack: the most recently returned connection is on top (``idle[-1]``).
* If anyone is waiting, ``idle`` is empty: a returned connection goes to the longest
  waiter (FIFO hand-off), never back on the stack, so a returning caller cannot barge
  ahead of a waiter.
"""

from __future__ import annotations

import logging
import random
import traceback
from collections import Counter, deque
from collections.abc import Callable, MutableSet
from dataclasses import dataclass, field
from typing import Any, Literal

from ferrite_integrations.config import PoolConfig

CloseReason = Literal["idle", "lifetime", "broken", "fork", "closed"]
CLOSE_REASONS: tuple[CloseReason, ...] = ("idle", "lifetime", "broken", "fork", "closed")

logger = logging.getLogger("ferrite_integrations.pool")

# Connections live at most max_lifetime, minus up to this fraction of it, drawn once per
# connection, so that connections opened together do not all expire together.
LIFETIME_JITTER = 0.025
WAIT_SAMPLES = 2048


@dataclass(slots=True)
class Lease:
    """What the pool knows about one connection it owns (kept on the connection)."""

    created: float
    expires: float | None
    last_used: float
    borrowed_at: float = 0.0
    borrow_stack: str | None = None
    leak_reported: bool = False
    fresh: bool = True  # created by the pool and not connected yet


class Waiter:
    """A caller waiting for a connection; the pool grants it one through ``grant``."""

    __slots__ = ("connection", "on_grant")

    def __init__(self, on_grant: Callable[[], None]) -> None:
        self.connection: Any = None
        self.on_grant = on_grant


@dataclass
class WaitSamples:
    """Recent acquire waits (seconds), for percentiles, plus totals over the pool's life."""

    recent: deque[float] = field(default_factory=lambda: deque(maxlen=WAIT_SAMPLES))
    count: int = 0
    longest: float = 0.0

    def add(self, seconds: float) -> None:
        self.recent.append(seconds)
        self.count += 1
        self.longest = max(self.longest, seconds)

    def summary(self) -> dict[str, float | int]:
        ordered = sorted(self.recent)
        return {
            "count": self.count,
            "p50": _percentile(ordered, 0.50),
            "p99": _percentile(ordered, 0.99),
            "max": self.longest,
        }


def _percentile(ordered: list[float], fraction: float) -> float:
    if not ordered:
        return 0.0
    index = min(len(ordered) - 1, int(fraction * len(ordered)))
    return ordered[index]


class PoolState:
    """The shared decisions of a pool. See the module docstring for the invariants.

    Args:
        config: the pool's configuration (sizes and lifetimes).
        idle: the pool's stack of idle connections.
        in_use: the pool's set of borrowed connections.
        make: creates a new, unconnected connection object (no I/O).
    """

    def __init__(
        self,
        config: PoolConfig,
        idle: list[Any],
        in_use: MutableSet[Any],
        make: Callable[[], Any],
    ) -> None:
        self.config = config
        self.idle = idle
        self.in_use = in_use
        self.make = make
        self.waiters: deque[Waiter] = deque()
        self.created = 0
        self.closed: Counter[str] = Counter()
        self.timeouts = 0
        self.health_check_failures = 0
        self.leaks_reported = 0
        self.warming = 0
        self.waits = WaitSamples()
        self.last_ping_latency: float | None = None
        self.last_ping_error: str | None = None
        self.pings = 0
        self.ping_failures = 0
        self.batch_round_trips = 0
        self.batch_commands = 0
        self.batch_failures = 0

    # -- sizes ----------------------------------------------------------------------

    @property
    def total(self) -> int:
        return len(self.idle) + len(self.in_use)

    def counts(self) -> tuple[int, int, int, int]:
        """``(in use, idle, waiting, max)``."""
        return len(self.in_use), len(self.idle), len(self.waiters), self.config.max_connections

    # -- borrowing ------------------------------------------------------------------

    def take(self, now: float, retired: list[Any]) -> Any:
        """A connection for a caller arriving now, or ``None`` if it must wait.

        Expired idle connections met on the way are moved to ``retired`` (to be closed by
        the caller, outside any lock). A new connection object (``lease.fresh``) is
        returned when there is room and nothing idle: the caller connects it.
        """
        if self.waiters:
            return None
        while self.idle:
            connection = self.idle.pop()
            lease: Lease = connection.ferrite_lease
            if lease.expires is not None and now >= lease.expires:
                self._retire(connection, "lifetime", retired)
                continue
            return self._lend(connection, now)
        if self.total < self.config.max_connections:
            return self._lend(self._new_connection(now), now)
        return None

    def take_idle(self, now: float) -> Any:
        """An idle connection if one is free and nobody waits, else ``None`` (for health
        pings, which must never take a connection a caller is waiting for)."""
        if self.waiters or not self.idle:
            return None
        return self._lend(self.idle.pop(), now)

    def record_ping(self, latency: float | None, error: BaseException | None) -> None:
        self.last_ping_latency = latency
        self.last_ping_error = None if error is None else (str(error) or type(error).__name__)
        self.pings += 1
        if error is not None:
            self.ping_failures += 1

    def enqueue(self, waiter: Waiter) -> None:
        self.waiters.append(waiter)

    def withdraw(self, waiter: Waiter) -> Any:
        """A waiter gives up (timeout, cancellation). Returns a connection it was granted
        in the meantime, which the caller must use or give back, else ``None``."""
        if waiter.connection is None and waiter in self.waiters:
            self.waiters.remove(waiter)
        return waiter.connection

    def _lend(self, connection: Any, now: float) -> Any:
        self.in_use.add(connection)
        connection.ferrite_lease.borrowed_at = now
        connection.ferrite_lease.leak_reported = False
        return connection

    def _new_connection(self, now: float) -> Any:
        connection = self.make()
        lifetime = self.config.max_lifetime
        expires = None
        if lifetime is not None:
            expires = now + lifetime * (1 - random.uniform(0, LIFETIME_JITTER))
        connection.ferrite_lease = Lease(created=now, expires=expires, last_used=now)
        self.created += 1
        return connection

    def _grant_next(self, connection: Any, now: float) -> Waiter:
        waiter = self.waiters.popleft()
        waiter.connection = self._lend(connection, now)
        return waiter

    # -- returning ------------------------------------------------------------------

    def give_back(
        self, connection: Any, now: float, *, broken: bool, retired: list[Any]
    ) -> Waiter | None:
        """A borrowed connection comes back. Returns the waiter it (or its freed slot, as
        a fresh connection) was handed to; the caller wakes that waiter."""
        if connection not in self.in_use:
            return None
        self.in_use.discard(connection)
        lease: Lease = connection.ferrite_lease
        lease.last_used = now
        reason: CloseReason | None = "broken" if broken else None
        if reason is None and lease.expires is not None and now >= lease.expires:
            reason = "lifetime"
        if reason is not None:
            self._retire(connection, reason, retired)
            if self.waiters:
                return self._grant_next(self._new_connection(now), now)
            return None
        if self.waiters:
            return self._grant_next(connection, now)
        self.idle.append(connection)
        return None

    def forget_failed(self, connection: Any, now: float) -> Waiter | None:
        """A connection that never connected (or failed to reconnect) leaves the pool; its
        slot goes to the next waiter, who tries for itself."""
        if connection not in self.in_use:
            return None
        self.in_use.discard(connection)
        self.closed["broken"] += 1
        if self.waiters:
            return self._grant_next(self._new_connection(now), now)
        return None

    def _retire(self, connection: Any, reason: CloseReason, retired: list[Any]) -> None:
        self.closed[reason] += 1
        retired.append(connection)

    # -- maintenance ----------------------------------------------------------------

    def sweep(self, now: float, retired: list[Any]) -> None:
        """Retire idle connections past their lifetime, and those idle longer than
        ``idle_timeout`` while more than ``min_idle`` are idle (oldest first)."""
        keep: list[Any] = []
        for connection in self.idle:
            lease: Lease = connection.ferrite_lease
            if lease.expires is not None and now >= lease.expires:
                self._retire(connection, "lifetime", retired)
            else:
                keep.append(connection)
        idle_timeout = self.config.idle_timeout
        if idle_timeout is not None:
            surplus = len(keep) - self.config.min_idle
            # keep[0] is the bottom of the stack: the longest idle.
            while surplus > 0 and now - keep[0].ferrite_lease.last_used >= idle_timeout:
                self._retire(keep.pop(0), "idle", retired)
                surplus -= 1
        self.idle[:] = keep

    def reserve_for_warming(self, now: float) -> list[Any]:
        """New connection objects to bring the idle count up to ``min_idle`` (bounded by
        ``max_connections``); they count as in use until ``add_warmed`` is called."""
        wanted = min(
            self.config.min_idle - len(self.idle) - self.warming,
            self.config.max_connections - self.total,
        )
        fresh = [self._lend(self._new_connection(now), now) for _ in range(max(0, wanted))]
        self.warming += len(fresh)
        return fresh

    def add_warmed(self, connection: Any, now: float, *, ok: bool) -> Waiter | None:
        """A connection opened by ``warm`` joins the idle stack (or a waiter)."""
        self.warming -= 1
        if not ok:
            return self.forget_failed(connection, now)
        return self.give_back(connection, now, broken=False, retired=[])

    def overdue(self, now: float) -> list[Any]:
        """Borrowed connections held past ``leak_detection_threshold`` and not reported yet
        (each borrow is reported once)."""
        threshold = self.config.leak_detection_threshold
        if threshold is None:
            return []
        found = []
        for connection in self.in_use:
            lease: Lease = connection.ferrite_lease
            if not lease.leak_reported and now - lease.borrowed_at >= threshold:
                lease.leak_reported = True
                found.append(connection)
        self.leaks_reported += len(found)
        return found

    def longest_held(self, now: float) -> float:
        return max((now - c.ferrite_lease.borrowed_at for c in self.in_use), default=0.0)

    def forget_everything(self) -> int:
        """After a fork: drop every connection (the parent's) without touching it."""
        dropped = self.total
        self.closed["fork"] += dropped
        self.idle.clear()
        self.in_use.clear()
        self.waiters.clear()
        return dropped

    # -- reporting ------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        in_use, idle, waiting, maximum = self.counts()
        return {
            "in_use": in_use,
            "idle": idle,
            "total": in_use + idle,
            "max": maximum,
            "waiting": waiting,
            "created": self.created,
            "closed": {reason: self.closed[reason] for reason in CLOSE_REASONS},
            "acquire_wait": self.waits.summary(),
            "timeouts": self.timeouts,
            "health_check_failures": self.health_check_failures,
            "leaks_reported": self.leaks_reported,
            "pings": self.pings,
            "ping_failures": self.ping_failures,
            "pipelining": {
                "round_trips": self.batch_round_trips,
                "commands": self.batch_commands,
                "failed_deferred": self.batch_failures,
                "commands_per_round_trip": (
                    self.batch_commands / self.batch_round_trips if self.batch_round_trips else 0.0
                ),
            },
            "last_ping_ms": (
                None if self.last_ping_latency is None else self.last_ping_latency * 1000
            ),
        }


def timeout_message(name: str, waited: float, state: PoolState, now: float) -> str:
    """The ``PoolTimeoutError`` text: what the pool looked like when the caller gave up."""
    in_use, idle, waiting, maximum = state.counts()
    return (
        f"Timeout waiting for connection from pool {name!r} after {waited:.1f} s "
        f"({in_use} in use, {idle} idle, {waiting} waiting, max {maximum}; "
        f"longest held {state.longest_held(now):.1f} s). Raise max_connections or "
        "acquire_timeout, or look for slow commands (SLOWLOG GET) and connections "
        "that are not returned (leak_detection_threshold)."
    )


def report_leak(name: str, connection: Any, now: float, threshold: float) -> None:
    lease = connection.ferrite_lease
    logger.warning(
        "A connection of pool %r has been held for %.1f s (leak_detection_threshold=%s s); "
        "it was taken at:\n%s",
        name,
        now - lease.borrowed_at,
        threshold,
        lease.borrow_stack or "(stack not recorded)\n",
    )


def borrow_stack() -> str:
    # Drop the two innermost frames (this function and the pool's get_connection).
    return "".join(traceback.format_stack(limit=30)[:-2])
