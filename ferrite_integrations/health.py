"""Health: live reports built from one bounded PING per server, the background monitor
that pings and maintains pools on a timer, and the degraded mode that turns connection
errors into misses for callers that prefer a miss to an error (a cache).

Single flight: at most one health PING per server is in flight at a time; concurrent
callers share its answer. ``_SingleFlight._lock`` guards only the table of flights.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, Literal, TypeVar

import redis.exceptions

from ferrite_integrations.errors import ServerUnavailableError, TLSError
from ferrite_integrations.pool import FerritePool
from ferrite_integrations.pool_async import AsyncFerritePool

__all__ = ["Degraded", "Monitor", "Status", "overall_status", "pool_health", "pools_health"]

logger = logging.getLogger("ferrite_integrations.health")

T = TypeVar("T")
Status = Literal["up", "degraded", "down"]
_FAILURES = (redis.exceptions.RedisError, OSError)
DEFAULT_MONITOR_INTERVAL = 30.0


class _SingleFlight:
    """One health ping per server at a time. Callers arriving while it is in flight share
    its outcome, and every caller waits at most its own timeout: a ping that outlives the
    wait keeps running (bounded by its own socket timeouts) and still counts as in flight.

    Sync pings run on a small thread pool so that the wait can be bounded; async pings run
    as a task that callers await through a shield, so that cancelling one caller never
    cancels the ping the others wait for.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flights: dict[str, concurrent.futures.Future[Any]] = {}
        self._tasks: dict[tuple[int, str], asyncio.Task[Any]] = {}
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._executor_pid = 0

    def run(self, key: str, call: Callable[[], T], timeout: float) -> T:
        return self.wait(self.submit(key, call), timeout, timeout)

    def submit(self, key: str, call: Callable[[], T]) -> concurrent.futures.Future[T]:
        """The ping in flight for ``key``, started now if there is none."""
        with self._lock:
            future = self._flights.get(key)
            started = future is None
            if future is None:
                future = self._flights[key] = self._threads().submit(call)
        if started:
            future.add_done_callback(lambda done: self._landed(key, done))
        return future

    @staticmethod
    def wait(future: concurrent.futures.Future[T], wait: float, timeout: float) -> T:
        """``future``'s result within ``wait`` seconds (``timeout`` is for the message)."""
        try:
            return future.result(timeout=max(0.0, wait))
        except concurrent.futures.TimeoutError:
            raise redis.exceptions.TimeoutError(
                f"Health check did not finish within health_timeout={timeout} s"
            ) from None

    async def arun(self, key: str, call: Callable[[], Awaitable[T]], timeout: float) -> T:
        loop = asyncio.get_running_loop()
        task_key = (id(loop), key)
        task = self._tasks.get(task_key)
        if task is None or task.done():
            task = self._tasks[task_key] = loop.create_task(call())  # type: ignore[arg-type]
            task.add_done_callback(lambda done: self._task_landed(task_key, done))
        try:
            result: T = await asyncio.wait_for(asyncio.shield(task), timeout)
        except TimeoutError:
            raise redis.exceptions.TimeoutError(
                f"Health check did not finish within health_timeout={timeout} s"
            ) from None
        return result

    def _landed(self, key: str, future: concurrent.futures.Future[Any]) -> None:
        with self._lock:
            if self._flights.get(key) is future:
                del self._flights[key]

    def _task_landed(self, task_key: tuple[int, str], task: asyncio.Task[Any]) -> None:
        if self._tasks.get(task_key) is task:
            del self._tasks[task_key]
        if not task.cancelled():
            task.exception()  # its callers have their copy; do not report it as unretrieved

    def _threads(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._executor is None or self._executor_pid != os.getpid():
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=4, thread_name_prefix="ferrite-health"
            )
            self._executor_pid = os.getpid()
            self._flights = {}
        return self._executor


SINGLE_FLIGHT = _SingleFlight()


def _report(
    pool: FerritePool | AsyncFerritePool,
    latency: float | None,
    error: str | None,
) -> dict[str, Any]:
    snapshot = pool.breaker.snapshot()
    in_use, idle, waiting, maximum = pool._state.counts()
    if latency is None:
        status: Status = "down"
    elif snapshot.state != "closed" or (waiting and in_use >= maximum):
        status = "degraded"
    else:
        status = "up"
    return {
        "status": status,
        "breaker": snapshot.state,
        "latency_ms": None if latency is None else round(latency * 1000, 3),
        "last_error": error if latency is None else None,
        "in_use": in_use,
        "idle": idle,
        "waiting": waiting,
        "max": maximum,
        "address": pool.config.address,
        "url": pool.config.redacted_url,
    }


def _known_down(pool: FerritePool | AsyncFerritePool) -> str | None:
    snapshot = pool.breaker.snapshot()
    if snapshot.state == "open" and snapshot.retry_in > 0:
        return snapshot.last_error or "circuit breaker open"
    return None


def pool_health(pool: FerritePool) -> dict[str, Any]:
    """A live report for one sync pool: one bounded PING (shared with concurrent checks of
    the same server), or an immediate ``down`` while its circuit breaker is open."""
    return pools_health([pool])[0]


def pools_health(pools: list[FerritePool]) -> list[dict[str, Any]]:
    """Reports for several sync pools, their pings in flight together: the whole check
    takes at most the longest ``health_timeout``, not their sum."""
    started = time.monotonic()
    flights: list[concurrent.futures.Future[float] | str] = []
    for pool in pools:
        down = _known_down(pool)
        if down is not None:
            flights.append(down)
            continue
        timeout = pool.config.health_timeout
        flights.append(SINGLE_FLIGHT.submit(pool.config.address, partial(pool.ping, timeout)))
    return [
        _landed_report(pool, flight, started) for pool, flight in zip(pools, flights, strict=True)
    ]


def _landed_report(
    pool: FerritePool, flight: concurrent.futures.Future[float] | str, started: float
) -> dict[str, Any]:
    if isinstance(flight, str):
        return _report(pool, None, flight)
    timeout = pool.config.health_timeout
    try:
        latency = SINGLE_FLIGHT.wait(flight, started + timeout - time.monotonic(), timeout)
    except ServerUnavailableError:
        return _report(pool, None, pool.breaker.snapshot().last_error)
    except _FAILURES as error:
        return _report(pool, None, str(error) or type(error).__name__)
    return _report(pool, latency, None)


async def apool_health(pool: AsyncFerritePool) -> dict[str, Any]:
    """The async twin of ``pool_health``."""
    down = _known_down(pool)
    if down is not None:
        return _report(pool, None, down)
    timeout = pool.config.health_timeout
    try:
        latency = await SINGLE_FLIGHT.arun(pool.config.address, lambda: pool.ping(timeout), timeout)
    except ServerUnavailableError:
        return _report(pool, None, pool.breaker.snapshot().last_error)
    except _FAILURES as error:
        return _report(pool, None, str(error) or type(error).__name__)
    return _report(pool, latency, None)


def overall_status(statuses: list[Status]) -> Status:
    """``up`` when every pool is up, ``down`` when every pool is down, else ``degraded``."""
    if all(status == "up" for status in statuses):
        return "up"
    if all(status == "down" for status in statuses):
        return "down"
    return "degraded"


def monitor_interval(pool: FerritePool | AsyncFerritePool) -> float:
    return pool.config.health_check_interval or DEFAULT_MONITOR_INTERVAL


class Monitor:
    """The background thread of a manager: every ``health_check_interval`` it pings each
    monitored sync pool (recording latency, probing an open breaker) and maintains it
    (retiring idle and expired connections, topping up ``min_idle``, reporting leaks).

    Args:
        pools: returns the pools to look after, read afresh every round.
    """

    def __init__(self, pools: Callable[[], list[FerritePool]]) -> None:
        self._pools = pools
        self._stop = threading.Event()
        self._due: dict[int, float] = {}
        self._round = threading.Lock()  # held from listing the pools to the round's end
        self._thread = threading.Thread(target=self._run, name="ferrite-monitor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)

    def wait_round(self, timeout: float = 10.0) -> None:
        """Return once the round in progress, if any, has ended (at most ``timeout``
        seconds): a pool that left the list before this call is not touched afterwards.
        Returns at once on the monitor's own thread."""
        if self._thread is threading.current_thread():
            return
        if self._round.acquire(timeout=timeout):
            self._round.release()

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._round:
                pools = [pool for pool in self._pools() if pool.config.monitor]
                now = time.monotonic()
                self._due = {id(pool): self._due.get(id(pool), 0.0) for pool in pools}
                for pool in pools:
                    if self._stop.is_set():
                        return
                    if now >= self._due[id(pool)]:
                        self._due[id(pool)] = now + monitor_interval(pool)
                        look_after(pool)
            self._stop.wait(_tick(pools))


def look_after(pool: FerritePool) -> None:
    """One monitor round for one sync pool. Nothing that goes wrong with one pool may stop
    the monitor looking after the others."""
    try:
        pool.ping(pool.config.health_timeout)
    except _FAILURES as error:
        logger.debug("Health ping of pool %r failed: %s", pool.name, error)
    try:
        pool.maintain()
    except Exception:
        logger.exception("Maintenance of pool %r failed", pool.name)


async def alook_after(pool: AsyncFerritePool) -> None:
    """The async twin of ``look_after``."""
    try:
        await pool.ping(pool.config.health_timeout)
    except _FAILURES as error:
        logger.debug("Health ping of pool %r failed: %s", pool.name, error)
    try:
        await pool.maintain()
    except Exception:
        logger.exception("Maintenance of pool %r failed", pool.name)


async def amonitor(pools: Callable[[], list[AsyncFerritePool]]) -> None:
    """The async monitor task of one event loop (same rounds as ``Monitor``)."""
    due: dict[int, float] = {}
    task = asyncio.current_task()
    # Python 3.11's wait_for can swallow a cancellation that lands as its inner call ends
    # (redis-py awaits one per send): a request still pending ends the task all the same.
    while task is None or not task.cancelling():
        monitored = [pool for pool in pools() if pool.config.monitor]
        now = time.monotonic()
        for pool in monitored:
            if now >= due.get(id(pool), 0.0):
                due[id(pool)] = now + monitor_interval(pool)
                await alook_after(pool)
        await asyncio.sleep(_tick(monitored))


def _tick(pools: list[Any]) -> float:
    if not pools:
        return 1.0
    return min(1.0, max(0.01, min(monitor_interval(pool) for pool in pools) / 2))


class Degraded:
    """Degraded mode for one alias: connection-level errors become a default value.

    Adapters that prefer a miss to an error (Django's ``ignore_exceptions``) run their
    calls through ``call``/``acall``. Each suppressed error is counted; it is logged once
    per ``log_interval`` seconds with the number suppressed since, not once per call.

    Args:
        name: the alias, for log lines.
        address: the server, for log lines.
        log_interval: seconds between two log lines.
    """

    errors = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
    # Configuration mistakes are not outages: they must stay loud, not become misses.
    never_suppressed = (redis.exceptions.AuthenticationError, redis.exceptions.AuthorizationError)

    def __init__(self, name: str, address: str, log_interval: float = 30.0) -> None:
        self.name = name
        self.address = address
        self.log_interval = log_interval
        self.suppressed = 0
        self._unlogged = 0
        self._last_logged = -float("inf")
        self._lock = threading.Lock()

    def call(
        self, function: Callable[..., T], *args: Any, default: Any = None, **kwargs: Any
    ) -> Any:
        """``function(*args, **kwargs)``, or ``default`` if it fails at the connection level."""
        try:
            return function(*args, **kwargs)
        except self.errors as error:
            if not self._suppressible(error):
                raise
            self.suppress(error)
            return default

    async def acall(
        self, function: Callable[..., Awaitable[T]], *args: Any, default: Any = None, **kwargs: Any
    ) -> Any:
        """The async twin of ``call``."""
        try:
            return await function(*args, **kwargs)
        except self.errors as error:
            if not self._suppressible(error):
                raise
            self.suppress(error)
            return default

    def _suppressible(self, error: BaseException) -> bool:
        if isinstance(error, self.never_suppressed):
            return False
        return not (isinstance(error, TLSError) and error.permanent)

    def suppress(self, error: BaseException) -> None:
        """Count a suppressed error; log it if the last log line is old enough."""
        with self._lock:
            self.suppressed += 1
            self._unlogged += 1
            now = time.monotonic()
            if now - self._last_logged < self.log_interval:
                return
            count, self._unlogged, self._last_logged = self._unlogged, 0, now
        logger.warning(
            "Pool %r (%s) is failing; %d error(s) treated as misses since the last report. "
            "Latest: %s",
            self.name,
            self.address,
            count,
            error,
        )
