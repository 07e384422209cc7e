"""``CACHE_TYPE = "ferrite_integrations.flask.FerriteCache"`` through Flask-Caching's public
API: documented semantics, ``@cache.cached`` and ``@cache.memoize``, shared pools."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
import redis
from flask import Flask

pytest.importorskip("flask_caching")

from flask_caching import Cache

from ferrite_integrations import ConfigError, PoolConfig, get_manager
from ferrite_integrations.flask import Ferrite
from ferrite_integrations.testing import EmbeddedServer, FaultProxy
from tests.flask.conftest import AppFactory

BACKEND = "ferrite_integrations.flask.FerriteCache"
CacheFactory = Callable[..., tuple[Flask, Cache]]


@pytest.fixture
def make_cache(server: EmbeddedServer, client_name: str) -> CacheFactory:
    def make_cache(app: Flask | None = None, **config: Any) -> tuple[Flask, Cache]:
        app = app or Flask(__name__)
        settings: dict[str, Any] = {
            "CACHE_TYPE": BACKEND,
            "CACHE_FERRITE_URL": server.url,
            "CACHE_OPTIONS": {"client_name": client_name, "monitor": False},
        }
        settings.update(config)
        return app, Cache(app, config={k: v for k, v in settings.items() if v is not None})

    return make_cache


def test_get_set_add_delete_has(make_cache: CacheFactory, direct: redis.Redis) -> None:
    app, cache = make_cache()
    with app.app_context():
        assert cache.get("missing") is None
        assert cache.set("greeting", {"hello": ["world", 1]}) is True
        assert cache.get("greeting") == {"hello": ["world", 1]}
        assert cache.has("greeting") is True
        assert direct.exists("flask_cache_greeting") == 1  # Flask-Caching's default prefix
        assert cache.add("greeting", "other") is False
        assert cache.get("greeting") == {"hello": ["world", 1]}
        assert cache.add("new", "value") is True
        assert cache.delete("new") is True
        assert cache.delete("new") is False
        assert cache.has("new") is False
        cache.set("none", None)
        assert cache.has("none") is True
        assert cache.get("none") is None


def test_timeouts(make_cache: CacheFactory, direct: redis.Redis) -> None:
    app, cache = make_cache(CACHE_DEFAULT_TIMEOUT=120)
    with app.app_context():
        cache.set("default", 1)
        cache.set("seconds", 1, timeout=30)
        cache.set("delta", 1, timeout=dt.timedelta(minutes=2, seconds=30))
        cache.set("forever", 1, timeout=0)
        cache.set("expired", 1, timeout=-1)
        cache.add("added", 1, timeout=45)
        cache.set_many({"many": 1}, timeout=60)
    ttl = {
        key: direct.ttl(f"flask_cache_{key}")
        for key in ("default", "seconds", "delta", "forever", "expired", "added", "many")
    }
    assert 115 <= ttl["default"] <= 120
    assert 25 <= ttl["seconds"] <= 30
    assert 145 <= ttl["delta"] <= 150
    assert ttl["forever"] == -1  # never expires
    assert ttl["expired"] == -2  # gone
    assert 40 <= ttl["added"] <= 45
    assert 55 <= ttl["many"] <= 60


def test_inc_and_dec(make_cache: CacheFactory, direct: redis.Redis) -> None:
    app, cache = make_cache()
    with app.app_context():
        assert cache.cache.inc("counter") == 1  # a missing key starts at 0
        assert cache.cache.inc("counter", 5) == 6
        assert cache.cache.dec("counter", 2) == 4
        assert cache.cache.dec("below") == -1
        assert cache.get("counter") == 4  # stored as a plain number
        cache.set("number", 41)
        assert cache.cache.inc("number") == 42
    assert direct.get("flask_cache_counter") == b"4"


def test_many(make_cache: CacheFactory) -> None:
    app, cache = make_cache(CACHE_IGNORE_ERRORS=False)
    with app.app_context():
        assert sorted(cache.set_many({"a": 1, "b": "two", "c": [3]})) == ["a", "b", "c"]
        assert cache.get_many("a", "missing", "c") == [1, None, [3]]
        assert cache.get_dict("a", "b") == {"a": 1, "b": "two"}
        assert cache.delete_many("a", "missing") == ["a", "missing"]  # absent counts
        assert cache.get_many("a", "b") == [None, "two"]
        assert cache.set_many({}) == []
        assert cache.get_many() == []
        assert cache.delete_many() == []


def test_clear_deletes_only_this_caches_keys(make_cache: CacheFactory, direct: redis.Redis) -> None:
    app, cache = make_cache(CACHE_KEY_PREFIX="app[1]*")  # glob characters in the prefix
    direct.set("someone-else", "kept")
    direct.set("app1-lookalike", "kept")
    with app.app_context():
        cache.set_many({f"k{i}": i for i in range(1200)})
        assert cache.clear() is True
        assert cache.get("k1") is None
    assert direct.dbsize() == 2


def test_clear_without_a_prefix_flushes_the_database(
    make_cache: CacheFactory, direct: redis.Redis
) -> None:
    app, cache = make_cache(CACHE_KEY_PREFIX="")
    direct.set("anything", 1)
    with app.app_context():
        assert cache.clear() is True
    assert direct.dbsize() == 0


def test_callable_key_prefix(server: EmbeddedServer, direct: redis.Redis) -> None:
    from ferrite_integrations.flask import FerriteCache

    alias = get_manager().alias_for(PoolConfig.from_url(server.url), "test")
    cache = FerriteCache(
        alias, key_prefix=lambda: "tenant-7:", default_timeout=dt.timedelta(seconds=90)
    )
    assert cache.set("k", "v")
    assert direct.exists("tenant-7:k") == 1
    assert 85 <= direct.ttl("tenant-7:k") <= 90


def test_cached_views_and_memoize(make_cache: CacheFactory) -> None:
    app, cache = make_cache()
    calls: list[str] = []

    @app.get("/page")
    @cache.cached(timeout=60)
    def page() -> str:
        calls.append("page")
        return f"rendered {len(calls)}"

    @cache.memoize(timeout=60)
    def square(n: int) -> int:
        calls.append(f"square({n})")
        return n * n

    client = app.test_client()
    assert client.get("/page").text == "rendered 1"
    assert client.get("/page").text == "rendered 1"
    with app.app_context():
        assert [square(3), square(3), square(4)] == [9, 9, 16]
        cache.delete_memoized(square, 3)
        assert square(3) == 9
        cache.delete_memoized(square)
        assert square(4) == 16
    assert calls == ["page", "square(3)", "square(4)", "square(3)", "square(4)"]


def test_cached_none_with_cache_none(make_cache: CacheFactory) -> None:
    app, cache = make_cache()
    calls: list[int] = []

    @cache.memoize(timeout=60, cache_none=True)
    def nothing(n: int) -> None:
        calls.append(n)

    with app.app_context():
        nothing(1)
        nothing(1)
    assert calls == [1]


def test_shares_the_pool_of_the_ferrite_extension(
    create_app: AppFactory,
    ferrite: Ferrite,
    make_cache: CacheFactory,
    server: EmbeddedServer,
    client_name: str,
) -> None:
    app = create_app(
        FERRITE_POOLS={
            "cache": {
                "url": f"redis://127.0.0.1:{server.port}/0",
                "client_name": client_name,
                "monitor": False,
            }
        }
    )
    state = ferrite.state(app)
    # the same configuration in CACHE_* keys: the same pool
    _, by_config = make_cache(Flask("other"))
    assert by_config.cache.alias == state.aliases["default"]
    # no URL at all: the extension's default pool
    _, by_default = make_cache(app, CACHE_FERRITE_URL=None, CACHE_OPTIONS=None)
    assert by_default.cache.alias == state.aliases["default"]
    # a named pool of the extension, which must be on the app
    with pytest.raises(ConfigError, match=r"ferrite.init_app\(app\) before cache.init_app"):
        make_cache(
            Flask("fourth"), CACHE_FERRITE_URL=None, CACHE_OPTIONS=None, CACHE_FERRITE_POOL="cache"
        )
    _, named = make_cache(
        app, CACHE_FERRITE_URL=None, CACHE_OPTIONS=None, CACHE_FERRITE_POOL="cache"
    )
    assert named.cache.alias == state.aliases["cache"]
    assert get_manager().pool(named.cache.alias) is get_manager().pool(state.aliases["cache"])


def test_cache_writes_ride_the_request_pipeline(
    create_app: AppFactory,
    ferrite: Ferrite,
    make_cache: CacheFactory,
    proxy: FaultProxy,
    client_name: str,
) -> None:
    app = create_app(FERRITE_URL=proxy.url, FERRITE_MIN_IDLE=1, FERRITE_HEALTH_CHECK_INTERVAL=0)
    _, cache = make_cache(app, CACHE_FERRITE_URL=None, CACHE_OPTIONS=None)
    ferrite.warm(app)

    @app.get("/")
    def index() -> str:
        ferrite.pipeline.ping()  # the request uses the pipeline: cache writes join it
        cache.set("a", 1)
        cache.set_many({"b": 2, "c": 3})
        return str(cache.get_many("a", "b", "c"))

    before = proxy.requests_forwarded
    assert app.test_client().get("/").text == "[1, 2, 3]"
    assert proxy.requests_forwarded - before == 1


def test_redis_cache_keys_are_honoured_and_conflicts_refused(
    make_cache: CacheFactory, server: EmbeddedServer
) -> None:
    app, cache = make_cache(CACHE_FERRITE_URL=None, CACHE_REDIS_URL=server.url)
    with app.app_context():
        assert cache.set("k", 1)
    _, cache = make_cache(
        CACHE_FERRITE_URL=None,
        CACHE_REDIS_HOST="127.0.0.1",
        CACHE_REDIS_PORT=server.port,
        CACHE_REDIS_DB=3,
    )
    assert get_manager().config(cache.cache.alias).db == 3
    with pytest.raises(ConfigError, match=r"CACHE_REDIS_PORT.*given twice"):
        make_cache(CACHE_REDIS_PORT=1234)


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({"CACHE_OPTIONS": {"max_connections": 0}}, "CACHE_OPTIONS['max_connections']"),
        ({"CACHE_OPTIONS": {"pool_size": 3}}, "CACHE_OPTIONS['pool_size']"),
        ({"CACHE_OPTIONS": {"serializer": "yaml"}}, "CACHE_OPTIONS"),
        ({"CACHE_FERRITE_URL": "memcached://x"}, "CACHE_FERRITE_URL"),
        ({"CACHE_FERRITE_POOL": "default"}, "CACHE_FERRITE_POOL"),
        ({"CACHE_ARGS": ["x"]}, "CACHE_ARGS"),
    ],
)
def test_bad_cache_config_names_the_key(
    make_cache: CacheFactory, config: dict[str, Any], key: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        make_cache(**config)
    assert str(caught.value).startswith(key)


def test_ignore_errors_turns_an_outage_into_misses(
    make_cache: CacheFactory, ferrite_server_factory: Any, client_name: str
) -> None:
    server = ferrite_server_factory()
    app, cache = make_cache(
        CACHE_FERRITE_URL=server.url,
        CACHE_OPTIONS={
            "ignore_errors": True,
            "client_name": client_name,
            "monitor": False,
            "retries": 0,
        },
    )
    with app.app_context():
        assert cache.set("k", 1) is True
        server.stop()
        assert cache.get("k") is None
        assert cache.set("k", 2) is False
        assert cache.get_many("k", "j") == [None, None]
        assert cache.cache.inc("n") is None
    strict_app, strict = make_cache(CACHE_FERRITE_URL=server.url)
    with strict_app.app_context(), pytest.raises(redis.ConnectionError):
        strict.get("k")


def test_tls(make_cache: CacheFactory, ferrite_tls_server: EmbeddedServer) -> None:
    app, cache = make_cache(CACHE_FERRITE_URL=ferrite_tls_server.url)
    with app.app_context():
        assert cache.set("secure", "yes")
        assert cache.get("secure") == "yes"
    assert get_manager().config(cache.cache.alias).ssl is True


def test_the_package_imports_without_flask_caching() -> None:
    code = (
        "import sys; sys.modules['flask_caching'] = None\n"
        "import ferrite_integrations.flask as f\n"
        "print(f.Ferrite.__name__)\n"
        "try:\n"
        "    f.FerriteCache\n"
        "except ImportError as e:\n"
        "    print(e)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.splitlines() == [
        "Ferrite",
        "FerriteCache needs Flask-Caching: pip install ferrite-integrations[flask-caching]",
    ]


def _cache_url(app: Flask, cache: Cache) -> str:
    return get_manager().config(app.extensions["cache"][cache].alias).redacted_url


@pytest.mark.parametrize("order", ["cache first", "extension first"])
def test_without_a_cache_url_the_cache_uses_the_apps_server(
    create_app: AppFactory, server: EmbeddedServer, order: str
) -> None:
    app = Flask("order")
    app.config.update(FERRITE_URL=server.url, FERRITE_MONITOR=False, CACHE_TYPE=BACKEND)
    if order == "cache first":  # before: the FERRITE_URL environment variable
        cache, ferrite = Cache(app), Ferrite(app)
    else:
        ferrite, cache = Ferrite(app), Cache(app)
    assert app.extensions["cache"][cache].alias == ferrite.state(app).aliases["default"]
    with app.app_context():
        assert cache.set("k", 1) is True


def test_cache_keys_without_a_url_apply_on_top_of_the_apps_server(
    server: EmbeddedServer, direct: redis.Redis
) -> None:
    app = Flask("on-top")
    app.config.update(
        FERRITE_URL=server.url, FERRITE_MONITOR=False, FERRITE_MAX_CONNECTIONS=9, CACHE_TYPE=BACKEND
    )
    Ferrite(app)
    # before: the FERRITE_URL environment variable, or "given twice" blaming it
    by_options = Cache(app, config={"CACHE_TYPE": BACKEND, "CACHE_OPTIONS": {"min_idle": 1}})
    by_db = Cache(app, config={"CACHE_TYPE": BACKEND, "CACHE_REDIS_DB": 1})
    assert _cache_url(app, by_options) == server.url
    assert _cache_url(app, by_db) == server.url.replace("/0", "/1")
    db_config = get_manager().config(app.extensions["cache"][by_db].alias)
    assert db_config.max_connections == 9  # the rest of the app's configuration stays
    with app.app_context():
        assert by_db.set("in-db-1", 1)
    assert redis.Redis(**{**server.redis_kwargs(), "db": 1}).exists("flask_cache_in-db-1")


def test_the_only_extension_of_another_prefix_is_the_apps_server(
    server: EmbeddedServer,
) -> None:
    app = Flask("other-prefix")
    app.config.update(SESS_URL=server.url, SESS_MONITOR=False, CACHE_TYPE=BACKEND)
    sessions = Ferrite(app, config_prefix="SESS")
    cache = Cache(app)  # before: the FERRITE_URL environment variable
    assert app.extensions["cache"][cache].alias == sessions.state(app).aliases["default"]
    Ferrite(app, config_prefix="MORE")
    with pytest.raises(ConfigError, match="CACHE_FERRITE_URL"):
        Cache(app)


@pytest.mark.parametrize(
    ("app_config", "options", "key"),
    [
        ({"FERRITE_DECODE_RESPONSES": True}, None, "FERRITE_DECODE_RESPONSES"),
        ({}, {"decode_responses": True}, "CACHE_OPTIONS['decode_responses']"),
    ],
)
def test_a_pool_that_decodes_replies_is_refused_at_construction(
    server: EmbeddedServer, app_config: dict[str, Any], options: Any, key: str
) -> None:
    app = Flask("decoding")
    app.config.update(FERRITE_URL=server.url, FERRITE_MONITOR=False, **app_config)
    Ferrite(app)
    config: dict[str, Any] = {"CACHE_TYPE": BACKEND}
    if options:
        config["CACHE_OPTIONS"] = options
    with pytest.raises(ConfigError) as caught:  # before: UnicodeDecodeError on the first get
        Cache(app, config=config)
    assert str(caught.value).startswith(key)
    assert "decode_responses=False" in str(caught.value)


def test_a_negative_fraction_of_a_second_expires_at_once(
    make_cache: CacheFactory, direct: redis.Redis
) -> None:
    app, cache = make_cache()
    with app.app_context():
        cache.set("old", "v", timeout=-0.5)  # before: ceil(-0.5) == 0, never expired
        cache.set_many({"older": "v"}, timeout=dt.timedelta(seconds=-0.5))
        assert cache.add("oldest", "v", timeout=-0.5) is True
        assert cache.get("old") is None
        assert cache.get("older") is None
        assert cache.get("oldest") is None
        cache.set("soon", "v", timeout=0.5)
    assert 0 < direct.ttl("flask_cache_soon") <= 1
