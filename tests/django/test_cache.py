"""FerriteCache against a real server: Django's cache semantics, sync and async alike,
over every serializer/compressor combination."""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Callable
from typing import Any

import pytest
import redis

from ferrite_integrations import ConfigError, get_manager
from ferrite_integrations.django import FerriteCache
from ferrite_integrations.testing import EmbeddedServer

CODECS = [
    {},
    {"serializer": "json"},
    {"compressor": "zlib", "compress_min_size": 0},
    {"serializer": "pickle", "compressor": "zlib", "compress_min_size": 10},
]


class Sync:
    """Runs the sync API as is."""

    def __init__(self, cache: FerriteCache) -> None:
        self.cache = cache

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method: Callable[..., Any] = getattr(self.cache, name)
        return method


class Async:
    """Runs the native async API (``aget`` for ``get``...) on a fresh event loop."""

    def __init__(self, cache: FerriteCache) -> None:
        self.cache = cache

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self.cache, f"a{name}")

        def call(*args: Any, **kwargs: Any) -> Any:
            return asyncio.run(method(*args, **kwargs))

        return call


@pytest.fixture(params=range(len(CODECS)), ids=["pickle", "json", "zlib", "pickle+zlib>10"])
def options(request: pytest.FixtureRequest) -> dict[str, Any]:
    return dict(CODECS[request.param])


@pytest.fixture
def cache(ferrite_server: EmbeddedServer, options: dict[str, Any]) -> FerriteCache:
    cache = FerriteCache(ferrite_server.url, {"OPTIONS": options, "KEY_PREFIX": "t"})
    client = redis.Redis(**ferrite_server.redis_kwargs())
    client.flushdb()
    client.close()
    return cache


@pytest.fixture(params=["sync", "async"])
def api(request: pytest.FixtureRequest, cache: FerriteCache) -> Any:
    return Sync(cache) if request.param == "sync" else Async(cache)


VALUES: list[Any] = ["text", 42, -7, 3.5, True, None, [1, "a"], {"k": [1, 2]}, "é" * 300]


@pytest.mark.parametrize(
    "value", VALUES, ids=[type(v).__name__ + str(i) for i, v in enumerate(VALUES)]
)
def test_values_round_trip(api: Any, value: Any) -> None:
    api.set("key", value)
    assert api.get("key", "missing") == value


def test_missing_keys_give_the_default(api: Any) -> None:
    assert api.get("absent") is None
    assert api.get("absent", "fallback") == "fallback"
    assert api.has_key("absent") is False


def test_timeouts(api: Any, cache: FerriteCache) -> None:
    api.set("forever", 1, timeout=None)
    assert cache.ttl("forever") is None
    api.set("short", 1, timeout=100)
    assert 0 < (cache.ttl("short") or 0) <= 100
    api.set("zero", 1, timeout=0)
    assert api.get("zero") is None
    api.set("negative", 1, timeout=-1)
    assert api.get("negative") is None
    api.set("default", 1)
    assert 0 < (cache.ttl("default") or 0) <= 300


def test_add_only_when_missing(api: Any) -> None:
    assert api.add("k", "first") is True
    assert api.add("k", "second") is False
    assert api.get("k") == "first"
    assert api.add("gone", "x", timeout=0) is True
    assert api.get("gone") is None


def test_delete_and_touch_return_whether_the_key_existed(api: Any, cache: FerriteCache) -> None:
    api.set("k", 1)
    assert api.touch("k", timeout=50) is True
    assert 0 < (cache.ttl("k") or 0) <= 50
    assert api.touch("k", timeout=None) is True
    assert cache.ttl("k") is None
    assert api.touch("absent") is False
    assert api.delete("k") is True
    assert api.delete("k") is False


def test_many(api: Any) -> None:
    assert api.set_many({"a": 1, "b": "two", "c": None}) == []
    assert api.get_many(["a", "b", "c", "absent"]) == {"a": 1, "b": "two", "c": None}
    assert api.get_many([]) == {}
    assert api.set_many({}) == []
    api.delete_many(["a", "b"])
    api.delete_many([])
    assert api.get_many(["a", "b", "c"]) == {"c": None}


def test_incr_and_decr(api: Any) -> None:
    api.set("n", 10)
    assert api.incr("n") == 11
    assert api.incr("n", 5) == 16
    assert api.decr("n", 6) == 10
    assert api.get("n") == 10
    with pytest.raises(ValueError, match="not found"):
        api.incr("absent")


def test_versions(api: Any) -> None:
    api.set("k", "v1", version=1)
    api.set("k", "v2", version=2)
    assert (api.get("k", version=1), api.get("k", version=2)) == ("v1", "v2")
    assert api.incr_version("k", version=2) == 3
    assert api.get("k", version=3) == "v2"
    assert api.get("k", version=2) is None
    assert api.decr_version("k", version=3) == 2
    with pytest.raises(ValueError, match="not found"):
        api.incr_version("absent")
    api.set("none", None)
    assert api.incr_version("none") == 2
    assert api.get("none", "missing", version=2) is None


def test_get_or_set(api: Any) -> None:
    assert api.get_or_set("k", lambda: "computed") == "computed"
    assert api.get_or_set("k", "other") == "computed"


def test_clear_flushes_the_database(api: Any) -> None:
    api.set("k", 1)
    assert api.clear() is True
    assert api.get("k") is None


def test_key_validation_warns_like_django(cache: FerriteCache) -> None:
    from django.core.cache import CacheKeyWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cache.set("x" * 300, 1)
    assert any(issubclass(w.category, CacheKeyWarning) for w in caught)


def test_sync_and_async_see_the_same_data(cache: FerriteCache) -> None:
    cache.set("shared", {"from": "sync"})
    assert asyncio.run(cache.aget("shared")) == {"from": "sync"}
    asyncio.run(cache.aset("shared", [1, 2]))
    assert cache.get("shared") == [1, 2]


def test_values_written_with_another_compressor_setting_still_read(
    ferrite_server: EmbeddedServer,
) -> None:
    compressing = FerriteCache(
        ferrite_server.url, {"OPTIONS": {"compressor": "zlib", "compress_min_size": 0}}
    )
    plain = FerriteCache(ferrite_server.url, {"OPTIONS": {}})
    compressing.set("value", "x" * 1000)
    assert plain.get("value") == "x" * 1000
    plain.set("value", "y" * 1000)
    assert compressing.get("value") == "y" * 1000


def test_ints_are_stored_so_that_incr_works_on_the_server(
    cache: FerriteCache, ferrite_server: EmbeddedServer
) -> None:
    cache.set("n", 5)
    raw = redis.Redis(**ferrite_server.redis_kwargs())
    assert raw.incr(cache.make_key("n")) == 6
    assert cache.get("n") == 6
    raw.close()


def test_extras(cache: FerriteCache) -> None:
    cache.set("a:1", 1)
    cache.set("a:2", 2)
    cache.set("b:1", 3)
    assert sorted(cache.iter_keys("a:*")) == ["a:1", "a:2"]
    assert cache.delete_pattern("a:*") == 2
    assert cache.get_many(["a:1", "b:1"]) == {"b:1": 3}
    assert cache.expire("b:1", 30) is True
    assert cache.persist("b:1") is True
    with cache.lock("resource", timeout=5):
        assert cache.get_client().exists(cache.make_key("resource")) == 1


def test_clear_by_prefix_keeps_other_keys(ferrite_server: EmbeddedServer) -> None:
    raw = redis.Redis(**ferrite_server.redis_kwargs())
    raw.set("someone-else", "kept")
    cache = FerriteCache(ferrite_server.url, {"OPTIONS": {"clear": "prefix"}, "KEY_PREFIX": "mine"})
    cache.set("k", 1)
    assert cache.clear() is True
    assert cache.get("k") is None
    assert raw.get("someone-else") == b"kept"
    assert asyncio.run(cache.aclear()) is True
    raw.close()


def test_caches_with_equal_configuration_share_one_pool(ferrite_server: EmbeddedServer) -> None:
    first = FerriteCache(ferrite_server.url, {"OPTIONS": {"max_connections": 7}})
    second = FerriteCache(
        ferrite_server.url, {"OPTIONS": {"max_connections": 7}, "KEY_PREFIX": "x"}
    )
    other = FerriteCache(ferrite_server.url, {"OPTIONS": {"max_connections": 8}})
    manager = get_manager()
    assert manager.pool(first.pool_alias) is manager.pool(second.pool_alias)
    assert manager.pool(first.pool_alias) is not manager.pool(other.pool_alias)


def test_close_after_a_request_keeps_the_shared_pool(ferrite_server: EmbeddedServer) -> None:
    cache = FerriteCache(ferrite_server.url, {"OPTIONS": {"client_name": "close-test"}})
    cache.set("k", 1)
    before = ferrite_server.client_list()
    cache.close()
    cache.set("k", 2)
    after = ferrite_server.client_list()
    ids = lambda clients: {c["id"] for c in clients if c["name"] == "close-test"}  # noqa: E731
    assert ids(before) == ids(after) != set()


def test_ignore_exceptions_turns_a_down_server_into_misses(
    ferrite_server_factory: Any,
) -> None:
    server = ferrite_server_factory()
    cache = FerriteCache(
        server.url,
        {
            "OPTIONS": {
                "ignore_exceptions": True,
                "socket_connect_timeout": 0.2,
                "breaker_threshold": 2,
            }
        },
    )
    cache.set("k", 1)
    server.stop()
    assert cache.get("k", "default") == "default"
    cache.set("k", 2)  # does nothing, raises nothing
    assert cache.get_many(["k"]) == {}
    assert cache.add("k", 1) is False
    assert cache.delete("k") is False
    assert asyncio.run(cache.aget("k", "default")) == "default"
    strict = FerriteCache(server.url, {"OPTIONS": {"socket_connect_timeout": 0.2}})
    with pytest.raises(redis.ConnectionError):
        strict.get("k")


@pytest.mark.parametrize(
    ("location", "options", "fragment"),
    [
        ("http://nope", {}, "unknown scheme"),
        ("redis://h", {"max_conections": 3}, "Did you mean 'max_connections'"),
        ("redis://h", {"serializer": "yaml"}, "'pickle'"),
        ("redis://h", {"compressor": "brotli"}, "'zlib'"),
        ("redis://h", {"clear": "all"}, "'flush'"),
        ("redis://h", {"compress_min_size": -1}, ">= 0"),
        (["redis://a", "redis://b"], {}, "one server"),
        ("redis://h", {"pool": "somewhere"}, "pool"),
    ],
)
def test_bad_settings_raise_config_errors(
    location: Any, options: dict[str, Any], fragment: str
) -> None:
    with pytest.raises(ConfigError, match=fragment):
        FerriteCache(location, {"OPTIONS": options})


def test_a_cache_can_use_a_pool_configured_elsewhere(ferrite_server: EmbeddedServer) -> None:
    manager = get_manager()
    manager.configure("shared-with-flask", ferrite_server.url, replace=True)
    cache = FerriteCache(None, {"OPTIONS": {"pool": "shared-with-flask"}})
    cache.set("k", "v")
    assert manager.client("shared-with-flask").get(cache.make_key("k")) is not None
