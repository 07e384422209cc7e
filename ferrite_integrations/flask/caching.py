"""``FerriteCache``: a Flask-Caching backend on the shared pool manager.

``CACHE_TYPE = "ferrite_integrations.flask.FerriteCache"``. A facade: each method makes the
key, turns the timeout into seconds and delegates to the shared pool, with Flask-Caching's
documented semantics (timeouts, ``add``, ``inc``/``dec``, ``get_many``/``set_many``/
``delete_many``, ``has``, ``clear``). Needs ``pip install ferrite-integrations[flask-caching]``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

import redis
from flask import Flask
from flask_caching.backends.base import BaseCache

from ferrite_integrations import (
    ConfigError,
    PoolConfig,
    PoolOptions,
    ValueCodec,
    current_scope,
    get_manager,
)
from ferrite_integrations.flask._config import (
    check_flag,
    coerce_text,
    has_settings,
    read_settings,
)
from ferrite_integrations.flask.extension import ALIAS_PREFIX, EXTENSION_KEY

__all__ = ["FerriteCache"]

_BACKEND_OPTIONS = frozenset(
    {
        "default_timeout",
        "ignore_delete_many_errors",
        "serializer",
        "compressor",
        "compress_min_size",
        "ignore_errors",
    }
)
# Flask-Caching's RedisCache keys, honoured so that switching CACHE_TYPE is enough.
_REDIS_KEYS = {
    "CACHE_REDIS_HOST": "host",
    "CACHE_REDIS_PORT": "port",
    "CACHE_REDIS_DB": "db",
    "CACHE_REDIS_PASSWORD": "password",
}
_EXPIRED = -1
_SCAN_BATCH = 500
_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")


class FerriteCache(BaseCache):
    """A Flask-Caching cache on a shared Ferrite pool. Flask-Caching builds it through
    ``factory`` from ``CACHE_*`` config keys (see docs/flask.md); building it directly
    needs a pool alias of the process's ``PoolManager``.

    Args:
        alias: the pool's alias in ``get_manager()``.
        default_timeout: seconds for ``timeout=None``; 0 never expires.
        key_prefix: put before every key (a string, or a callable returning one).
        ignore_delete_many_errors: ``delete_many`` does not raise when a key survives.
        serializer: ``"pickle"`` (default), ``"json"``, ``"msgpack"`` or a dotted path.
        compressor: ``None`` (default), ``"zlib"``, ``"zstd"``, ``"lz4"`` or a dotted path.
        compress_min_size: serialized values smaller than this are stored uncompressed.
        ignore_errors: with the server unreachable, reads miss and writes return
            ``False`` (logged once per interval and counted) instead of raising.
    """

    def __init__(
        self,
        alias: str,
        *,
        default_timeout: int | dt.timedelta = 300,
        key_prefix: str | Callable[[], str] | None = None,
        ignore_delete_many_errors: bool = False,
        serializer: str = "pickle",
        compressor: str | None = None,
        compress_min_size: int = 256,
        ignore_errors: bool = False,
    ) -> None:
        super().__init__(
            default_timeout=_timeout_seconds(default_timeout, 300),
            ignore_delete_many_errors=ignore_delete_many_errors,
        )
        self.alias = alias
        self.key_prefix = key_prefix or ""
        self.ignore_errors = check_flag(
            "ignore_errors", ignore_errors, "server errors become cache misses"
        )
        self._codec = ValueCodec(serializer, compressor, compress_min_size)
        self._manager = get_manager()
        if self._manager.config(alias).decode_responses:
            raise ConfigError(
                f"FerriteCache stores serialized bytes: pool {alias!r} has "
                "decode_responses=True; give the cache a pool without it.",
                option="decode_responses",
            )
        self._client = self._manager.client(alias)
        self._degraded = self._manager.degraded(alias)

    @classmethod
    def factory(
        cls, app: Flask, config: dict[str, Any], args: list[Any], kwargs: dict[str, Any]
    ) -> FerriteCache:
        """Flask-Caching's constructor hook: ``config`` holds the ``CACHE_*`` keys and
        ``kwargs`` the default timeout plus ``CACHE_OPTIONS``.

        Raises:
            ConfigError: naming the config key that is wrong.
        """
        if args:
            raise ConfigError(
                "CACHE_ARGS is not used by FerriteCache: put options in CACHE_OPTIONS.",
                option="CACHE_ARGS",
            )
        options = dict(kwargs)
        backend = {name: options.pop(name) for name in list(options) if name in _BACKEND_OPTIONS}
        alias = _pool_alias(app, config, options)
        _check_bytes(alias, options)
        try:
            return cls(alias, key_prefix=config.get("CACHE_KEY_PREFIX"), **backend)
        except ConfigError as error:
            raise ConfigError(f"CACHE_OPTIONS: {error}", option="CACHE_OPTIONS") from None

    # -- plumbing -------------------------------------------------------------------------

    def get_client(self) -> redis.Redis:
        """The ``redis.Redis`` on this cache's shared pool."""
        return self._client

    def _key(self, key: str) -> str:
        prefix = self.key_prefix if isinstance(self.key_prefix, str) else self.key_prefix()
        return f"{prefix}{key}"

    def _seconds(self, timeout: int | float | dt.timedelta | None) -> int | None:
        """``None`` never expires; ``_EXPIRED`` is already expired; else seconds."""
        seconds = _timeout_seconds(timeout, self.default_timeout)
        if seconds == 0:
            return None
        return _EXPIRED if seconds < 0 else seconds

    def _run(self, call: Callable[[], Any], default: Any) -> Any:
        if not self.ignore_errors:
            return call()
        return self._degraded.call(call, default=default)

    def _loads(self, raw: Any) -> Any:
        return None if raw is None else self._codec.loads(raw)

    # -- Flask-Caching's API --------------------------------------------------------------

    def get(self, key: str) -> Any:
        """The value of ``key``, or ``None``."""
        name = self._key(key)
        return self._run(lambda: self._loads(self._client.get(name)), None)

    def get_many(self, *keys: str) -> list[Any]:
        """The values of ``keys`` in order (``None`` for misses), in one round trip."""
        if not keys:
            return []
        names = [self._key(key) for key in keys]
        raw = self._run(lambda: self._client.mget(names), [None] * len(names))
        return [self._loads(value) for value in raw]

    def has(self, key: str) -> bool:
        """Whether ``key`` exists (without loading its value)."""
        name = self._key(key)
        return bool(self._run(lambda: self._client.exists(name), False))

    def set(self, key: str, value: Any, timeout: int | float | dt.timedelta | None = None) -> bool:
        """Store ``value``; ``timeout`` in seconds or a ``timedelta`` (``None``: the default,
        0: never expires). Inside a request that opened ``ferrite.pipeline`` on the same pool
        the write is deferred (sent with the next read, or at the end of the request)."""
        name, data, seconds = self._key(key), self._codec.dumps(value), self._seconds(timeout)
        scope = current_scope(self.alias)
        if scope is not None:
            _queue_set(scope.deferred, name, data, seconds)
            return True
        if seconds == _EXPIRED:
            return bool(self._run(lambda: self._client.delete(name) >= 0, False))
        return bool(self._run(lambda: self._client.set(name, data, ex=seconds), False))

    def add(self, key: str, value: Any, timeout: int | float | dt.timedelta | None = None) -> bool:
        """Like ``set``, but only when ``key`` does not exist; ``False`` if it does."""
        name, data, seconds = self._key(key), self._codec.dumps(value), self._seconds(timeout)
        client = self._client

        def add() -> bool:
            if seconds == _EXPIRED:  # added, and expired at once
                added = bool(client.set(name, data, nx=True))
                if added:
                    client.delete(name)
                return added
            return bool(client.set(name, data, ex=seconds, nx=True))

        return bool(self._run(add, False))

    def set_many(
        self, mapping: Mapping[str, Any], timeout: int | float | dt.timedelta | None = None
    ) -> list[Any]:
        """Store every item, in one round trip; returns the keys that were set."""
        if not mapping:
            return []
        seconds = self._seconds(timeout)
        items = [(key, self._key(key), self._codec.dumps(value)) for key, value in mapping.items()]
        scope = current_scope(self.alias)
        if scope is not None:
            for _, name, data in items:
                _queue_set(scope.deferred, name, data, seconds)
            return list(mapping)

        def set_many() -> list[Any]:
            pipe = self._client.pipeline(transaction=False)
            for _, name, data in items:
                _queue_set(pipe, name, data, seconds)
            replies = pipe.execute()
            return [key for (key, _, _), ok in zip(items, replies, strict=True) if ok]

        return list(self._run(set_many, []))

    def delete(self, key: str) -> bool:
        """Delete ``key``; whether it existed."""
        name = self._key(key)
        return bool(self._run(lambda: self._client.delete(name), False))

    def delete_many(self, *keys: str) -> list[Any]:
        """Delete ``keys`` in one round trip; returns those that are gone.

        Raises:
            RuntimeError: a key still exists afterwards and ``ignore_delete_many_errors``
                is off.
        """
        if not keys:
            return []
        names = [self._key(key) for key in keys]

        def delete_many() -> list[Any]:
            pipe = self._client.pipeline(transaction=False)
            pipe.delete(*names)
            for name in names:
                pipe.exists(name)
            left = pipe.execute()[1:]
            return [key for key, exists in zip(keys, left, strict=True) if not exists]

        deleted: list[Any] = self._run(delete_many, [])
        failed = [key for key in keys if key not in deleted]
        if failed and not self.ignore_delete_many_errors:
            raise RuntimeError(f"Failed to delete keys: {failed}")
        return deleted

    def unlink(self, *keys: str) -> int:
        """Delete ``keys`` without waiting for the server to free their memory (UNLINK);
        returns how many existed."""
        if not keys:
            return 0
        names = [self._key(key) for key in keys]
        return int(self._run(lambda: self._client.unlink(*names), 0))

    def clear(self) -> bool:
        """With a key prefix, delete this cache's keys (``SCAN`` + ``UNLINK``); without
        one, the whole database (``FLUSHDB``)."""
        prefix = self._key("")
        if not prefix:
            return bool(self._run(self._client.flushdb, False))
        pattern = _GLOB_SPECIAL.sub(r"\\\1", prefix) + "*"
        return bool(self._run(lambda: _delete_matching(self._client, pattern), False))

    def inc(self, key: str, delta: int = 1) -> int | None:
        """Add ``delta`` atomically (a missing key starts at 0); the new value."""
        name = self._key(key)
        result = self._run(lambda: self._client.incrby(name, delta), None)
        return None if result is None else int(result)

    def dec(self, key: str, delta: int = 1) -> int | None:
        """Subtract ``delta`` atomically (a missing key starts at 0); the new value."""
        return self.inc(key, -delta)

    def __repr__(self) -> str:
        return f"<FerriteCache pool={self.alias!r} prefix={self._key('')!r}>"


def _timeout_seconds(timeout: int | float | dt.timedelta | None, default: int) -> int:
    if timeout is None:
        return default
    if isinstance(timeout, dt.timedelta):
        timeout = timeout.total_seconds()
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise TypeError(
            f"timeout must be a number of seconds or a datetime.timedelta, not "
            f"{type(timeout).__name__}"
        )
    # Rounded away from zero: a part of a second still expires, and -0.5 (already expired)
    # must not become 0 (never expires).
    return math.ceil(timeout) if timeout >= 0 else math.floor(timeout)


def _queue_set(queue: Any, name: str, data: Any, seconds: int | None) -> None:
    if seconds == _EXPIRED:
        queue.delete(name)
    else:
        queue.set(name, data, ex=seconds)


def _delete_matching(client: redis.Redis, pattern: str) -> bool:
    batch: list[Any] = []
    for key in client.scan_iter(match=pattern, count=_SCAN_BATCH):
        batch.append(key)
        if len(batch) >= _SCAN_BATCH:
            client.unlink(*batch)
            batch = []
    if batch:
        client.unlink(*batch)
    return True


# -- which pool -------------------------------------------------------------------------


def _pool_alias(app: Flask, config: Mapping[str, Any], options: dict[str, Any]) -> str:
    """The pool alias: ``CACHE_FERRITE_POOL`` (a pool of the ``Ferrite`` extension), else
    ``CACHE_FERRITE_URL`` or ``CACHE_REDIS_URL`` with the ``CACHE_REDIS_*`` keys and
    ``CACHE_OPTIONS``, else the app's own server (see ``_app_default``) with those keys and
    options applied on top. Equal configurations share one pool."""
    pool = config.get("CACHE_FERRITE_POOL")
    url = config.get("CACHE_FERRITE_URL") or config.get("CACHE_REDIS_URL")
    redis_options = coerce_text(
        {option: config[key] for key, option in _REDIS_KEYS.items() if config.get(key) is not None}
    )
    options = coerce_text(options)
    states = app.extensions.get(EXTENSION_KEY, {})
    if pool is not None:
        if url or options or redis_options:
            raise ConfigError(
                f"CACHE_FERRITE_POOL ({pool!r}) names a pool of the Ferrite extension; give "
                "either it or a URL and CACHE_OPTIONS pool options, not both.",
                option="CACHE_FERRITE_POOL",
            )
        return _extension_alias(states, pool)
    if url is not None and not isinstance(url, str):
        raise ConfigError(
            f"CACHE_FERRITE_URL must be a URL string; got {type(url).__name__}.",
            option="CACHE_FERRITE_URL",
        )
    if url is not None:
        built = _config(url, redis_options, options)
    else:
        built = _on_top(_app_default(app, states), redis_options, options)
    return get_manager().alias_for(built, ALIAS_PREFIX)


def _app_default(app: Flask, states: Mapping[str, Any]) -> PoolConfig:
    """The server of the app when the cache names none: the default pool of the ``Ferrite``
    extension; its ``FERRITE_*`` keys when the cache is set up before the extension; the
    only extension on the app, whatever its prefix; else ``PoolConfig.from_url(None)``
    (the ``FERRITE_URL`` environment variable, else localhost:6379)."""
    state = states.get("FERRITE")
    if state is not None:
        default: PoolConfig = state.configs["default"]
        return default
    if has_settings(app.config, "FERRITE"):
        return read_settings(app.config, "FERRITE").pools["default"]
    if len(states) == 1:
        only: PoolConfig = next(iter(states.values())).configs["default"]
        return only
    if states:
        raise ConfigError(
            f"The app has several Ferrite extensions ({', '.join(sorted(states))}) and none "
            "with the prefix FERRITE: say which server the cache uses with CACHE_FERRITE_URL.",
            option="CACHE_FERRITE_URL",
        )
    try:
        return PoolConfig.from_url(None)
    except ConfigError as error:
        raise ConfigError(f"CACHE_FERRITE_URL is unset, so: {error}", option="url") from None


def _extension_alias(states: Mapping[str, Any], name: Any) -> str:
    state = states.get("FERRITE")
    if state is None:
        raise ConfigError(
            "CACHE_FERRITE_POOL needs the Ferrite extension on the app: call "
            "ferrite.init_app(app) before cache.init_app(app).",
            option="CACHE_FERRITE_POOL",
        )
    if name not in state.aliases:
        raise ConfigError(
            f"CACHE_FERRITE_POOL: no Ferrite pool named {name!r}; pools: {sorted(state.aliases)}.",
            option="CACHE_FERRITE_POOL",
        )
    alias: str = state.aliases[name]
    return alias


def _config(url: str, redis_options: dict[str, Any], options: dict[str, Any]) -> PoolConfig:
    merged: dict[str, Any] = {**redis_options, **options}
    try:
        return PoolConfig.from_url(url, **_typed(merged))
    except ConfigError as error:
        raise _cache_error(error, redis_options, options, "CACHE_FERRITE_URL") from None


def _on_top(base: PoolConfig, redis_options: dict[str, Any], options: dict[str, Any]) -> PoolConfig:
    """``base`` with the cache's own keys applied: ``CACHE_REDIS_DB = 1`` alone is the app's
    server, database 1. A host or port of its own replaces a unix socket."""
    if not redis_options and not options:
        return base
    defaults = _defaults()
    values = {
        item.name: getattr(base, item.name)
        for item in dataclasses.fields(base)
        if getattr(base, item.name) != getattr(defaults, item.name)
    }
    if "host" in redis_options or "port" in redis_options:
        values.pop("unix_socket_path", None)
    try:
        return PoolConfig(**_typed({**values, **redis_options, **options}))
    except ConfigError as error:
        raise _cache_error(error, redis_options, options, "CACHE_OPTIONS") from None


def _cache_error(
    error: ConfigError, redis_options: dict[str, Any], options: dict[str, Any], fallback: str
) -> ConfigError:
    keys = {option: key for key, option in _REDIS_KEYS.items()}
    if error.option in options:
        key = f"CACHE_OPTIONS[{error.option!r}]"
    elif error.option in redis_options:
        key = keys[error.option or ""]
    else:
        key = fallback
    return ConfigError(f"{key}: {error}", option=key)


@functools.cache
def _defaults() -> PoolConfig:
    return PoolConfig()


def _check_bytes(alias: str, options: Mapping[str, Any]) -> None:
    """A cache stores serialized bytes: a pool that decodes replies to text breaks it."""
    config = get_manager().config(alias)
    if not config.decode_responses:
        return
    if options.get("decode_responses"):
        key = "CACHE_OPTIONS['decode_responses']"
    else:
        key = "FERRITE_DECODE_RESPONSES (or ?decode_responses= in the URL)"
    raise ConfigError(
        f"{key}: FerriteCache stores serialized bytes and needs a pool with "
        f"decode_responses=False, but the pool {config.redacted_url} decodes replies to "
        "text. Remove the option, or give the cache a pool of its own with "
        "CACHE_FERRITE_URL.",
        option="decode_responses",
    )


def _typed(options: dict[str, Any]) -> PoolOptions:
    return options  # type: ignore[return-value]  # checked by PoolConfig itself
