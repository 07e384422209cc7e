"""``FerriteCache``: a Django cache backend on the shared pool manager.

A facade: each method makes the key, turns the timeout into seconds, and delegates to the
core (pool, codec, degraded mode). Semantics follow Django's own ``RedisCache``, edge cases
included; sync methods use the shared sync pool, ``a*`` methods the running event loop's
async pool, with no thread hop.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from datetime import timedelta
from functools import partial
from typing import Any, Literal, TypeVar

import redis
from django.core.cache.backends.base import DEFAULT_TIMEOUT, BaseCache, default_key_func

from ferrite_integrations import (
    ConfigError,
    PoolConfig,
    ValueCodec,
    current_async_scope,
    current_scope,
    get_manager,
)

__all__ = ["FerriteCache"]

_BACKEND_OPTIONS = frozenset(
    {"serializer", "compressor", "compress_min_size", "ignore_exceptions", "clear", "pool"}
)
S = TypeVar("S")  # a sync or an async request scope
_CONFIGURED = frozenset({"_alias", "_codec", "_ignore_exceptions", "_clear"})
_SCAN_BATCH = 500
_MEMCACHE_MAX_KEY_LENGTH = 250


def _location(server: Any) -> str | None:
    if server in (None, ""):
        return None
    if isinstance(server, list | tuple):
        if len(server) != 1:
            raise ConfigError(
                "FerriteCache talks to one server: give LOCATION a single URL "
                f"(got {len(server)}).",
                option="LOCATION",
            )
        server = server[0]
    if not isinstance(server, str):
        raise ConfigError(
            f"LOCATION must be a URL string such as 'redis://127.0.0.1:6379/0'; got {server!r}.",
            option="LOCATION",
        )
    return server


def _flag(option: str, value: object, meaning: str) -> bool:
    """An on/off backend option: True or False only, as every bool pool option (``bool()``
    would take ``"false"`` or ``5`` for True)."""
    if not isinstance(value, bool):
        raise ConfigError(
            f"Option {option!r} must be True or False ({meaning}); got {value!r:.80} "
            f"({type(value).__name__}). Use True or False itself, not text or a number.",
            option=option,
        )
    return value


class FerriteCache(BaseCache):
    """``CACHES = {"default": {"BACKEND": "ferrite_integrations.django.FerriteCache",
    "LOCATION": "redis://...", "OPTIONS": {...}}}``.

    ``OPTIONS`` takes every pool option (``max_connections``, ``socket_timeout``, TLS, ...)
    and: ``serializer`` (``"pickle"``, ``"json"``, ``"msgpack"`` or a dotted path),
    ``compressor`` (``"zlib"``, ``"zstd"``, ``"lz4"``, a dotted path, or ``None``),
    ``compress_min_size`` (bytes, default 256), ``ignore_exceptions`` (server errors become
    misses; default ``False``), ``clear`` (``"flush"``: FLUSHDB, the default; ``"prefix"``:
    delete only this cache's keys) and ``pool`` (the alias of a pool configured elsewhere).
    """

    def __init__(self, server: Any, params: dict[str, Any]) -> None:
        # Django builds every cache in its own system checks (``manage.py check``,
        # ``runserver``) before ferrite.E001 can report a bad entry, so a ConfigError is
        # kept here and raised on first use instead (as Django's RedisCache does).
        self.config_error: ConfigError | None = None
        options = params.get("OPTIONS", {})
        if not isinstance(options, Mapping):  # Django's BaseCache would fail on it
            params = {**params, "OPTIONS": {}}
        super().__init__(params)
        self._manager = get_manager()
        try:
            if not isinstance(options, Mapping):
                raise ConfigError(
                    "OPTIONS must be a dict of options, such as {'max_connections': 20} (or "
                    f"left out); got {type(options).__name__}.",
                    option="OPTIONS",
                )
            self._configure(server, params)
        except ConfigError as error:
            self.config_error = error
            for name in _CONFIGURED:
                self.__dict__.pop(name, None)

    def __getattr__(self, name: str) -> Any:
        # Reached only for attributes __init__ did not set: a bad configuration's error.
        error = self.__dict__.get("config_error")
        if error is not None and name in _CONFIGURED:
            raise error
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def _configure(self, server: Any, params: dict[str, Any]) -> None:
        options = dict(params.get("OPTIONS") or {})
        backend = {name: options.pop(name) for name in list(options) if name in _BACKEND_OPTIONS}
        self._alias = self._pool_alias(server, backend.get("pool"), options)
        if self._manager.config(self._alias).decode_responses:
            raise ConfigError(
                "FerriteCache stores bytes (serialized, maybe compressed) and cannot use a "
                "pool with decode_responses=True; drop that option (or name a pool without it "
                "in 'pool').",
                option="decode_responses",
            )
        self._codec = ValueCodec(
            backend.get("serializer", "pickle"),
            backend.get("compressor"),
            backend.get("compress_min_size", 256),
        )
        self._ignore_exceptions = _flag(
            "ignore_exceptions",
            backend.get("ignore_exceptions", False),
            "server errors become cache misses",
        )
        clear = backend.get("clear", "flush")
        if clear not in ("flush", "prefix"):
            raise ConfigError(
                f"Option 'clear' must be 'flush' (FLUSHDB) or 'prefix' (only this cache's "
                f"keys); got {clear!r}.",
                option="clear",
            )
        self._clear: Literal["flush", "prefix"] = clear

    def _pool_alias(self, server: Any, pool: Any, options: dict[str, Any]) -> str:
        if pool is not None:
            if options or _location(server):
                raise ConfigError(
                    f"Option 'pool' ({pool!r}) names a pool configured elsewhere; give either "
                    "it or LOCATION and pool options, not both.",
                    option="pool",
                )
            self._manager.config(pool)  # a clear error now if it is unknown
            return str(pool)
        config = PoolConfig.from_url(_location(server), **options)
        return self._manager.alias_for(config, "django")

    # -- plumbing -----------------------------------------------------------------------------

    def validate_key(self, key: Any) -> None:
        """Django's key check (``CacheKeyWarning`` for keys memcached would refuse), with a
        fast path for the common key that cannot warn."""
        if (
            isinstance(key, str)
            and len(key) <= _MEMCACHE_MAX_KEY_LENGTH
            and key.isprintable()
            and " " not in key
        ):
            return
        super().validate_key(key)

    def make_and_validate_key(self, key: Any, version: Any = None) -> Any:
        """Django's ``make_key`` then ``validate_key``: in one step (the same key, the same
        warnings) while the key function is Django's default and neither method was
        overridden or patched (on the class or on this cache)."""
        cls = type(self)
        if (
            self.key_func is not default_key_func
            or cls.make_key is not _DJANGO_MAKE_KEY
            or cls.validate_key is not _OWN_VALIDATE_KEY
            or "make_key" in self.__dict__
            or "validate_key" in self.__dict__
        ):
            return super().make_and_validate_key(key, version=version)
        made = "%s:%s:%s" % (  # noqa: UP031 (default_key_func's own formatting)
            self.key_prefix,
            self.version if version is None else version,
            key,
        )
        if len(made) > _MEMCACHE_MAX_KEY_LENGTH or not made.isprintable() or " " in made:
            super().validate_key(made)
        return made

    @property
    def pool_alias(self) -> str:
        """The manager alias of this cache's pool."""
        return self._alias

    @property
    def ignores_exceptions(self) -> bool:
        """Whether the ``ignore_exceptions`` option is on."""
        return self._ignore_exceptions

    def get_client(self, key: Any = None, *, write: bool = False) -> redis.Redis:
        """The raw redis-py client on this cache's shared pool."""
        client = self.__dict__.get("_client")
        if client is None:
            client = self.__dict__["_client"] = self._manager.client(self._alias)
        return client

    def _async_client(self) -> redis.asyncio.Redis:
        return self._manager.async_client(self._alias)

    def get_backend_timeout(self, timeout: Any = DEFAULT_TIMEOUT) -> int | None:
        """Seconds for the server: ``None`` never expires; 0 or less deletes at once."""
        if timeout == DEFAULT_TIMEOUT:
            timeout = self.default_timeout
        return None if timeout is None else max(0, int(timeout))

    def _deferring(self, scope: S) -> S | None:
        """The request scope to queue a write in, or ``None`` to send it now: with
        ``ignore_exceptions`` and the server known to be away (its circuit breaker open), a
        write fails fast and quietly through the degraded mode instead of waiting in the
        queue for a flush that fails (and then logs every command of every request)."""
        if scope is None or not self._ignore_exceptions:
            return scope
        breaker = self._manager.breaker(self._manager.config(self._alias))
        return None if breaker.state == "open" else scope

    def _command(self, default: Any, *args: Any) -> Any:
        """One wire command on the shared client; with ``ignore_exceptions``, ``default``
        while the server is away."""
        client = self.get_client()
        if not self._ignore_exceptions:
            return client.execute_command(*args)
        call = partial(client.execute_command, *args)
        return self._manager.degraded(self._alias).call(call, default=default)

    async def _acommand(self, default: Any, *args: Any) -> Any:
        """The async twin of ``_command``, on the running loop's pool."""
        client = self._async_client()
        if not self._ignore_exceptions:
            return await client.execute_command(*args)
        call = partial(client.execute_command, *args)
        return await self._manager.degraded(self._alias).acall(call, default=default)

    def _run(self, call: Callable[[], Any], default: Any = None) -> Any:
        if not self._ignore_exceptions:
            return call()
        return self._manager.degraded(self._alias).call(call, default=default)

    async def _arun(self, call: Callable[[], Awaitable[Any]], default: Any = None) -> Any:
        if not self._ignore_exceptions:
            return await call()
        return await self._manager.degraded(self._alias).acall(call, default=default)

    def _encoded(self, data: dict[Any, Any], version: Any) -> dict[str, Any]:
        return {
            self.make_and_validate_key(key, version=version): self._codec.dumps(value)
            for key, value in data.items()
        }

    # -- the cache API (sync) ---------------------------------------------------------------

    def add(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: Any = None
    ) -> bool:
        key = self.make_and_validate_key(key, version=version)
        seconds, data, client = (
            self.get_backend_timeout(timeout),
            self._codec.dumps(value),
            self.get_client(),
        )

        def add() -> bool:
            if seconds == 0:
                added = bool(client.set(key, data, nx=True))
                if added:
                    client.delete(key)
                return added
            return bool(client.set(key, data, ex=seconds, nx=True))

        return bool(self._run(add, default=False))

    def get(self, key: Any, default: Any = None, version: Any = None) -> Any:
        key = self.make_and_validate_key(key, version=version)
        raw = self._command(None, "GET", key)
        return default if raw is None else self._codec.loads(raw)

    def set(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: Any = None
    ) -> None:
        key = self.make_and_validate_key(key, version=version)
        command = _set_or_delete(key, self._codec.dumps(value), self.get_backend_timeout(timeout))
        scope = self._deferring(current_scope(self._alias))
        if scope is not None:  # PipelineMiddleware: sent with the next read, or at the end
            scope.deferred.execute_command(*command)
        else:
            self._command(None, *command)

    def touch(self, key: Any, timeout: Any = DEFAULT_TIMEOUT, version: Any = None) -> bool:
        key = self.make_and_validate_key(key, version=version)
        seconds = self.get_backend_timeout(timeout)
        if seconds is None:
            return bool(self._command(False, "PERSIST", key))
        return bool(self._command(False, "EXPIRE", key, seconds))

    def delete(self, key: Any, version: Any = None) -> bool:
        key = self.make_and_validate_key(key, version=version)
        return bool(self._command(False, "DEL", key))

    def get_many(self, keys: Iterable[Any], version: Any = None) -> dict[Any, Any]:
        made = {self.make_and_validate_key(key, version=version): key for key in keys}
        if not made:
            return {}
        raw = self._command([None] * len(made), "MGET", *made)
        return {
            made[k]: self._codec.loads(v) for k, v in zip(made, raw, strict=True) if v is not None
        }

    def has_key(self, key: Any, version: Any = None) -> bool:
        key = self.make_and_validate_key(key, version=version)
        return bool(self._command(False, "EXISTS", key))

    def incr(self, key: Any, delta: int = 1, version: Any = None) -> int:
        made = self.make_and_validate_key(key, version=version)
        client = self.get_client()

        def incr() -> Any:
            return _found(client.execute_command("EVAL", _INCR_IF_EXISTS, 1, made, delta), made)

        result = self._run(incr)
        if result is None:  # degraded: the key cannot be found while the server is away
            raise ValueError(f"Key '{made}' not found (the cache server is unavailable).")
        return int(result)

    def set_many(
        self, data: dict[Any, Any], timeout: Any = DEFAULT_TIMEOUT, version: Any = None
    ) -> list[Any]:
        if not data:
            return []
        values = self._encoded(data, version)
        seconds, client = self.get_backend_timeout(timeout), self.get_client()
        scope = self._deferring(current_scope(self._alias))
        if scope is not None:
            _queue_set_many(scope.deferred, values, seconds)
            return []

        def set_many() -> list[Any]:
            pipe = client.pipeline(transaction=False)
            _queue_set_many(pipe, values, seconds)
            pipe.execute()
            return []

        return list(self._run(set_many, default=list(data)))

    def delete_many(self, keys: Iterable[Any], version: Any = None) -> None:
        made = [self.make_and_validate_key(key, version=version) for key in keys]
        scope = self._deferring(current_scope(self._alias))
        if made and scope is not None:
            scope.deferred.delete(*made)
        elif made:
            self._command(None, "DEL", *made)

    def clear(self) -> bool:
        client = self.get_client()
        if self._clear == "flush":
            return bool(self._run(client.flushdb, default=False))
        pattern = self._all_keys_pattern()
        return self._run(lambda: self._delete_matching(client, pattern)) is not None

    def close(self, **kwargs: Any) -> None:
        """Django calls this after every request: the shared pool stays open (closing it
        would reconnect on every request)."""

    # -- the cache API (async, native) ------------------------------------------------------

    async def aadd(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: Any = None
    ) -> bool:
        key = self.make_and_validate_key(key, version=version)
        seconds, data, client = (
            self.get_backend_timeout(timeout),
            self._codec.dumps(value),
            self._async_client(),
        )

        async def add() -> bool:
            if seconds == 0:
                added = bool(await client.set(key, data, nx=True))
                if added:
                    await client.delete(key)
                return added
            return bool(await client.set(key, data, ex=seconds, nx=True))

        return bool(await self._arun(add, default=False))

    async def aget(self, key: Any, default: Any = None, version: Any = None) -> Any:
        key = self.make_and_validate_key(key, version=version)
        raw = await self._acommand(None, "GET", key)
        return default if raw is None else self._codec.loads(raw)

    async def aset(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: Any = None
    ) -> None:
        key = self.make_and_validate_key(key, version=version)
        command = _set_or_delete(key, self._codec.dumps(value), self.get_backend_timeout(timeout))
        scope = self._deferring(current_async_scope(self._alias))
        if scope is not None:
            scope.deferred.execute_command(*command)
        else:
            await self._acommand(None, *command)

    async def atouch(self, key: Any, timeout: Any = DEFAULT_TIMEOUT, version: Any = None) -> bool:
        key = self.make_and_validate_key(key, version=version)
        seconds = self.get_backend_timeout(timeout)
        if seconds is None:
            return bool(await self._acommand(False, "PERSIST", key))
        return bool(await self._acommand(False, "EXPIRE", key, seconds))

    async def adelete(self, key: Any, version: Any = None) -> bool:
        key = self.make_and_validate_key(key, version=version)
        return bool(await self._acommand(False, "DEL", key))

    async def aget_many(self, keys: Iterable[Any], version: Any = None) -> dict[Any, Any]:
        made = {self.make_and_validate_key(key, version=version): key for key in keys}
        if not made:
            return {}
        raw = await self._acommand([None] * len(made), "MGET", *made)
        return {
            made[k]: self._codec.loads(v) for k, v in zip(made, raw, strict=True) if v is not None
        }

    async def ahas_key(self, key: Any, version: Any = None) -> bool:
        key = self.make_and_validate_key(key, version=version)
        return bool(await self._acommand(False, "EXISTS", key))

    async def aincr(self, key: Any, delta: int = 1, version: Any = None) -> int:
        made = self.make_and_validate_key(key, version=version)
        client = self._async_client()

        async def incr() -> Any:
            reply = await client.execute_command("EVAL", _INCR_IF_EXISTS, 1, made, delta)
            return _found(reply, made)

        result = await self._arun(incr)
        if result is None:  # degraded: the key cannot be found while the server is away
            raise ValueError(f"Key '{made}' not found (the cache server is unavailable).")
        return int(result)

    async def aset_many(
        self, data: dict[Any, Any], timeout: Any = DEFAULT_TIMEOUT, version: Any = None
    ) -> list[Any]:
        if not data:
            return []
        values = self._encoded(data, version)
        seconds, client = self.get_backend_timeout(timeout), self._async_client()
        scope = self._deferring(current_async_scope(self._alias))
        if scope is not None:
            _queue_set_many(scope.deferred, values, seconds)
            return []

        async def set_many() -> list[Any]:
            pipe = client.pipeline(transaction=False)
            _queue_set_many(pipe, values, seconds)
            await pipe.execute()
            return []

        return list(await self._arun(set_many, default=list(data)))

    async def adelete_many(self, keys: Iterable[Any], version: Any = None) -> None:
        made = [self.make_and_validate_key(key, version=version) for key in keys]
        scope = self._deferring(current_async_scope(self._alias))
        if made and scope is not None:
            scope.deferred.delete(*made)
        elif made:
            await self._acommand(None, "DEL", *made)

    async def aclear(self) -> bool:
        client = self._async_client()
        if self._clear == "flush":
            return bool(await self._arun(client.flushdb, default=False))

        async def clear() -> bool:
            async for keys in _ascan(client, self._all_keys_pattern()):
                await client.unlink(*keys)
            return True

        return bool(await self._arun(clear, default=False))

    async def aclose(self, **kwargs: Any) -> None:
        """See ``close``: the shared pool stays open."""

    # -- extras users of django-redis rely on -----------------------------------------------

    def ttl(self, key: Any, version: Any = None) -> int | None:
        """Seconds until ``key`` expires: ``None`` if it never does, 0 if it is missing."""
        made = self.make_and_validate_key(key, version=version)
        remaining = int(self._command(-2, "TTL", made))
        return None if remaining == -1 else max(0, remaining)

    def expire(self, key: Any, timeout: int | timedelta, version: Any = None) -> bool:
        """Let ``key`` expire in ``timeout`` seconds (or a ``timedelta``); ``False`` if it
        is missing."""
        made = self.make_and_validate_key(key, version=version)
        if isinstance(timeout, timedelta):
            timeout = int(timeout.total_seconds())
        return bool(self._command(False, "EXPIRE", made, timeout))

    def persist(self, key: Any, version: Any = None) -> bool:
        """Make ``key`` never expire; ``False`` if it is missing or already persistent."""
        made = self.make_and_validate_key(key, version=version)
        return bool(self._command(False, "PERSIST", made))

    def lock(self, key: Any, version: Any = None, **kwargs: Any) -> Any:
        """A ``redis.lock.Lock`` named after the cache key (same arguments as redis-py)."""
        return self.get_client().lock(self.make_and_validate_key(key, version=version), **kwargs)

    def iter_keys(self, pattern: str = "*", version: Any = None) -> Iterator[str]:
        """The cache keys (without prefix and version) matching a glob ``pattern``."""
        made = self._key_pattern(pattern, version)
        prefix_length = len(self.make_key("", version=version))
        for raw in self.get_client().scan_iter(match=made, count=_SCAN_BATCH):
            yield (raw.decode() if isinstance(raw, bytes) else raw)[prefix_length:]

    def delete_pattern(self, pattern: str, version: Any = None) -> int:
        """Delete the cache keys matching a glob ``pattern``; returns how many."""
        client = self.get_client()
        made = self._key_pattern(pattern, version)
        return int(self._run(lambda: self._delete_matching(client, made), default=0))

    def _key_pattern(self, pattern: str, version: Any) -> str:
        """The server-side glob for this cache's keys matching ``pattern``: glob characters
        in ``KEY_PREFIX`` match only themselves."""
        version = self.version if version is None else version
        return str(self.key_func(pattern, _glob_escape(self.key_prefix), version))

    def _all_keys_pattern(self) -> str:
        """Every key of this cache, of any version (``"clear": "prefix"``)."""
        return str(self.key_func("*", _glob_escape(self.key_prefix), "*"))

    @staticmethod
    def _delete_matching(client: redis.Redis, pattern: str) -> int:
        deleted, batch = 0, []
        for key in client.scan_iter(match=pattern, count=_SCAN_BATCH):
            batch.append(key)
            if len(batch) >= _SCAN_BATCH:
                deleted += int(client.unlink(*batch))
                batch = []
        if batch:
            deleted += int(client.unlink(*batch))
        return deleted


def _glob_escape(text: str) -> str:
    """``text`` as a server-side glob that matches only itself."""
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


def _queue_set_many(queue: Any, values: dict[str, Any], seconds: int | None) -> None:
    """``set_many`` as commands on a pipeline or a request scope's queue: one MSET without
    expiry; with one, a SET ... EX per key, so that no key is ever without its expiry (an
    MSET followed by EXPIREs would leave keys that never expire if cut off in between); a
    timeout of 0 deletes the keys."""
    if seconds == 0:
        queue.delete(*values)
    elif seconds is None:
        queue.mset(values)
    else:
        for key, value in values.items():
            queue.execute_command("SET", key, value, "EX", seconds)


async def _ascan(client: Any, pattern: str) -> AsyncIterator[list[Any]]:
    batch: list[Any] = []
    async for key in client.scan_iter(match=pattern, count=_SCAN_BATCH):
        batch.append(key)
        if len(batch) >= _SCAN_BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _set_or_delete(key: str, data: Any, seconds: int | None) -> tuple[Any, ...]:
    """The wire command for Django's ``set``: a timeout of 0 or less deletes at once."""
    if seconds is None:
        return ("SET", key, data)
    if seconds == 0:
        return ("DEL", key)
    return ("SET", key, data, "EX", seconds)


# One round trip, atomic: a key that expires between a check and the INCRBY must not come
# back as a new key without its timeout.
# INCRBY on an existing key only, in one step. The new value is read back with GET: a Lua
# number is a double, exact only up to 2**53. A failed INCRBY's error is returned as the
# server words it, without the script's location.
_INCR_IF_EXISTS = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local done = redis.pcall('INCRBY', KEYS[1], ARGV[1])
if type(done) == 'table' and done.err then return done end
return redis.call('GET', KEYS[1])
"""


def _found(reply: Any, key: str) -> int:
    if reply is None:
        raise ValueError(f"Key '{key}' not found.")
    return int(reply)


# The methods make_and_validate_key's one step stands for, as first defined: a patch or an
# override of either (even made after a cache was built) turns the one step off.
_DJANGO_MAKE_KEY = BaseCache.make_key
_OWN_VALIDATE_KEY = FerriteCache.validate_key
