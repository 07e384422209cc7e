"""``Ferrite``: the Flask extension. One instance serves any number of apps (app factories,
several apps in one process); each app's state lives in ``app.extensions["ferrite"]``,
keyed by the instance's config prefix, never on the instance."""

from __future__ import annotations

import atexit
import logging
import os
import threading
import weakref
from dataclasses import dataclass, field
from typing import Any

import redis
import redis.asyncio
from flask import Flask, current_app, has_app_context

from ferrite_integrations import ConfigError, PoolConfig, get_manager
from ferrite_integrations.flask._config import DEFAULT_POOL, read_settings
from ferrite_integrations.flask._scopes import (
    close_scopes,
    flush_open_scopes,
    open_scope,
    shared_scope,
)
from ferrite_integrations.flask.health import health_report, make_health_view

__all__ = ["Ferrite", "FerriteState"]

EXTENSION_KEY = "ferrite"
ALIAS_PREFIX = "flask"
logger = logging.getLogger("ferrite_integrations.flask")


@dataclass
class FerriteState:
    """One extension's state in one app: ``app.extensions["ferrite"][config_prefix]``.

    Attributes:
        extension: the ``Ferrite`` instance this state belongs to.
        config_prefix: the prefix of its config keys.
        aliases: pool name -> alias of the pool in the process's ``PoolManager``.
        configs: pool name -> the validated configuration.
        health_url: the health endpoint's URL rule, or ``None``.
    """

    extension: Ferrite
    config_prefix: str
    aliases: dict[str, str]
    configs: dict[str, PoolConfig]
    health_url: str | None
    _clients: dict[str, redis.Redis] = field(default_factory=dict)
    _prepared_pid: int = 0
    _retired: bool = False
    _lock: threading.RLock = field(default_factory=threading.RLock)

    def client(self, name: str) -> redis.Redis:
        alias = self.alias(name)
        client = self._clients.get(name)
        if client is None:
            client = self._clients[name] = get_manager().client(alias)
        joined = shared_scope(alias)
        if joined is not None and joined.busy:
            # A copy of the request (another thread) reads: the writes the request queued
            # before this read go first, so it sees them.
            joined.flush()
        return client

    def alias(self, name: str) -> str:
        if self._retired:
            self._rebind()
        alias = self.aliases.get(name)
        if alias is None:
            raise KeyError(
                f"No Ferrite pool named {name!r}. Pools: {sorted(self.aliases)}; define "
                f"more in {self.config_prefix}_POOLS."
            )
        return alias

    def bound(self) -> dict[str, str]:
        """Pool name -> alias, bound again first if the pools were closed."""
        if self._retired:
            self._rebind()
        return dict(self.aliases)

    def prepare(self) -> None:
        """Once per process (after a fork, again in the child): start the background
        monitor and pre-warm the pools (``min_idle`` connections) in a thread of its own,
        so that no request waits for a server that is slow or down (a failure is logged;
        the monitor keeps trying)."""
        if self._retired:
            self._rebind()
        if self._prepared_pid == os.getpid():
            return
        with self._lock:
            if self._prepared_pid == os.getpid():
                return
            self._prepared_pid = os.getpid()
        if any(config.monitor for config in self.configs.values()):
            get_manager().start_monitor()
        warming = [(name, alias) for name, alias in self.aliases.items() if self._min_idle(name)]
        if warming:
            threading.Thread(
                target=_warm, args=(self, warming), name="ferrite-warm", daemon=True
            ).start()

    def _min_idle(self, name: str) -> int:
        return self.configs[name].min_idle

    def _retire(self) -> None:
        with self._lock:
            self._retired = True
            self._clients = {}

    def _rebind(self) -> None:
        """Used again after ``close``: bind the pools again (the monitor, the warming)."""
        manager = get_manager()
        with self._lock:
            if not self._retired:
                return
            self.aliases = {
                name: manager.alias_for(config, ALIAS_PREFIX)
                for name, config in self.configs.items()
            }
            self._prepared_pid = 0
            self._retired = False


def _warm(state: FerriteState, pools: list[tuple[str, str]]) -> None:
    manager = get_manager()
    for name, alias in pools:
        try:
            pool = manager.pool(alias)
            pool.warm()
        except Exception as error:
            logger.warning("Could not pre-warm Ferrite pool %r: %s", name, error)
            continue
        # Closed while warming: the pool has left the manager, do not leave its
        # connections open. (Closed after this check: the close disconnects them.)
        if state._retired:
            pool.disconnect(inuse_connections=False)


class Ferrite:
    """The Ferrite extension for Flask.

    ``ferrite = Ferrite()`` at module level, ``ferrite.init_app(app)`` in the app
    factory (or ``Ferrite(app)`` for a single app); then ``ferrite.client``,
    ``ferrite.pipeline`` and ``ferrite.async_client`` in views.

    Args:
        app: an app to register on at once (``init_app(app)``).
        config_prefix: the prefix of the config keys this instance reads (``<PREFIX>_URL``,
            ``<PREFIX>_MAX_CONNECTIONS``, ...); a second instance with another prefix
            works beside the first on the same app.
    """

    def __init__(self, app: Flask | None = None, *, config_prefix: str = "FERRITE") -> None:
        if not isinstance(config_prefix, str) or not config_prefix.isidentifier():
            raise ConfigError(
                f"config_prefix must be an identifier such as 'FERRITE' or 'CACHE_FERRITE'; "
                f"got {config_prefix!r}.",
                option="config_prefix",
            )
        self.config_prefix = config_prefix
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Register on ``app``: read and validate its config (no connection is opened
        here, so it is safe before a fork), add the teardown that sends the request
        pipeline, the first-request pre-warming and, with ``<PREFIX>_HEALTH_URL``, the
        health endpoint.

        Raises:
            ConfigError: a config key is wrong (named in the message), or this prefix is
                already registered on ``app``.
        """
        registered: dict[str, FerriteState] = app.extensions.setdefault(EXTENSION_KEY, {})
        existing = registered.get(self.config_prefix)
        if existing is not None:
            same = "this Ferrite instance" if existing.extension is self else "another instance"
            raise ConfigError(
                f"Ferrite with config_prefix {self.config_prefix!r} is already registered on "
                f"app {app.name!r} (by {same}). Call init_app once per app; for a second set "
                "of pools use FERRITE_POOLS, or another instance with another config_prefix.",
                option="config_prefix",
            )
        settings = read_settings(app.config, self.config_prefix)
        manager = get_manager()
        aliases = {
            name: manager.alias_for(config, ALIAS_PREFIX) for name, config in settings.pools.items()
        }
        state = FerriteState(self, self.config_prefix, aliases, settings.pools, settings.health_url)
        registered[self.config_prefix] = state
        app.before_request(state.prepare)
        app.teardown_request(close_scopes)
        app.teardown_appcontext(close_scopes)
        if settings.health_url is not None:
            endpoint = f"{self.config_prefix.lower()}_health"
            app.add_url_rule(settings.health_url, endpoint, make_health_view(state))
        _track(app, state)

    # -- per-app access -----------------------------------------------------------------

    def state(self, app: Flask | None = None) -> FerriteState:
        """This extension's state in ``app`` (default: the current app).

        Raises:
            RuntimeError: no app context, or this instance is not registered on the app.
        """
        if app is None:
            if not has_app_context():
                raise RuntimeError(
                    "Ferrite needs an application context: use it in a view, a CLI command, "
                    "or inside `with app.app_context():`."
                )
            app = current_app._get_current_object()  # type: ignore[attr-defined]
        state: FerriteState | None = app.extensions.get(EXTENSION_KEY, {}).get(self.config_prefix)
        if state is None or state.extension is not self:
            raise RuntimeError(
                f"This Ferrite instance (config_prefix {self.config_prefix!r}) is not "
                f"registered on app {app.name!r}. Call ferrite.init_app(app) in the app "
                "factory, and use the same Ferrite instance in views."
            )
        return state

    @property
    def client(self) -> redis.Redis:
        """The ``redis.Redis`` on the current app's default pool (shared, thread-safe).
        Inside a request that used ``pipeline``, it first sends what is queued, in the
        same round trip, so reads see the request's writes."""
        return self.state().client(DEFAULT_POOL)

    def get_client(self, name: str = DEFAULT_POOL) -> redis.Redis:
        """The ``redis.Redis`` on the current app's pool ``name`` (``"default"`` or a name
        from ``<PREFIX>_POOLS``).

        Raises:
            KeyError: no pool has that name.
        """
        return self.state().client(name)

    @property
    def async_client(self) -> redis.asyncio.Redis:
        """The ``redis.asyncio.Redis`` for async views: the running event loop's pool of
        the default pool's configuration (Flask runs each async view on a loop of its own,
        so its connections last as long as the view)."""
        return self.get_async_client(DEFAULT_POOL)

    def get_async_client(self, name: str = DEFAULT_POOL) -> redis.asyncio.Redis:
        """The async client of pool ``name``; see ``async_client``."""
        return get_manager().async_client(self.state().alias(name))

    @property
    def pipeline(self) -> Any:
        """The current request's deferred commands on the default pool: redis-py's command
        methods (``ferrite.pipeline.set(...)``), each returning a ``Handle``. The request
        scope opens on first use and its queue is sent with the next read through
        ``client`` or at the end of the request, even when the view raised."""
        return self.get_pipeline(DEFAULT_POOL)

    def get_pipeline(self, name: str = DEFAULT_POOL) -> Any:
        """The deferred commands of pool ``name`` for the current request; see
        ``pipeline``."""
        return open_scope(self.state().alias(name)).deferred

    def pool_names(self, app: Flask | None = None) -> list[str]:
        """The pool names of ``app`` (default: the current app)."""
        return list(self.state(app).aliases)

    def warm(self, app: Flask | None = None) -> dict[str, int]:
        """Open ``min_idle`` connections in each pool of ``app`` (default: the current
        app) now; returns how many were opened per pool name.

        Raises:
            redis.ConnectionError: the server could not be reached.
        """
        state = self.state(app)
        manager = get_manager()
        return {name: sum(manager.warm(alias).values()) for name, alias in state.bound().items()}

    def health(self, app: Flask | None = None) -> dict[str, Any]:
        """A live health report of the pools of ``app`` (default: the current app):
        ``{"status": "up"|"degraded"|"down", "pools": {name: {...}}}``."""
        return health_report(self.state(app))

    def close(self, app: Flask | None = None) -> None:
        """Close the idle connections of the pools of ``app`` (default: the current app)
        that no other live app uses (connections in use are left to their borrowers). The
        pools reopen connections if used again. Runs by itself when the app is garbage
        collected, and for every app at process exit."""
        _release(self.state(app))

    def __repr__(self) -> str:
        return f"<Ferrite config_prefix={self.config_prefix!r}>"


# -- closing ----------------------------------------------------------------------------
# _live holds the states of apps still alive; an app's finalizer releases its pools, and
# the exit hook releases every pool still held. The lock guards _live.

_live: dict[int, FerriteState] = {}
_live_lock = threading.RLock()  # re-entrant: app finalizers run wherever gc does
_exit_hook = threading.Event()


def _track(app: Flask, state: FerriteState) -> None:
    with _live_lock:
        _live[id(state)] = state
    finalizer = weakref.finalize(app, _forget_soon, id(state))
    finalizer.atexit = False  # at exit, _close_all closes everything
    if not _exit_hook.is_set():
        _exit_hook.set()
        atexit.register(_close_all)


def _forget_soon(key: int) -> None:
    # A finalizer runs in whichever thread the garbage collector interrupted, possibly the
    # monitor's own in the middle of a round: release the pools from a thread of our own.
    threading.Thread(target=_forget, args=(key,), name="ferrite-release", daemon=True).start()


def _forget(key: int) -> None:
    with _live_lock:
        state = _live.pop(key, None)
    if state is not None:
        _release(state)


def _release(state: FerriteState) -> None:
    """Retire the pools of ``state`` that no other live, open app uses: the manager forgets
    their aliases (so the monitor stops reopening them) and closes their idle connections."""
    with _live_lock:
        still_used = {
            alias
            for other in _live.values()
            if other is not state and not other._retired
            for alias in other.aliases.values()
        }
        aliases = set(state.aliases.values())
        state._retire()
    manager = get_manager()
    for alias in aliases - still_used:
        manager.forget(alias)


def _close_all() -> None:
    flush_open_scopes()
    with _live_lock:
        states = [state for state in _live.values() if not state._retired]
    manager = get_manager()
    for state in states:
        for alias in state.aliases.values():
            try:
                manager.pool(alias).disconnect()
            except Exception as error:  # at exit: never let one pool stop the others
                logger.debug("Closing Ferrite pool %r at exit failed: %s", alias, error)
