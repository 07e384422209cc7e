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
from ferrite_integrations.flask._scopes import close_scopes, open_scope
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
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def client(self, name: str) -> redis.Redis:
        client = self._clients.get(name)
        if client is None:
            client = self._clients[name] = get_manager().client(self.alias(name))
        return client

    def alias(self, name: str) -> str:
        alias = self.aliases.get(name)
        if alias is None:
            raise KeyError(
                f"No Ferrite pool named {name!r}. Pools: {sorted(self.aliases)}; define "
                f"more in {self.config_prefix}_POOLS."
            )
        return alias

    def prepare(self) -> None:
        """Once per process (after a fork, again in the child): pre-warm the pools
        (``min_idle`` connections) and start the background monitor. A server that is
        down is logged, not raised: the pools connect when it comes back."""
        if self._prepared_pid == os.getpid():
            return
        with self._lock:
            if self._prepared_pid == os.getpid():
                return
            self._prepared_pid = os.getpid()
        manager = get_manager()
        for name, alias in self.aliases.items():
            try:
                manager.warm(alias)
            except Exception as error:
                logger.warning("Could not pre-warm Ferrite pool %r: %s", name, error)
        if any(config.monitor for config in self.configs.values()):
            manager.start_monitor()


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
        return {name: sum(manager.warm(alias).values()) for name, alias in state.aliases.items()}

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
_live_lock = threading.Lock()
_exit_hook = threading.Event()


def _track(app: Flask, state: FerriteState) -> None:
    with _live_lock:
        _live[id(state)] = state
    weakref.finalize(app, _forget, id(state))
    if not _exit_hook.is_set():
        _exit_hook.set()
        atexit.register(_close_all)


def _forget(key: int) -> None:
    with _live_lock:
        state = _live.pop(key, None)
    if state is not None:
        _release(state)


def _release(state: FerriteState) -> None:
    with _live_lock:
        still_used = {
            config
            for other in _live.values()
            if other is not state
            for config in other.configs.values()
        }
    manager = get_manager()
    for alias, config in zip(state.aliases.values(), state.configs.values(), strict=True):
        if config not in still_used:
            manager.pool(alias).disconnect(inuse_connections=False)


def _close_all() -> None:
    with _live_lock:
        states = list(_live.values())
    manager = get_manager()
    for state in states:
        for alias in state.aliases.values():
            try:
                manager.pool(alias).disconnect()
            except Exception as error:  # at exit: never let one pool stop the others
                logger.debug("Closing Ferrite pool %r at exit failed: %s", alias, error)
