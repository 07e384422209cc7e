"""FerriteCache against a real server: Django's cache semantics, sync and async alike,
over every serializer/compressor combination."""

from __future__ import annotations

import asyncio
import datetime as dt
import pickle
import re
import threading
import warnings
from collections.abc import Callable
from decimal import Decimal
from typing import Any, NamedTuple
from unittest import mock

import pytest
import redis

from ferrite_integrations import ConfigError, get_manager
from ferrite_integrations.django import FerriteCache
from ferrite_integrations.testing import EmbeddedServer, FaultProxy

CUSTOM = "tests.django.custom"


class Point(NamedTuple):
    x: int
    y: int


CODECS: dict[str, dict[str, Any]] = {
    "pickle": {},
    "json": {"serializer": "json"},
    "msgpack": {"serializer": "msgpack"},
    "dotted-serializer": {"serializer": f"{CUSTOM}.MarshalSerializer"},
    "zlib": {"compressor": "zlib", "compress_min_size": 0},
    "zstd": {"compressor": "zstd", "compress_min_size": 0},
    "lz4": {"compressor": "lz4", "compress_min_size": 0},
    "dotted-compressor": {"compressor": f"{CUSTOM}.BZ2Compressor", "compress_min_size": 0},
    "pickle+zlib>10": {"serializer": "pickle", "compressor": "zlib", "compress_min_size": 10},
    "msgpack+zstd>10": {"serializer": "msgpack", "compressor": "zstd", "compress_min_size": 10},
    "json+lz4>10": {"serializer": "json", "compressor": "lz4", "compress_min_size": 10},
}


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


# The optional extras each codec needs (an environment without one skips its cases).
EXTRAS = {"msgpack": "msgpack", "zstd": "zstandard", "lz4": "lz4.frame"}


def need_extras(*names: Any) -> None:
    for name in names:
        for codec, module in EXTRAS.items():
            if codec in str(name):
                pytest.importorskip(module)


@pytest.fixture(params=sorted(CODECS))
def options(request: pytest.FixtureRequest) -> dict[str, Any]:
    options = dict(CODECS[request.param])
    need_extras(*options.values())
    return options


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
    api.set("doomed", 1)
    assert api.touch("doomed", timeout=0) is True  # a 0 timeout expires it at once
    assert api.has_key("doomed") is False


def test_many(api: Any) -> None:
    assert api.set_many({"a": 1, "b": "two", "c": None}) == []
    assert api.get_many(["a", "b", "c", "absent"]) == {"a": 1, "b": "two", "c": None}
    assert api.get_many([]) == {}
    assert api.set_many({}) == []
    assert api.delete_many(["a", "b"]) is None
    api.delete_many([])
    assert api.get_many(["a", "b", "c"]) == {"c": None}


def test_set_many_timeouts(api: Any, cache: FerriteCache) -> None:
    assert api.set_many({"x": 1, "y": 2}, timeout=30) == []
    assert all(0 < (cache.ttl(key) or 0) <= 30 for key in ("x", "y"))
    assert api.set_many({"x": 1}, timeout=None) == []
    assert cache.ttl("x") is None
    assert api.set_many({"x": 1, "y": 2}, timeout=0) == []  # deletes, like set()
    assert api.get_many(["x", "y"]) == {}
    api.set_many({"v": "one"}, version=3)
    assert (api.get("v"), api.get("v", version=3)) == (None, "one")


def test_incr_is_one_round_trip_and_keeps_the_timeout(ferrite_server: EmbeddedServer) -> None:
    with FaultProxy(ferrite_server.host, ferrite_server.port) as proxy:
        cache = FerriteCache(proxy.url, {"KEY_PREFIX": "incr-rt"})

        def round_trips(call: Callable[[], Any]) -> int:
            before = proxy.requests_forwarded
            call()
            return proxy.requests_forwarded - before

        def missing() -> None:
            with pytest.raises(ValueError, match="not found"):
                cache.incr("gone")

        cache.set("n", 1, timeout=100)
        assert round_trips(lambda: cache.incr("n", 4)) == 1
        assert round_trips(missing) == 1
        assert 0 < cache.ttl("n") <= 100  # not recreated without its timeout

        async def in_one_loop() -> list[int]:
            await cache.aset("a", 1, timeout=100)  # the loop's connection is open from here
            before = proxy.requests_forwarded
            value = await cache.aincr("a", 4)
            return [value, proxy.requests_forwarded - before]

        assert asyncio.run(in_one_loop()) == [5, 1]
        assert 0 < cache.ttl("a") <= 100


def custom_serializer(options: dict[str, Any]) -> bool:
    return str(options.get("serializer", "")).startswith(CUSTOM)


def test_incr_and_decr(api: Any, options: dict[str, Any]) -> None:
    api.set("n", 10)
    if custom_serializer(options):
        # As in Django: a serializer of the user's own gets ints too, and INCR works only
        # on what it writes as decimal text (marshal does not).
        with pytest.raises(redis.ResponseError, match=r"^value is not an integer or out of range$"):
            api.incr("n")
        return
    assert api.incr("n") == 11
    assert api.incr("n", 5) == 16
    assert api.decr("n", 6) == 10
    assert api.get("n") == 10
    with pytest.raises(ValueError, match="not found"):
        api.incr("absent")
    with pytest.raises(ValueError, match="not found"):
        api.decr("absent")
    assert api.has_key("absent") is False  # a failed incr creates nothing
    api.set("negative", -3)
    assert api.incr("negative", -2) == -5
    assert api.decr("negative", -10) == 5


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


def test_get_or_set(api: Any, cache: FerriteCache) -> None:
    assert api.get_or_set("k", lambda: "computed") == "computed"
    assert api.get_or_set("k", "other") == "computed"
    assert api.get_or_set("stored-none", None) is None  # None is a value: it is stored
    assert api.has_key("stored-none") is True
    assert api.get_or_set("stored-none", "other") is None
    assert api.get_or_set("with-timeout", lambda: 7, timeout=40) == 7
    assert 0 < (cache.ttl("with-timeout") or 0) <= 40
    assert api.get_or_set("k2", lambda: "v2", version=2) == "v2"
    assert api.get("k2") is None


def test_clear_flushes_the_database(api: Any) -> None:
    api.set("k", 1)
    assert api.clear() is True
    assert api.get("k") is None


@pytest.mark.parametrize(
    ("key", "reason"),
    [("x" * 300, "longer than 250"), ("with space", "characters"), ("tab\there", "characters")],
    ids=["long", "space", "control"],
)
def test_key_validation_warns_like_django(api: Any, key: str, reason: str) -> None:
    from django.core.cache import CacheKeyWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        api.set(key, 1)
    assert [w.category for w in caught] == [CacheKeyWarning]
    assert reason in str(caught[0].message)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert api.get(key) == 1  # a warning, not a refusal: the key still works
        api.set("fine:key-é", 2)
    assert [w.category for w in caught] == [CacheKeyWarning]


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
    cache: FerriteCache, ferrite_server: EmbeddedServer, options: dict[str, Any]
) -> None:
    cache.set("n", 5)
    raw = redis.Redis(**ferrite_server.redis_kwargs())
    if custom_serializer(options):  # Django's rule: the user's serializer writes every value
        assert raw.get(cache.make_key("n")) == __import__("marshal").dumps(5)
        cache.set("n", 6)
        assert cache.get("n") == 6
        raw.close()
        return
    assert raw.incr(cache.make_key("n")) == 6
    assert cache.get("n") == 6
    raw.close()


@pytest.mark.parametrize("api_name", ["sync", "async"])
@pytest.mark.parametrize(
    ("start", "delta"),
    [(2**53, 1), (2**60, 1), (10**17, 3), (-(2**60), -1), (1, -(2**63))],
    ids=["2**53", "2**60", "10**17", "negative", "to-the-minimum"],
)
def test_incr_is_exact_beyond_double_precision(
    ferrite_server: EmbeddedServer, api_name: str, start: int, delta: int
) -> None:
    cache = FerriteCache(ferrite_server.url, {"OPTIONS": {}, "KEY_PREFIX": "exact"})
    api = Sync(cache) if api_name == "sync" else Async(cache)
    api.set("n", start)
    assert api.incr("n", delta) == start + delta
    assert api.get("n") == start + delta


@pytest.mark.parametrize("api_name", ["sync", "async"])
def test_incr_errors_read_as_the_servers_own(ferrite_server: EmbeddedServer, api_name: str) -> None:
    cache = FerriteCache(ferrite_server.url, {"OPTIONS": {}, "KEY_PREFIX": "errors"})
    api = Sync(cache) if api_name == "sync" else Async(cache)
    api.set("text", "abc")
    with pytest.raises(redis.ResponseError) as error:
        api.incr("text")
    assert str(error.value) == "value is not an integer or out of range"  # no script location
    api.set("top", 2**63 - 1)
    with pytest.raises(redis.ResponseError) as error:
        api.incr("top")
    assert str(error.value) == "increment or decrement would overflow"


def test_set_many_with_a_timeout_never_leaves_a_key_without_expiry(
    ferrite_server: EmbeddedServer,
) -> None:
    cache = FerriteCache(ferrite_server.url, {"OPTIONS": {}, "KEY_PREFIX": "ttl"})
    raw = redis.Redis(**ferrite_server.redis_kwargs())
    cache.get("warm-up")  # the pool's connection is open before the monitor starts
    with raw.monitor() as monitor:
        assert cache.set_many({"a": 1, "b": "two"}, timeout=300) == []
        seen, writes = [], []
        while len(writes) < 2:
            seen.append(monitor.next_command()["command"])
            if not seen[-1].startswith(("PING", "CLIENT")):
                writes.append(seen[-1])
    # Each key is written together with its expiry: nothing to cut off in between.
    assert all(re.fullmatch(r"SET ttl:1:[ab] .+ EX 300", command) for command in writes), seen
    assert 0 < raw.ttl(cache.make_key("a")) <= 300
    assert 0 < raw.ttl(cache.make_key("b")) <= 300
    raw.close()


def test_values_of_a_custom_serializer_are_never_taken_for_ints(
    ferrite_server: EmbeddedServer,
) -> None:
    text = FerriteCache(ferrite_server.url, {"OPTIONS": {"serializer": f"{CUSTOM}.TextSerializer"}})
    for value in ["-7", "02139", "12"]:
        text.set("k", value)
        assert text.get("k") == value
        assert asyncio.run(text.aget("k")) == value


def test_msgpack_int_subclasses_read_back_as_their_value(ferrite_server: EmbeddedServer) -> None:
    need_extras("msgpack")
    import enum

    class Status(enum.IntEnum):
        ACTIVE = 49
        BANNED = 57

    cache = FerriteCache(ferrite_server.url, {"OPTIONS": {"serializer": "msgpack"}})
    for status in Status:
        cache.set("status", status)
        assert cache.get("status") == status.value
    cache.set("flag", True)
    assert cache.get("flag") is True


def test_glob_characters_in_the_key_prefix_match_only_themselves(
    ferrite_server: EmbeddedServer,
) -> None:
    cache = FerriteCache(ferrite_server.url, {"OPTIONS": {}, "KEY_PREFIX": "p[1]"})
    neighbour = FerriteCache(ferrite_server.url, {"OPTIONS": {}, "KEY_PREFIX": "p1"})
    for name in ("a2", "b"):
        cache.set(name, 1)
        neighbour.set(name, 1)
    assert sorted(cache.iter_keys("*")) == ["a2", "b"]
    assert cache.delete_pattern("a*") == 1
    assert sorted(cache.iter_keys("*")) == ["b"]
    assert sorted(neighbour.iter_keys("*")) == ["a2", "b"]


def test_expire_takes_a_timedelta(cache: FerriteCache) -> None:
    cache.set("k", 1)
    assert cache.expire("k", dt.timedelta(seconds=30)) is True
    assert 0 < (cache.ttl("k") or 0) <= 30


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


@pytest.mark.parametrize("prefix", ["app", "", "a[1]", "a*", "back\\slash?"])
def test_clear_by_prefix_deletes_only_this_caches_keys(
    ferrite_server: EmbeddedServer, prefix: str
) -> None:
    # Neighbours whose prefixes this one's would match as a bare glob or a string prefix.
    neighbours = ["app2", "application", "a1", "ab", "back\\slashx", "other"]
    raw = redis.Redis(**ferrite_server.redis_kwargs())
    raw.flushdb()
    raw.set("unrelated-key", "kept")
    caches = {
        name: FerriteCache(ferrite_server.url, {"OPTIONS": {"clear": "prefix"}, "KEY_PREFIX": name})
        for name in dict.fromkeys([prefix, *neighbours, ""])
    }
    for name, cache in caches.items():
        cache.set("k", name)
        cache.set("k", name, version=2)
    mine = caches[prefix]
    for clear in (mine.clear, lambda: asyncio.run(mine.aclear())):
        assert clear() is True
        assert mine.get("k") is None
        assert mine.get("k", version=2) is None
        others = {name: cache.get("k") for name, cache in caches.items() if name != prefix}
        assert others == {name: name for name in others}
        assert raw.get("unrelated-key") == b"kept"
        mine.set("k", "again")
    raw.close()


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


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_ignore_exceptions_turns_a_down_server_into_misses(
    ferrite_server_factory: Any, mode: str
) -> None:
    server = ferrite_server_factory()
    options = {"socket_connect_timeout": 0.2, "breaker_threshold": 2}
    cache = FerriteCache(server.url, {"OPTIONS": {**options, "ignore_exceptions": True}})
    api = Sync(cache) if mode == "sync" else Async(cache)
    api.set("k", 1)
    server.stop()
    assert api.get("k", "default") == "default"
    api.set("k", 2)  # does nothing, raises nothing
    assert api.get_many(["k"]) == {}
    assert api.set_many({"a": 1, "b": 2}) == ["a", "b"]  # the keys that failed
    api.delete_many(["a"])
    assert api.add("k", 1) is False
    assert api.delete("k") is False
    assert api.touch("k") is False
    assert api.has_key("k") is False
    assert api.get_or_set("k", "computed") == "computed"
    with pytest.raises(ValueError, match="unavailable"):
        api.incr("k")
    assert cache.ttl("k") == 0
    assert cache.delete_pattern("*") == 0
    assert api.clear() is False
    strict = FerriteCache(server.url, {"OPTIONS": options})
    with pytest.raises(redis.ConnectionError):
        (Sync(strict) if mode == "sync" else Async(strict)).get("k")


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
        ("redis://h", {"decode_responses": True}, "cannot use a pool with decode_responses"),
    ],
)
def test_bad_settings_raise_config_errors_on_first_use(
    location: Any, options: dict[str, Any], fragment: str
) -> None:
    # Built without raising (Django's own system checks build every cache before
    # ferrite.E001 can report it), the cache raises the error on every use.
    cache = FerriteCache(location, {"OPTIONS": options})
    assert isinstance(cache.config_error, ConfigError)
    assert re.search(fragment, str(cache.config_error))
    for use in (
        lambda: cache.get("k"),
        lambda: cache.set("k", 1),
        lambda: cache.incr("k"),
        cache.clear,
        lambda: cache.pool_alias,
        lambda: asyncio.run(cache.aget("k")),
        lambda: asyncio.run(cache.aset_many({"k": 1})),
    ):
        with pytest.raises(ConfigError, match=fragment):
            use()
    cache.close()  # Django closes every cache after each request: that still works


def test_a_valid_cache_has_no_config_error(ferrite_server: EmbeddedServer) -> None:
    cache = FerriteCache(ferrite_server.url, {"OPTIONS": {"serializer": "json"}})
    assert cache.config_error is None
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        cache.nothing  # noqa: B018


def test_a_cache_can_use_a_pool_configured_elsewhere(ferrite_server: EmbeddedServer) -> None:
    manager = get_manager()
    manager.configure("shared-with-flask", ferrite_server.url, replace=True)
    cache = FerriteCache(None, {"OPTIONS": {"pool": "shared-with-flask"}})
    cache.set("k", "v")
    assert manager.client("shared-with-flask").get(cache.make_key("k")) is not None


PICKLED: list[Any] = [
    b"\x00raw bytes",
    b"\xfeFlooks like the compressed header",
    (1, "tuple"),
    {1, 2, 3},
    frozenset({"a"}),
    Decimal("1.10"),
    dt.datetime(2024, 5, 17, 12, 30, tzinfo=dt.UTC),
    dt.date(2024, 5, 17),
    Point(1, 2),
    {"nested": [Point(3, 4), None, (5,)]},
    2**80,
    False,
    "12",
    " 7 ",
    "",
]


@pytest.mark.parametrize(
    "value", PICKLED, ids=[type(v).__name__ + str(i) for i, v in enumerate(PICKLED)]
)
@pytest.mark.parametrize("codec", ["pickle", "pickle+zlib>10"])
def test_any_picklable_value_round_trips(
    ferrite_server: EmbeddedServer, codec: str, value: Any
) -> None:
    cache = FerriteCache(ferrite_server.url, {"OPTIONS": CODECS[codec], "KEY_PREFIX": "p"})
    cache.set("key", value)
    assert cache.get("key") == value
    assert type(cache.get("key")) is type(value)
    asyncio.run(cache.aset("akey", value))
    assert asyncio.run(cache.aget("akey")) == value
    assert cache.get_many(["key", "akey"]) == {"key": value, "akey": value}


@pytest.mark.parametrize("compressor", ["zlib", "zstd", "lz4", f"{CUSTOM}.BZ2Compressor"])
def test_compress_min_size_decides_what_is_compressed(
    ferrite_server: EmbeddedServer, compressor: str
) -> None:
    need_extras(compressor)
    cache = FerriteCache(
        ferrite_server.url,
        {"OPTIONS": {"compressor": compressor, "compress_min_size": 100}, "KEY_PREFIX": "z"},
    )
    small, large = "s" * 20, "l" * 5000
    cache.set("small", small)
    cache.set("large", large)
    raw = redis.Redis(**ferrite_server.redis_kwargs())
    stored_small = raw.get(cache.make_key("small"))
    stored_large = raw.get(cache.make_key("large"))
    raw.close()
    assert stored_small == pickle.dumps(small, pickle.HIGHEST_PROTOCOL)  # under the minimum
    assert stored_large is not None
    assert len(stored_large) < len(large) // 10  # compressed on the server
    assert (cache.get("small"), cache.get("large")) == (small, large)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_key_prefix_version_and_key_function_shape_the_stored_key(
    ferrite_server: EmbeddedServer, mode: str
) -> None:
    raw = redis.Redis(**ferrite_server.redis_kwargs())
    raw.flushdb()
    plain = FerriteCache(ferrite_server.url, {"KEY_PREFIX": "site1", "VERSION": 4})
    other = FerriteCache(ferrite_server.url, {"KEY_PREFIX": "site2", "VERSION": 4})
    dotted = FerriteCache(
        ferrite_server.url, {"KEY_PREFIX": "kf", "KEY_FUNCTION": f"{CUSTOM}.reversed_key"}
    )
    function = FerriteCache(
        ferrite_server.url, {"KEY_FUNCTION": lambda key, prefix, version: f"fn-{key}"}
    )
    wrap = Sync if mode == "sync" else Async
    wrap(plain).set("name", "one")
    wrap(other).set("name", "two")
    wrap(dotted).set("abc", "three")
    wrap(function).set("xyz", "four")
    assert sorted(raw.keys()) == [b"cba|kf|1", b"fn-xyz", b"site1:4:name", b"site2:4:name"]
    assert wrap(plain).get("name") == "one"  # same key, another prefix: another value
    assert wrap(other).get("name") == "two"
    assert wrap(plain).get("name", version=1) is None
    assert wrap(dotted).get("abc") == "three"
    assert sorted(plain.iter_keys("*")) == ["name"]
    raw.close()


def test_a_subclass_that_makes_or_checks_keys_its_own_way_is_obeyed(
    ferrite_server: EmbeddedServer,
) -> None:
    """Overriding ``make_key`` or ``validate_key`` is Django's documented alternative to
    ``KEY_FUNCTION``: the backend's one-step key path must not bypass either."""

    class TenantCache(FerriteCache):
        def make_key(self, key: Any, version: Any = None) -> str:
            return f"tenant-7:{super().make_key(key, version)}"

    class StrictCache(FerriteCache):
        def validate_key(self, key: Any) -> None:
            if key.endswith(":forbidden"):
                raise ValueError(f"refused: {key}")

    raw = redis.Redis(**ferrite_server.redis_kwargs())
    raw.flushdb()
    tenant = TenantCache(ferrite_server.url, {"KEY_PREFIX": "p"})
    tenant.set("name", "one")
    assert raw.keys() == [b"tenant-7:p:1:name"]
    assert tenant.get("name") == "one"
    strict = StrictCache(ferrite_server.url, {})
    with pytest.raises(ValueError, match="refused: :1:forbidden"):
        strict.get("forbidden")
    # Patched after the cache was built (mock.patch), on the cache or on its class.
    plain = FerriteCache(ferrite_server.url, {})
    with mock.patch.object(plain, "make_key", lambda key, version=None: f"patched:{key}"):
        plain.set("k", "v")
    refuse = mock.patch.object(FerriteCache, "validate_key", side_effect=ValueError("checked"))
    with refuse, pytest.raises(ValueError, match="checked"):
        plain.get("k")
    assert raw.get("patched:k") is not None
    raw.close()


def test_async_methods_run_on_the_event_loop_not_in_a_thread(
    ferrite_server: EmbeddedServer,
) -> None:
    from tests.django.custom import ThreadRecordingSerializer

    cache = FerriteCache(
        ferrite_server.url, {"OPTIONS": {"serializer": f"{CUSTOM}.ThreadRecordingSerializer"}}
    )
    cache.set("k", "v")
    ThreadRecordingSerializer.threads.clear()

    async def main() -> list[Any]:
        return list(await asyncio.gather(*(cache.aget("k") for _ in range(20))))

    assert asyncio.run(main()) == ["v"] * 20
    # Under sync_to_async the values would be decoded on a worker thread.
    assert set(ThreadRecordingSerializer.threads) == {threading.get_ident()}


def test_lock_is_exclusive(cache: FerriteCache) -> None:
    first = cache.lock("resource", timeout=5)
    second = cache.lock("resource", timeout=5)
    assert first.acquire(blocking=False) is True
    assert second.acquire(blocking=False) is False
    first.release()
    assert second.acquire(blocking=False) is True
    second.release()


def test_get_client_is_a_redis_client_on_the_shared_pool(cache: FerriteCache) -> None:
    client = cache.get_client()
    cache.set("k", "v")
    assert client.exists(cache.make_key("k")) == 1
    assert client.connection_pool is get_manager().pool(cache.pool_alias)
    assert cache.get_client(write=True) is client
