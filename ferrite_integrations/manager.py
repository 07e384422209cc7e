"""``PoolManager``: alias -> configuration, configuration -> one shared pool per process
(and, for asyncio, per event loop).

Locking: ``self._lock`` guards the three registries (aliases, sync pools, loop entries) and
is never held during I/O. A forked child replaces it (its holder may not exist there).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import sys
import threading
import time
import weakref
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any, Unpack, cast

import redis
import redis.asyncio

from ferrite_integrations.breaker import CircuitBreaker, breaker_for_config
from ferrite_integrations.config import PoolConfig, PoolOptions
from ferrite_integrations.errors import ConfigError, FerriteError
from ferrite_integrations.health import (
    Degraded,
    Monitor,
    amonitor,
    apool_health,
    overall_status,
    pools_health,
)
from ferrite_integrations.pipeline import OnError, RequestScope, ScopeClient, _scope_for
from ferrite_integrations.pipeline_async import (
    AsyncRequestScope,
    AsyncScopeClient,
    AutoPipelineClient,
    AutoPipeliner,
)
from ferrite_integrations.pipeline_async import _scope_for as _async_scope_for
from ferrite_integrations.pool import FerritePool
from ferrite_integrations.pool_async import AsyncFerritePool

__all__ = ["PoolManager", "default_client_name", "get_manager"]

_LOOP_CLOSE_TIMEOUT = 5.0
logger = logging.getLogger("ferrite_integrations.manager")


def default_client_name() -> str:
    """The process's name as a valid ``CLIENT SETNAME`` value (e.g. ``gunicorn``, ``manage``),
    used when a configuration has no ``client_name``."""
    program = os.path.basename(sys.argv[0] if sys.argv and sys.argv[0] else "") or "python"
    program = program.removesuffix(".py")
    return re.sub(r"[^A-Za-z0-9._:-]", "_", program) or "python"


@dataclass
class _LoopEntry:
    """The async pools and clients of one event loop."""

    pools: dict[PoolConfig, AsyncFerritePool] = field(default_factory=dict)
    clients: dict[PoolConfig, redis.asyncio.Redis] = field(default_factory=dict)
    batched_clients: dict[PoolConfig, redis.asyncio.Redis] = field(default_factory=dict)
    scope_clients: dict[PoolConfig, AsyncScopeClient] = field(default_factory=dict)
    # async_client()'s answers by (alias, auto_pipeline); emptied when an alias changes
    by_alias: dict[tuple[str, bool | None], redis.asyncio.Redis] = field(default_factory=dict)
    guard: AsyncGenerator[None, None] | None = None
    monitor: asyncio.Task[None] | None = None

    async def aclose(self) -> None:
        monitor, self.monitor = self.monitor, None
        if monitor is not None:
            await _stop_task(monitor)
        for pool in list(self.pools.values()):
            await pool.disconnect()


async def _stop_task(task: asyncio.Task[None]) -> None:
    # Cancel again until it ends: a cancellation can be swallowed on Python 3.11 (wait_for).
    deadline = time.monotonic() + _LOOP_CLOSE_TIMEOUT
    while not task.done():
        if time.monotonic() > deadline:
            logger.warning("The health monitor task did not stop; leaving it behind.")
            return
        task.cancel()
        await asyncio.wait({task}, timeout=0.1)
    if not task.cancelled() and task.exception() is not None:
        logger.warning("The health monitor task had failed: %r", task.exception())


async def _close_with_loop(entry: _LoopEntry) -> AsyncGenerator[None, None]:
    # An async generator started on a loop is finalised by loop.shutdown_asyncgens(), which
    # asyncio.run(), asyncio.Runner, pytest-asyncio and asgiref run before closing the loop:
    # the one moment the loop's pools can still be closed on it.
    try:
        yield
    finally:
        await entry.aclose()


def _start(generator: AsyncGenerator[None, None]) -> None:
    with contextlib.suppress(StopIteration):
        generator.asend(None).send(None)


class PoolManager:
    """Shares one pool per configuration across every alias, framework and thread.

    Args:
        client_name: ``CLIENT SETNAME`` for connections whose configuration has none;
            default: the process name (``default_client_name()``).
    """

    def __init__(self, *, client_name: str | None = None) -> None:
        self.client_name = client_name or default_client_name()
        self._lock = threading.RLock()
        self._configs: dict[str, PoolConfig] = {}
        self._pools: dict[PoolConfig, FerritePool] = {}
        self._clients: dict[PoolConfig, ScopeClient] = {}
        # Derived from _configs, for request scopes (opened on every request): alias ->
        # (pool, client, aliases sharing it), and configuration -> its aliases. Both are
        # emptied under _lock by _aliases_changed whenever an alias is bound or unbound.
        self._scope_kits: dict[str, tuple[FerritePool, ScopeClient, tuple[str, ...]]] = {}
        self._alias_groups: dict[PoolConfig, tuple[str, ...]] = {}
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopEntry] = (
            weakref.WeakKeyDictionary()
        )
        self._inherited: list[Any] = []
        self._breakers: dict[str, CircuitBreaker] = {}
        self._degraded: dict[str, Degraded] = {}
        self._monitor: Monitor | None = None
        _managers.add(self)

    # -- aliases --------------------------------------------------------------------------

    def configure(
        self,
        alias: str,
        url: str | None = None,
        *,
        replace: bool = False,
        **options: Unpack[PoolOptions],
    ) -> PoolConfig:
        """Bind ``alias`` to a configuration (see ``PoolConfig.from_url``).

        Configuring the same alias with an equal configuration again is a no-op; a
        different configuration is a ``ConfigError`` unless ``replace=True`` (the old
        pool stays with the other aliases that share it, or is closed with the manager).
        """
        if not isinstance(alias, str) or not alias:
            raise ConfigError(f"A pool alias must be a non-empty string; got {alias!r}.")
        config = PoolConfig.from_url(url, **options)
        with self._lock:
            existing = self._configs.get(alias)
            if existing is not None and existing != config and not replace:
                raise ConfigError(
                    f"Pool alias {alias!r} is already configured as {existing!r}; the new "
                    f"configuration {config!r} differs. Pass replace=True to rebind it, or "
                    "use another alias.",
                    option="alias",
                )
            self._configs[alias] = config
            self._aliases_changed()
        return config

    def alias_for(self, config: PoolConfig, prefix: str) -> str:
        """An alias bound to ``config``: an existing one whose name starts with ``prefix``,
        else a new one named after the server (``django:cache:6379/0``, then ``...#2`` for
        another configuration of the same server). For adapters that configure pools from
        framework settings that have no alias of their own."""
        base = f"{prefix}:{config.address}/{config.db}"
        with self._lock:
            for alias, bound in self._configs.items():
                if bound == config and alias.startswith(f"{prefix}:"):
                    return alias
            alias, number = base, 1
            while alias in self._configs:
                number += 1
                alias = f"{base}#{number}"
            self._configs[alias] = config
            self._aliases_changed()
            return alias

    def config(self, alias: str = "default") -> PoolConfig:
        """The configuration bound to ``alias``.

        Raises:
            ConfigError: the alias was never configured.
        """
        config = self._configs.get(alias)
        if config is None:
            with self._lock:
                known = sorted(self._configs)
            raise ConfigError(
                f"No pool alias {alias!r}. Configured aliases: {known or 'none'}. Call "
                f"manager.configure({alias!r}, url, **options) first.",
                option="alias",
            )
        return config

    def aliases(self) -> list[str]:
        """Every configured alias, sorted."""
        with self._lock:
            return sorted(self._configs)

    def _aliases_of(self, config: PoolConfig) -> tuple[str, ...]:
        """The aliases bound to ``config``, sorted (caller holds ``_lock``)."""
        group = self._alias_groups.get(config)
        if group is None:
            group = tuple(sorted(a for a, bound in self._configs.items() if bound == config))
            self._alias_groups[config] = group
        return group

    def _aliases_changed(self) -> None:
        """Caller holds ``_lock`` and has just changed ``_configs``."""
        self._scope_kits.clear()
        self._alias_groups.clear()
        for entry in self._loops.values():
            entry.by_alias.clear()

    # -- sync -----------------------------------------------------------------------------

    def pool(self, alias: str = "default") -> FerritePool:
        """The shared sync pool of ``alias`` (created on first use; equal configurations
        share one pool)."""
        config = self.config(alias)
        with self._lock:
            pool = self._pools.get(config)
            if pool is None:
                pool = FerritePool(
                    config, name=alias, client_name=self.client_name, breaker=self.breaker(config)
                )
                self._pools[config] = pool
            return pool

    def client(self, alias: str = "default") -> redis.Redis:
        """A ``redis.Redis`` on the shared sync pool of ``alias`` (thread-safe, reused).
        Inside a request scope its commands first send what the scope has queued."""
        pool = self.pool(alias)
        with self._lock:
            client = self._clients.get(pool.config)
            if client is None:
                client = ScopeClient(connection_pool=pool)
                self._clients[pool.config] = client
            return client

    def request_scope(
        self, alias: str = "default", *, raise_on_error: bool = False, on_error: OnError = "flush"
    ) -> RequestScope:
        """A request scope on the shared pool of ``alias``: use it as ``with
        manager.request_scope("default") as scope:`` (see docs/pipelining.md).

        Writes queued with ``scope.deferred`` are sent with the next command that needs a
        reply (through ``scope.client`` or ``manager.client(alias)``), in one round trip,
        or when the scope ends. A scope opened while another scope of the same pool is open
        in this context joins it.

        Args:
            alias: the pool's alias.
            raise_on_error: raise ``PipelineError`` at exit if deferred commands failed
                (they are always logged and counted).
            on_error: ``"flush"`` sends the queue even when the scope is left by an
                exception; ``"discard"`` drops it.
        """
        pool, client, aliases = self._scope_kits.get(alias) or self._scope_kit(alias)
        joined = _scope_for(pool)
        if joined is not None:
            return joined
        return RequestScope(
            pool,
            client,
            aliases,
            raise_on_error=raise_on_error,
            on_error=on_error,
            record=pool.record_batch,
        )

    def _scope_kit(self, alias: str) -> tuple[FerritePool, ScopeClient, tuple[str, ...]]:
        with self._lock:  # re-entrant: pool() and client() take it too
            pool = self.pool(alias)
            client = cast(ScopeClient, self.client(alias))
            kit = (pool, client, self._aliases_of(pool.config))
            self._scope_kits[alias] = kit
        return kit

    def warm(self, alias: str | None = None) -> dict[str, int]:
        """Open ``min_idle`` connections in each pool (one alias, or all). Returns the
        number opened per pool name.

        Raises:
            redis.ConnectionError: the server could not be reached.
        """
        opened: dict[str, int] = {}
        for config in self._selected(alias):
            pool = self.pool(self._first_alias(config))
            opened[pool.name] = pool.warm()
        return opened

    # -- async ----------------------------------------------------------------------------

    def async_pool(self, alias: str = "default") -> AsyncFerritePool:
        """The async pool of ``alias`` for the running event loop (one per loop: a pool is
        never used from two loops)."""
        config = self.config(alias)
        loop = _running_loop("async_pool")
        with self._lock:
            entry = self._loop_entry(loop)
            pool = entry.pools.get(config)
            if pool is None:
                pool = AsyncFerritePool(
                    config, name=alias, client_name=self.client_name, breaker=self.breaker(config)
                )
                entry.pools[config] = pool
            return pool

    def async_client(
        self, alias: str = "default", *, auto_pipeline: bool | None = None
    ) -> redis.asyncio.Redis:
        """A ``redis.asyncio.Redis`` on the running loop's pool of ``alias``.

        Args:
            alias: the pool's alias.
            auto_pipeline: batch commands issued in the same loop tick (and while a batch
                is in flight) into one pipeline on one connection; default: the
                configuration's ``auto_pipeline`` option.
        """
        loop = _running_loop("async_client")
        known = self._loops.get(loop)
        client = known.by_alias.get((alias, auto_pipeline)) if known is not None else None
        if client is not None:
            return client
        with self._lock:  # re-entrant: async_pool() takes it too
            pool = self.async_pool(alias)
            batched = pool.config.auto_pipeline if auto_pipeline is None else auto_pipeline
            entry = self._loop_entry(loop)
            clients = entry.batched_clients if batched else entry.clients
            client = clients.get(pool.config)
            if client is None:
                client = _async_client(pool, batched=batched)
                clients[pool.config] = client
            entry.by_alias[(alias, auto_pipeline)] = client
            return client

    def arequest_scope(
        self, alias: str = "default", *, raise_on_error: bool = False, on_error: OnError = "flush"
    ) -> AsyncRequestScope:
        """The async twin of ``request_scope``: ``async with manager.arequest_scope(alias)
        as scope:`` (same arguments)."""
        pool = self.async_pool(alias)
        joined = _async_scope_for(pool)
        if joined is not None:
            return joined
        with self._lock:
            entry = self._loop_entry(asyncio.get_running_loop())
            client = entry.scope_clients.get(pool.config)
            if client is None:
                client = entry.scope_clients[pool.config] = AsyncScopeClient(connection_pool=pool)
            aliases = self._aliases_of(pool.config)
        return AsyncRequestScope(
            pool, client, aliases, raise_on_error=raise_on_error, on_error=on_error
        )

    async def awarm(self, alias: str | None = None) -> dict[str, int]:
        """The async twin of ``warm`` for the running loop's pools."""
        opened: dict[str, int] = {}
        for config in self._selected(alias):
            pool = self.async_pool(self._first_alias(config))
            opened[pool.name] = await pool.warm()
        return opened

    def _loop_entry(self, loop: asyncio.AbstractEventLoop) -> _LoopEntry:
        entry = self._loops.get(loop)
        if entry is None:
            self._forget_closed_loops()
            entry = _LoopEntry()
            entry.guard = _close_with_loop(entry)
            _start(entry.guard)
            self._loops[loop] = entry
        return entry

    def _forget_closed_loops(self) -> None:
        for loop in [loop for loop in self._loops if loop.is_closed()]:
            del self._loops[loop]

    def breaker(self, config: PoolConfig) -> CircuitBreaker:
        """The circuit breaker of the server ``config`` talks to, shared by every pool (sync
        and async, every alias) of this manager that talks to the same server. The first
        configuration seen for a server sets its breaker's threshold and reset timeout."""
        with self._lock:
            breaker = self._breakers.get(config.address)
            if breaker is None:
                breaker = breaker_for_config(config)
                self._breakers[config.address] = breaker
            return breaker

    def degraded(self, alias: str = "default") -> Degraded:
        """The degraded mode of ``alias``: ``.call(fn, ..., default=...)`` (and ``await
        .acall(...)``) return ``default`` instead of raising connection-level errors, which
        are counted in ``stats(alias)["suppressed_errors"]`` and logged once per
        ``health_check_interval`` (30 s when checks are off)."""
        config = self.config(alias)
        with self._lock:
            mode = self._degraded.get(alias)
            if mode is None:
                interval = config.health_check_interval or 30.0
                mode = self._degraded[alias] = Degraded(alias, config.address, interval)
            return mode

    # -- health ---------------------------------------------------------------------------

    def health(self, alias: str | None = None) -> dict[str, Any]:
        """A live health report: each pool's server is pinged now (at most
        ``health_timeout`` seconds, one ping per server at a time); a pool whose circuit
        breaker is open reports ``down`` at once.

        Returns ``{"status": "up"|"degraded"|"down", "pools": {alias: {...}}}``, each pool
        with its status, breaker state, latency, last error, counts and address (never a
        password).
        """
        names = [alias] if alias is not None else self.aliases()
        by_config = {pool.config: pool for pool in map(self.pool, names)}
        reports = dict(zip(by_config, pools_health(list(by_config.values())), strict=True))
        pools = {name: reports[self.config(name)] for name in names}
        statuses = [report["status"] for report in pools.values()]
        return {"status": overall_status(statuses), "pools": pools}

    async def ahealth(self, alias: str | None = None) -> dict[str, Any]:
        """The async twin of ``health``, using the running loop's pools."""
        names = [alias] if alias is not None else self.aliases()
        by_config = {pool.config: pool for pool in map(self.async_pool, names)}
        landed = await asyncio.gather(*map(apool_health, by_config.values()))
        reports = dict(zip(by_config, landed, strict=True))
        pools = {name: reports[self.config(name)] for name in names}
        statuses = [report["status"] for report in pools.values()]
        return {"status": overall_status(statuses), "pools": pools}

    def start_monitor(self) -> None:
        """Start the background monitor thread for the sync pools (idempotent). Every
        ``health_check_interval`` it pings each pool whose ``monitor`` option is on, then
        retires idle and expired connections and tops up ``min_idle``. ``close()`` stops
        it. The framework adapters call this at startup."""
        with self._lock:
            if self._monitor is not None and self._monitor.running:
                return
            self._monitor = Monitor(self._sync_pools)
            self._monitor.start()

    def start_async_monitor(self) -> None:
        """Start the monitor task of the running event loop (idempotent); it ends with
        ``aclose()`` or with the loop."""
        loop = _running_loop("start_async_monitor")
        with self._lock:
            entry = self._loop_entry(loop)
            if entry.monitor is None or entry.monitor.done():
                entry.monitor = loop.create_task(amonitor(self._async_pools))

    def _sync_pools(self) -> list[FerritePool]:
        """One pool per configured configuration (made if needed): the monitor's charge.
        Listed under the lock, so that an alias ``forget`` removes is never half seen."""
        with self._lock:
            return list({id(pool): pool for pool in map(self.pool, sorted(self._configs))}.values())

    def _async_pools(self) -> list[AsyncFerritePool]:
        """The async twin of ``_sync_pools`` for the running loop, also listed under the
        lock: an alias another thread forgets meanwhile must not fail the monitor task."""
        with self._lock:
            aliases = sorted(self._configs)
            return list({id(pool): pool for pool in map(self.async_pool, aliases)}.values())

    # -- reporting ------------------------------------------------------------------------

    def stats(self, alias: str | None = None) -> dict[str, Any]:
        """Plain-dict stats: for one alias ``{"alias", "url", "shared_with", "sync",
        "async"}``; without an alias, that dict for every alias."""
        if alias is None:
            return {name: self.stats(name) for name in self.aliases()}
        config = self.config(alias)
        with self._lock:
            pool = self._pools.get(config)
            async_pools = [
                entry.pools[config]
                for loop, entry in self._loops.items()
                if config in entry.pools and not loop.is_closed()
            ]
            shared_with = [name for name in self._aliases_of(config) if name != alias]
            degraded = self._degraded.get(alias)
        return {
            "alias": alias,
            "url": config.redacted_url,
            "shared_with": shared_with,
            "suppressed_errors": degraded.suppressed if degraded is not None else 0,
            "sync": pool.stats() if pool is not None else None,
            "async": [async_pool.stats() for async_pool in async_pools],
        }

    # -- closing --------------------------------------------------------------------------

    def close(self) -> None:
        """Close every connection of every pool: sync pools here, async pools on their
        loops (waiting up to 5 s each; from inside a running loop use ``aclose``), and stop
        the monitor. Idempotent. Pools stay registered and reopen connections if used
        again, so a client obtained earlier never escapes a later ``close()``."""
        self._close_pools(skip=None)

    async def aclose(self) -> None:
        """Close the running loop's async pools (awaited) and everything ``close`` closes."""
        loop = asyncio.get_running_loop()
        with self._lock:
            entry = self._loops.get(loop)
        if entry is not None:
            await entry.aclose()
        self._close_pools(skip=loop)

    async def aclose_loop(self) -> None:
        """Close only the running loop's async pools (awaited) and stop its monitor task:
        the sync pools, the sync monitor thread and other loops' pools are left alone. For
        an adapter whose app served on this loop and has stopped; the pools stay registered
        and reopen connections if used again, and ``start_async_monitor`` starts anew."""
        with self._lock:
            entry = self._loops.get(_running_loop("aclose_loop"))
        if entry is not None:
            await entry.aclose()

    async def aclose_unbound(self) -> list[str]:
        """Close the running loop's async pools that no alias uses any more (their aliases
        were forgotten): they leave the loop and their idle connections close (connections
        in use stay with their borrowers). The loop's other pools and its monitor task keep
        running. For an adapter whose app has stopped while other apps still serve on this
        loop. Returns the names of the pools closed."""
        loop = _running_loop("aclose_unbound")
        with self._lock:
            entry = self._loops.get(loop)
            if entry is None:
                return []
            bound = set(self._configs.values())
            retired = [config for config in entry.pools if config not in bound]
            pools = [entry.pools.pop(config) for config in retired]
            for config in retired:
                entry.clients.pop(config, None)
                entry.batched_clients.pop(config, None)
                entry.scope_clients.pop(config, None)
            monitor = entry.monitor if pools else None
        if monitor is not None and not monitor.done():
            # A round that listed a pool before its alias left may be topping it up: stop
            # the task (a cancelled round gives back what it holds), then start it anew
            # unless aclose() or start_async_monitor() replaced it meanwhile.
            await _stop_task(monitor)
            with self._lock:
                if entry.monitor is monitor:
                    entry.monitor = loop.create_task(amonitor(self._async_pools))
        for pool in pools:
            await pool.disconnect(inuse_connections=False)
        return [pool.name for pool in pools]

    def _close_pools(self, skip: asyncio.AbstractEventLoop | None) -> None:
        with self._lock:
            pools = list(self._pools.values())
            loops = [(loop, entry) for loop, entry in self._loops.items() if loop is not skip]
            monitor, self._monitor = self._monitor, None
        if monitor is not None:
            monitor.stop()
        for pool in pools:
            pool.disconnect()
        for loop, entry in loops:
            try:
                _close_on_loop(loop, entry)
            except Exception as error:  # one stuck loop must not keep the others open
                logger.warning("Could not close the pools of event loop %r: %s", loop, error)

    def forget(self, alias: str) -> bool:
        """Unbind ``alias`` (an unknown alias is ignored). When no other alias shares its
        configuration, its sync pool leaves the manager too: the monitor no longer pings or
        tops it up, and its idle connections are closed (connections in use stay with their
        borrowers). Clients obtained earlier keep working, unmaintained. For adapters whose
        app is gone. Returns whether a pool was retired."""
        with self._lock:
            config = self._configs.pop(alias, None)
            self._aliases_changed()
            self._degraded.pop(alias, None)
            pool = None
            if config is not None and not self._aliases_of(config):
                pool = self._pools.pop(config, None)
                self._clients.pop(config, None)
            monitor = self._monitor
        if pool is None:
            return False
        # A round that listed the pool before it left may be topping it up: let that round
        # end before closing the connections (later rounds no longer list the pool). The
        # monitor keeps running: stopping and restarting it here raced with close(),
        # start_monitor() and other forget() calls.
        if monitor is not None:
            monitor.wait_round()
        pool.disconnect(inuse_connections=False)
        return True

    def _selected(self, alias: str | None) -> list[PoolConfig]:
        if alias is not None:
            return [self.config(alias)]
        with self._lock:
            return list(dict.fromkeys(self._configs.values()))

    def _first_alias(self, config: PoolConfig) -> str:
        with self._lock:
            return self._aliases_of(config)[0]

    def _after_fork_in_child(self) -> None:
        # The parent's pools (sync ones reset themselves on first use) and the parent's
        # event loops do not exist for the child: keep their objects alive, untouched.
        self._lock = threading.RLock()
        self._inherited.extend(self._loops.values())
        self._loops = weakref.WeakKeyDictionary()
        self._monitor = None  # its thread does not exist in the child

    def __repr__(self) -> str:
        return f"<PoolManager aliases={self.aliases()} pools={len(self._pools)}>"


def _async_client(pool: AsyncFerritePool, *, batched: bool) -> redis.asyncio.Redis:
    if not batched:
        return AsyncScopeClient(connection_pool=pool)
    client = AutoPipelineClient(connection_pool=pool)
    client.pipeliner = AutoPipeliner(pool, client)
    return client


def _running_loop(method: str) -> asyncio.AbstractEventLoop:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        raise FerriteError(
            f"PoolManager.{method}() must be called from a running event loop (inside an "
            "async function); use pool()/client() from sync code."
        ) from None


def _close_on_loop(loop: asyncio.AbstractEventLoop, entry: _LoopEntry) -> None:
    if loop.is_closed() or not entry.pools:
        return
    try:
        current: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        current = None
    if current is loop:
        loop.create_task(entry.aclose())  # cannot block the loop we run on
    elif loop.is_running():
        future = asyncio.run_coroutine_threadsafe(entry.aclose(), loop)
        future.result(timeout=_LOOP_CLOSE_TIMEOUT)
    elif current is None:
        loop.run_until_complete(entry.aclose())
    # else: another loop runs in this thread, so this one cannot be driven from here; its
    # own shutdown (shutdown_asyncgens) closes its pools.


_managers: weakref.WeakSet[PoolManager] = weakref.WeakSet()


class _Default:
    manager: PoolManager | None = None
    lock = threading.Lock()


def get_manager() -> PoolManager:
    """The process-wide manager every adapter uses."""
    if _Default.manager is None:
        with _Default.lock:
            if _Default.manager is None:
                _Default.manager = PoolManager()
    return _Default.manager


def _reset_after_fork() -> None:
    _Default.lock = threading.Lock()
    for manager in list(_managers):
        manager._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)
