"""The Django app around the backend: the pipelining middleware (sync and async), system
checks, the health view and the management command, against real servers."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from django.core.cache import caches
from django.core.management import call_command
from django.http import HttpResponse
from django.test import RequestFactory, override_settings

from ferrite_integrations import get_manager
from ferrite_integrations.django import FerriteCache, PipelineMiddleware
from ferrite_integrations.django.checks import check_caches
from ferrite_integrations.django.views import health
from ferrite_integrations.testing import EmbeddedServer, FaultProxy


@pytest.fixture
def proxied(ferrite_server: EmbeddedServer) -> Iterator[tuple[FaultProxy, dict[str, Any]]]:
    with FaultProxy(ferrite_server.host, ferrite_server.port) as proxy:
        setting = {
            "default": {
                "BACKEND": "ferrite_integrations.django.FerriteCache",
                "LOCATION": proxy.url,
                "OPTIONS": {"client_name": "django-mw", "min_idle": 1},
            }
        }
        with override_settings(CACHES=setting):  # Django resets its cache handler for us
            yield proxy, setting


def test_middleware_sends_a_views_writes_with_its_next_read(
    proxied: tuple[FaultProxy, dict[str, Any]], ferrite_server: EmbeddedServer
) -> None:
    proxy, _ = proxied
    cache = caches["default"]
    cache.get("warm-up")

    def view(request: Any) -> HttpResponse:
        for i in range(5):
            cache.set(f"k{i}", i)
        values = [cache.get(f"k{i}") for i in range(5)]
        cache.set_many({"m1": 1, "m2": 2})
        cache.delete_many(["k0"])
        return HttpResponse(json.dumps(values))

    before = proxy.requests_forwarded
    response = PipelineMiddleware(view)(RequestFactory().get("/"))
    assert json.loads(response.content) == [0, 1, 2, 3, 4]
    assert proxy.requests_forwarded - before == 6  # 5 reads carry the writes; 1 at the end
    raw = redis.Redis(**ferrite_server.redis_kwargs())
    assert raw.exists(cache.make_key("m1"), cache.make_key("m2")) == 2
    assert raw.exists(cache.make_key("k0")) == 0
    raw.close()


def test_middleware_loses_nothing_when_the_view_raises(
    proxied: tuple[FaultProxy, dict[str, Any]],
) -> None:
    cache = caches["default"]

    def view(request: Any) -> HttpResponse:
        cache.set("written-before-the-error", "yes")
        raise RuntimeError("view failed")

    with pytest.raises(RuntimeError):
        PipelineMiddleware(view)(RequestFactory().get("/"))
    assert cache.get("written-before-the-error") == "yes"


def test_middleware_under_asgi_with_an_async_view(
    proxied: tuple[FaultProxy, dict[str, Any]],
) -> None:
    proxy, _ = proxied
    cache = caches["default"]

    async def view(request: Any) -> HttpResponse:
        await cache.aset("a", 1)
        await cache.aset_many({"b": 2, "c": 3})
        return HttpResponse(str(await cache.aget("c")))

    async def main() -> tuple[bytes, int]:
        await cache.aget("warm-up")  # this loop's pool: connect outside the measurement
        before = proxy.requests_forwarded
        middleware = PipelineMiddleware(view)
        response = await middleware(RequestFactory().get("/"))
        trips = proxy.requests_forwarded - before
        await get_manager().aclose()
        return bytes(response.content), trips

    content, trips = asyncio.run(main())
    assert content == b"3"
    assert trips == 1  # the three writes travel with the read
    assert cache.get_many(["a", "b", "c"]) == {"a": 1, "b": 2, "c": 3}


def test_system_checks_report_bad_caches_entries() -> None:
    bad = {
        "broken": {
            "BACKEND": "ferrite_integrations.django.FerriteCache",
            "LOCATION": "redis://cache:6379/0",
            "OPTIONS": {"max_conections": 10},
        },
        "other": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    }
    with override_settings(CACHES=bad):
        errors = check_caches()
    assert [error.id for error in errors] == ["ferrite.E001"]
    assert "max_conections" in errors[0].msg
    assert "max_connections" in errors[0].msg
    assert errors[0].obj == "CACHES['broken']"


def test_health_view_is_200_when_up_and_503_when_down(ferrite_server_factory: Any) -> None:
    server = ferrite_server_factory()
    manager = get_manager()
    FerriteCache(server.url, {"OPTIONS": {"client_name": "health-view", "health_timeout": 0.3}})
    up = health(RequestFactory().get("/"))
    assert up.status_code == 200
    server.stop()
    reports = json.loads(health(RequestFactory().get("/")).content)["pools"]
    down = [alias for alias, report in reports.items() if report["status"] == "down"]
    assert any(f":{server.port}/" in alias for alias in down)
    for alias in list(manager.aliases()):
        if f":{server.port}/" in alias:
            manager._configs.pop(alias)  # leave the process-wide manager as we found it


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


def test_cached_sessions_work(ferrite_server: EmbeddedServer) -> None:
    from django.contrib.sessions.backends.cache import SessionStore

    session = SessionStore()
    session["cart"] = [1, 2, 3]
    session.save()
    again = SessionStore(session_key=session.session_key)
    assert again["cart"] == [1, 2, 3]
    again.delete()
    assert SessionStore(session_key=session.session_key).get("cart") is None


def test_per_view_cache_serves_the_cached_response(ferrite_server: EmbeddedServer) -> None:
    from django.views.decorators.cache import cache_page

    calls = []

    @cache_page(60)
    def view(request: Any) -> HttpResponse:
        calls.append(1)
        return HttpResponse(f"call {len(calls)}")

    first = view(RequestFactory().get("/cached-page/"))
    second = view(RequestFactory().get("/cached-page/"))
    assert first.content == second.content == b"call 1"
    assert len(calls) == 1
