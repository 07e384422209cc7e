"""The Django app around the backend, with pytest-django against real servers: requests
through Django's stack (test client, sync and async), the pipelining middleware, cached
sessions and cache middleware, shared pools, the app's startup, system checks, the health
view and the management command."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from django.apps import apps
from django.core.cache import caches
from django.core.management import call_command
from django.core.management.base import CommandError, SystemCheckError
from django.http import HttpResponse

from ferrite_integrations import get_manager
from ferrite_integrations.django import FerriteCache, PipelineMiddleware
from ferrite_integrations.django.checks import check_caches
from ferrite_integrations.django.views import health
from ferrite_integrations.testing import EmbeddedServer, FaultProxy
from tests.conftest import wait_until
from tests.django import urls
from tests.django.conftest import BACKEND, ferrite_caches


@pytest.fixture
def proxied(ferrite_server: EmbeddedServer, settings: Any) -> Iterator[FaultProxy]:
    with FaultProxy(ferrite_server.host, ferrite_server.port) as proxy:
        # pytest-django's settings fixture: Django resets its cache handler on the change,
        # and again when the test ends.
        settings.CACHES = {
            "default": {
                "BACKEND": BACKEND,
                "LOCATION": proxy.url,
                "OPTIONS": {"client_name": "django-mw", "min_idle": 1},
            }
        }
        yield proxy


# -- PipelineMiddleware -------------------------------------------------------------------


def test_middleware_sends_a_views_writes_with_its_next_read(
    proxied: FaultProxy, ferrite_server: EmbeddedServer, rf: Any
) -> None:
    cache = caches["default"]
    cache.get("warm-up")

    def view(request: Any) -> HttpResponse:
        for i in range(5):
            cache.set(f"k{i}", i)
        values = [cache.get(f"k{i}") for i in range(5)]
        cache.set_many({"m1": 1, "m2": 2})
        cache.delete_many(["k0"])
        return HttpResponse(json.dumps(values))

    before = proxied.requests_forwarded
    response = PipelineMiddleware(view)(rf.get("/"))
    assert json.loads(response.content) == [0, 1, 2, 3, 4]
    assert proxied.requests_forwarded - before == 6  # 5 reads carry the writes; 1 at the end
    raw = redis.Redis(**ferrite_server.redis_kwargs())
    assert raw.exists(cache.make_key("m1"), cache.make_key("m2")) == 2
    assert raw.exists(cache.make_key("k0")) == 0
    raw.close()


def test_middleware_loses_nothing_when_the_view_raises(proxied: FaultProxy, rf: Any) -> None:
    cache = caches["default"]

    def view(request: Any) -> HttpResponse:
        cache.set("written-before-the-error", "yes")
        raise RuntimeError("view failed")

    with pytest.raises(RuntimeError):
        PipelineMiddleware(view)(rf.get("/"))
    assert cache.get("written-before-the-error") == "yes"


@pytest.mark.asyncio
async def test_middleware_under_asgi_with_an_async_view(proxied: FaultProxy, async_rf: Any) -> None:
    cache = caches["default"]

    async def view(request: Any) -> HttpResponse:
        await cache.aset("a", 1)
        await cache.aset_many({"b": 2, "c": 3})
        return HttpResponse(str(await cache.aget("c")))

    await cache.aget("warm-up")  # this loop's pool: connect outside the measurement
    before = proxied.requests_forwarded
    response = await PipelineMiddleware(view)(async_rf.get("/"))
    trips = proxied.requests_forwarded - before
    assert response.content == b"3"
    assert trips == 1  # the three writes travel with the read
    assert await cache.aget_many(["a", "b", "c"]) == {"a": 1, "b": 2, "c": 3}
    await get_manager().aclose()


@pytest.mark.parametrize(("pipelined", "trips"), [(True, 1), (False, 4)])
def test_middleware_in_the_stack_pipelines_a_real_request(
    proxied: FaultProxy, client: Any, settings: Any, pipelined: bool, trips: int
) -> None:
    if not pipelined:
        settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if "Pipeline" not in m]
    caches["default"].get("warm-up")
    before = proxied.requests_forwarded
    assert client.get("/remember/").json() == {"first": 1}
    # Three writes and a read: with the middleware, the writes travel with the read.
    assert proxied.requests_forwarded - before == trips
    assert caches["default"].get_many(["second", "third", "fourth"]) == {
        "second": 2,
        "third": 3,
        "fourth": 4,
    }


# -- requests through Django's test client --------------------------------------------------


def test_hit_counter_through_the_test_client(client: Any, ferrite_client: redis.Redis) -> None:
    assert [client.get("/counter/").json()["hits"] for _ in range(3)] == [1, 2, 3]
    assert ferrite_client.get(caches["default"].make_key("hits")) == b"3"


@pytest.mark.asyncio
async def test_async_view_through_the_async_client(
    async_client: Any, ferrite_client: redis.Redis
) -> None:
    first = (await async_client.get("/async-counter/")).json()
    second = (await async_client.get("/async-counter/")).json()
    assert (first, second) == ({"hits": 1, "last": 1}, {"hits": 2, "last": 2})
    assert ferrite_client.get(caches["default"].make_key("async-hits")) == b"2"
    await get_manager().aclose()


def test_close_after_every_request_keeps_the_shared_pool(
    client: Any, settings: Any, ferrite_server: EmbeddedServer, ferrite_client: redis.Redis
) -> None:
    settings.CACHES = ferrite_caches(ferrite_server.url, client_name="churn-test")

    def connection_ids() -> set[str]:
        return {c["id"] for c in ferrite_server.client_list() if c["name"] == "churn-test"}

    client.get("/counter/")  # Django closes every cache when a request finishes
    first = connection_ids()
    for _ in range(5):
        client.get("/counter/")
    assert connection_ids() == first != set()
    assert client.get("/counter/").json()["hits"] == 7


def test_cache_aliases_with_one_configuration_share_one_pool(ferrite_client: redis.Redis) -> None:
    default, other = caches["default"], caches["other"]
    assert default.pool_alias == other.pool_alias
    assert default.get_client().connection_pool is other.get_client().connection_pool
    default.set("k", "from default")
    other.set("k", "from other")  # KEY_PREFIX keeps the data apart
    assert (default.get("k"), other.get("k")) == ("from default", "from other")
    assert sorted(ferrite_client.keys()) == [b":1:k", b"other:1:k"]


# -- sessions and cache middleware ----------------------------------------------------------


def test_cached_sessions_work(ferrite_server: EmbeddedServer) -> None:
    from django.contrib.sessions.backends.cache import SessionStore

    session = SessionStore()
    session["cart"] = [1, 2, 3]
    session.save()
    again = SessionStore(session_key=session.session_key)
    assert again["cart"] == [1, 2, 3]
    again.delete()
    assert SessionStore(session_key=session.session_key).get("cart") is None


def test_cached_sessions_survive_between_requests_and_live_in_the_cache(
    client: Any, ferrite_client: redis.Redis
) -> None:
    assert [client.get("/visits/").json()["visits"] for _ in range(3)] == [1, 2, 3]
    session_key = client.cookies["sessionid"].value
    stored = caches["default"].make_key(f"django.contrib.sessions.cache{session_key}")
    assert ferrite_client.exists(stored) == 1
    assert 0 < ferrite_client.ttl(stored) <= 1209600  # SESSION_COOKIE_AGE
    caches["default"].clear()
    assert client.get("/visits/").json()["visits"] == 1  # the session was in the cache only


@pytest.mark.django_db
def test_cached_db_sessions(client: Any, settings: Any, ferrite_client: redis.Redis) -> None:
    from django.contrib.sessions.models import Session

    settings.SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"
    assert [client.get("/visits/").json()["visits"] for _ in range(2)] == [1, 2]
    session_key = client.cookies["sessionid"].value
    assert Session.objects.filter(session_key=session_key).exists()
    stored = caches["default"].make_key(f"django.contrib.sessions.cached_db{session_key}")
    assert ferrite_client.exists(stored) == 1
    caches["default"].clear()
    assert client.get("/visits/").json()["visits"] == 3  # read back from the database
    assert ferrite_client.exists(stored) == 1  # and cached again


def test_per_view_cache_serves_the_cached_response(ferrite_server: EmbeddedServer, rf: Any) -> None:
    from django.views.decorators.cache import cache_page

    calls = []

    @cache_page(60)
    def view(request: Any) -> HttpResponse:
        calls.append(1)
        return HttpResponse(f"call {len(calls)}")

    first = view(rf.get("/cached-page/"))
    second = view(rf.get("/cached-page/"))
    assert first.content == second.content == b"call 1"
    assert len(calls) == 1


def test_per_view_cache_through_the_test_client(client: Any, ferrite_client: redis.Redis) -> None:
    urls.RENDERS.clear()
    first, second = client.get("/cached-page/"), client.get("/cached-page/")
    assert first.content == second.content == b"render 1"
    assert urls.RENDERS == ["/cached-page/"]
    assert any(b"views.decorators.cache.cache_page" in key for key in ferrite_client.scan_iter())
    assert client.get("/page/").content == b"render 2"  # the same view, uncached


def test_per_site_cache_middleware(client: Any, settings: Any, ferrite_client: redis.Redis) -> None:
    settings.MIDDLEWARE = [
        "ferrite_integrations.django.PipelineMiddleware",
        "django.middleware.cache.UpdateCacheMiddleware",
        "django.middleware.cache.FetchFromCacheMiddleware",
    ]
    settings.CACHE_MIDDLEWARE_SECONDS = 60
    settings.CACHE_MIDDLEWARE_KEY_PREFIX = "site"
    urls.RENDERS.clear()
    responses = [client.get("/page/") for _ in range(3)]
    assert [r.content for r in responses] == [b"render 1"] * 3
    assert urls.RENDERS == ["/page/"]
    assert "max-age=60" in responses[0]["Cache-Control"]
    assert any(b"views.decorators.cache.cache_page.site" in k for k in ferrite_client.scan_iter())


# -- the app: startup, system checks -------------------------------------------------------


def test_app_ready_prewarms_pools_and_starts_the_monitor(
    settings: Any, ferrite_server_factory: Any
) -> None:
    server = ferrite_server_factory()
    settings.CACHES = {
        "default": {
            "BACKEND": BACKEND,
            "LOCATION": server.url,
            "OPTIONS": {"client_name": "prewarm", "min_idle": 2, "health_check_interval": 0.1},
        }
    }
    try:
        apps.get_app_config("ferrite").ready()
        assert server.connected_clients("prewarm") == 2  # open before any request
        assert server.kill_clients() >= 2
        # The monitor notices the lost connections and tops the pool up to min_idle again.
        wait_until(lambda: server.connected_clients("prewarm") == 2)
    finally:
        get_manager().close()  # stops the monitor


def test_app_ready_with_the_server_down_logs_and_carries_on(
    settings: Any, ferrite_server_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    server = ferrite_server_factory()
    server.stop()
    settings.CACHES = {
        "default": {
            "BACKEND": BACKEND,
            "LOCATION": server.url,
            "OPTIONS": {"min_idle": 1, "socket_connect_timeout": 0.2},
        },
        "broken": {"BACKEND": BACKEND, "LOCATION": "redis://h", "OPTIONS": {"nope": 1}},
    }
    try:
        with caplog.at_level(logging.WARNING, logger="ferrite_integrations.django"):
            apps.get_app_config("ferrite").ready()
        assert "Ferrite pools were not prepared" in caplog.text
        assert "'nope'" in caplog.text
        del settings.CACHES["broken"]  # the settings fixture restores CACHES afterwards
        settings.CACHES = dict(settings.CACHES)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="ferrite_integrations.django"):
            apps.get_app_config("ferrite").ready()
        assert "Could not pre-warm Ferrite pool" in caplog.text
    finally:
        get_manager().close()


def test_system_checks_report_bad_caches_entries(settings: Any) -> None:
    settings.CACHES = {
        "default": {"BACKEND": BACKEND, "LOCATION": "redis://cache:6379/0"},
        "broken": {
            "BACKEND": BACKEND,
            "LOCATION": "redis://cache:6379/0",
            "OPTIONS": {"max_conections": 10},
        },
        "other": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    }
    errors = check_caches()
    assert [error.id for error in errors] == ["ferrite.E001"]
    assert "max_conections" in errors[0].msg
    assert "max_connections" in errors[0].msg
    assert errors[0].obj == "CACHES['broken']"
    # What a user runs: manage.py check reports it (Django's own cache checks, which build
    # every cache, must not crash on it first).
    with pytest.raises(SystemCheckError, match=r"ferrite\.E001.*Did you mean 'max_connections'"):
        call_command("check")


def test_system_checks_pass_a_good_configuration(ferrite_server: EmbeddedServer) -> None:
    out = io.StringIO()
    call_command("check", stdout=out)
    assert "System check identified no issues" in out.getvalue()


# -- health view ----------------------------------------------------------------------------


def test_health_url_through_the_test_client(client: Any) -> None:
    response = client.get("/health/ferrite/")
    assert response.status_code == 200
    report = response.json()
    assert report["pools"][caches["default"].pool_alias]["status"] == "up"
    assert "password" not in json.dumps(report)


def test_health_view_is_200_when_up_and_503_when_down(ferrite_server_factory: Any, rf: Any) -> None:
    server = ferrite_server_factory()
    manager = get_manager()
    FerriteCache(server.url, {"OPTIONS": {"client_name": "health-view", "health_timeout": 0.3}})
    up = health(rf.get("/"))
    assert up.status_code == 200
    server.stop()
    reports = json.loads(health(rf.get("/")).content)["pools"]
    down = [alias for alias, report in reports.items() if report["status"] == "down"]
    assert any(f":{server.port}/" in alias for alias in down)
    for alias in list(manager.aliases()):
        if f":{server.port}/" in alias:
            manager.forget(alias)  # leave the process-wide manager as we found it
    # A 503 needs every pool down: test_example_site.py sees it in a process of its own.


# -- management command ---------------------------------------------------------------------


def test_management_command(ferrite_server: EmbeddedServer) -> None:
    cache = FerriteCache(ferrite_server.url, {"OPTIONS": {}})
    out = io.StringIO()
    for action in ("status", "ping", "info", "stats"):
        call_command("ferrite", action, alias=cache.pool_alias, stdout=out)
    text = out.getvalue()
    assert f"{cache.pool_alias}: up" in text
    assert "PONG in" in text
    assert "connected_clients" in text
    assert '"alias"' in text


def test_management_command_without_alias_covers_every_ferrite_cache() -> None:
    out = io.StringIO()
    call_command("ferrite", "ping", stdout=out)
    lines = out.getvalue().splitlines()
    # "default" and "other" share one pool: it is pinged once.
    assert len(lines) == 1
    assert lines[0].startswith(f"{caches['default'].pool_alias}: PONG in")


def test_management_command_errors(settings: Any, ferrite_server_factory: Any) -> None:
    with pytest.raises(CommandError, match="No pool alias 'nowhere'"):
        call_command("ferrite", "status", alias="nowhere", stdout=io.StringIO())
    server = ferrite_server_factory()
    settings.CACHES = {
        "default": {
            "BACKEND": BACKEND,
            "LOCATION": server.url,
            "OPTIONS": {"socket_connect_timeout": 0.2, "client_name": "command-down"},
        }
    }
    alias = caches["default"].pool_alias
    server.stop()
    with pytest.raises(CommandError, match=f"{alias}: .*(refused|connect)"):
        call_command("ferrite", "ping", stdout=io.StringIO())
    out = io.StringIO()
    call_command("ferrite", "status", stdout=out)
    assert out.getvalue().startswith(f"{alias}: down")
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    with pytest.raises(CommandError, match="No FerriteCache in CACHES"):
        call_command("ferrite", "status", stdout=io.StringIO())
