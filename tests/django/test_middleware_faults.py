"""PipelineMiddleware when things go wrong or leave the request: a failed final flush, a
misconfigured cache, ignore_exceptions with the server away, optimistic locking, and tasks
or threads that outlive the request."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from django.core.cache import caches
from django.http import HttpResponse

from ferrite_integrations import PipelineError, get_manager
from ferrite_integrations.django import PipelineMiddleware
from ferrite_integrations.testing import EmbeddedServer, FaultProxy
from tests.conftest import wait_until
from tests.django.conftest import BACKEND


def only_cache(settings: Any, url: str, **options: Any) -> Any:
    """``CACHES`` with a single FerriteCache on ``url``; returns it."""
    settings.CACHES = {"default": {"BACKEND": BACKEND, "LOCATION": url, "OPTIONS": options}}
    return caches["default"]


def server_goes_away(proxy: FaultProxy) -> None:
    """The server is away by the time the request's queue goes out."""
    proxy.refuse()
    proxy.cut_all()


@pytest.fixture
def proxied_cache(settings: Any, proxy: FaultProxy) -> Iterator[Any]:
    """CACHES["default"] through a fault proxy, with short timeouts."""
    cache = only_cache(settings, proxy.url, socket_timeout=0.5, socket_connect_timeout=0.5)
    yield cache
    get_manager().forget(cache.pool_alias)


def test_a_final_flush_that_fails_fails_the_request(
    proxied_cache: Any, proxy: FaultProxy, direct: redis.Redis, rf: Any
) -> None:
    def view(request: Any) -> HttpResponse:
        proxied_cache.set("saved", "yes")  # deferred: the view is told it succeeded
        server_goes_away(proxy)
        return HttpResponse("saved")

    with pytest.raises(PipelineError, match=r"1 deferred command\(s\) failed: SET"):
        PipelineMiddleware(view)(rf.get("/"))
    assert direct.get(proxied_cache.make_key("saved")) is None


@pytest.mark.asyncio
async def test_a_final_async_flush_that_fails_fails_the_request(
    proxied_cache: Any, proxy: FaultProxy, async_rf: Any
) -> None:
    async def view(request: Any) -> HttpResponse:
        await proxied_cache.aset("saved", "yes")
        server_goes_away(proxy)
        return HttpResponse("saved")

    await proxied_cache.aget("warm-up")
    try:
        with pytest.raises(PipelineError, match="SET"):
            await PipelineMiddleware(view)(async_rf.get("/"))
    finally:
        await get_manager().aclose()


def test_with_ignore_exceptions_a_failed_flush_is_logged_not_raised(
    settings: Any, proxy: FaultProxy, rf: Any, caplog: pytest.LogCaptureFixture
) -> None:
    cache = only_cache(settings, proxy.url, ignore_exceptions=True, socket_connect_timeout=0.5)

    def view(request: Any) -> HttpResponse:
        cache.set("saved", "yes")
        server_goes_away(proxy)
        return HttpResponse("ok")

    try:
        with caplog.at_level(logging.WARNING):
            response = PipelineMiddleware(view)(rf.get("/"))
        assert response.status_code == 200
        assert "Deferred SET failed" in caplog.text
    finally:
        get_manager().forget(cache.pool_alias)


def test_with_ignore_exceptions_and_the_breaker_open_writes_are_not_queued(
    settings: Any, ferrite_server_factory: Any, rf: Any, caplog: pytest.LogCaptureFixture
) -> None:
    server = ferrite_server_factory()
    cache = only_cache(settings, server.url, ignore_exceptions=True, socket_connect_timeout=0.2)
    cache.get("warm-up")
    server.stop()
    for _ in range(6):  # opens the breaker
        cache.get("k")
    results: dict[str, Any] = {}

    def view(request: Any) -> HttpResponse:
        cache.set("a", 1)
        results["set_many"] = cache.set_many({"b": 2, "c": 3})
        cache.delete_many(["d"])
        return HttpResponse("ok")

    try:
        with caplog.at_level(logging.WARNING):
            for _ in range(5):
                assert PipelineMiddleware(view)(rf.get("/")).status_code == 200
        assert results["set_many"] == ["b", "c"]  # Django's list of keys that failed
        assert "Deferred" not in caplog.text  # nothing was queued, nothing failed later
        assert get_manager().stats(cache.pool_alias)["sync"]["pipelining"]["commands"] == 0
    finally:
        get_manager().forget(cache.pool_alias)


def test_a_misconfigured_cache_does_not_fail_requests_that_never_use_it(
    settings: Any, ferrite_server: EmbeddedServer, client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings.CACHES = {
        **settings.CACHES,
        "reports": {"BACKEND": BACKEND, "LOCATION": ferrite_server.url, "OPTIONS": {"nope": 1}},
    }
    with caplog.at_level(logging.WARNING, logger="ferrite_integrations.django"):
        assert client.get("/counter/").status_code == 200
    assert "leaves out CACHES['reports'], which is misconfigured" in caplog.text
    assert "'nope'" in caplog.text


def test_optimistic_locking_through_the_raw_client_sees_the_requests_writes(rf: Any) -> None:
    cache = caches["default"]
    seen: dict[str, Any] = {}

    def view(request: Any) -> HttpResponse:
        key = cache.make_key("counter")
        cache.set("counter", 10)  # queued
        with cache.get_client().pipeline() as pipe:
            pipe.watch(key)
            seen["read"] = int(pipe.get(key))
            pipe.multi()
            pipe.set(key, seen["read"] + 1)
            seen["exec"] = pipe.execute()
        return HttpResponse("ok")

    PipelineMiddleware(view)(rf.get("/"))
    assert seen == {"read": 10, "exec": [True]}
    assert cache.get("counter") == 11


@pytest.mark.asyncio
async def test_a_task_that_outlives_the_request_still_writes(
    async_rf: Any, ferrite_client: redis.Redis
) -> None:
    cache = caches["default"]
    tasks: list[asyncio.Task[None]] = []
    release = asyncio.Event()

    async def later() -> None:
        await release.wait()
        await cache.aset("from-the-task", "written")

    async def during_the_final_flush() -> None:
        await asyncio.sleep(0)  # runs while the scope's exit awaits its flush
        await cache.aset("during-the-flush", "written")

    async def view(request: Any) -> HttpResponse:
        await cache.aset("from-the-view", "written")
        tasks.append(asyncio.create_task(later()))
        tasks.append(asyncio.create_task(during_the_final_flush()))
        return HttpResponse("ok")

    await cache.aget("warm-up")
    try:
        await PipelineMiddleware(view)(async_rf.get("/"))
        release.set()
        await asyncio.gather(*tasks)
        for key in ("from-the-view", "from-the-task", "during-the-flush"):
            assert await cache.aget(key) == "written", key
    finally:
        await get_manager().aclose()


def test_a_thread_with_the_requests_context_that_outlives_it_still_writes(
    rf: Any, ferrite_client: redis.Redis
) -> None:
    cache = caches["default"]
    request_done = threading.Event()
    outcome: list[Any] = []

    def worker() -> None:
        request_done.wait(5)
        cache.set("from-the-thread", "written")
        outcome.append(cache.get("from-the-thread"))

    def view(request: Any) -> HttpResponse:
        context = contextvars.copy_context()
        threading.Thread(target=context.run, args=(worker,)).start()
        return HttpResponse("ok")

    PipelineMiddleware(view)(rf.get("/"))
    request_done.set()
    wait_until(lambda: outcome)
    assert outcome == ["written"]
    assert ferrite_client.get(cache.make_key("from-the-thread")) is not None


def test_a_failure_is_reported_even_when_the_final_flush_is_interrupted(
    proxied_cache: Any, proxy: FaultProxy, rf: Any, caplog: pytest.LogCaptureFixture
) -> None:
    class RequestTimeout(BaseException):
        """What gevent's Timeout or a signal-based request timeout raise."""

    manager = get_manager()

    def failed_deferred() -> int:
        return int(manager.stats(proxied_cache.pool_alias)["sync"]["pipelining"]["failed_deferred"])

    proxied_cache.get("warm-up")
    before = failed_deferred()
    patch = pytest.MonkeyPatch()

    def interrupt_the_final_flush(*args: Any, **kwargs: Any) -> Any:
        raise RequestTimeout

    def view(request: Any) -> HttpResponse:
        proxied_cache.set("a", 1)
        server_goes_away(proxy)
        with pytest.raises(redis.ConnectionError):
            proxied_cache.get("x")  # carries SET a, which fails with it
        proxy.pass_through()
        proxied_cache.set("b", 2)
        patch.setattr("ferrite_integrations.pipeline.run_batch", interrupt_the_final_flush)
        return HttpResponse("ok")

    try:
        with (
            caplog.at_level(logging.WARNING, logger="ferrite_integrations.pipeline"),
            pytest.raises(RequestTimeout),
        ):
            PipelineMiddleware(view)(rf.get("/"))
    finally:
        patch.undo()
    assert "Deferred SET failed" in caplog.text
    assert failed_deferred() - before == 1


def test_one_strict_cache_on_a_shared_pool_makes_its_failed_flush_fail_the_request(
    settings: Any, proxy: FaultProxy, rf: Any
) -> None:
    # Two caches on one pool through different aliases (LOCATION, and "pool" naming an
    # alias configured elsewhere): one scope serves both, and it must be strict if either
    # cache is, whichever comes first in CACHES.
    manager = get_manager()
    manager.configure("shared-main", proxy.url, socket_connect_timeout=0.5)
    settings.CACHES = {
        "lenient": {
            "BACKEND": BACKEND,
            "LOCATION": proxy.url,
            "OPTIONS": {"ignore_exceptions": True, "socket_connect_timeout": 0.5},
        },
        "strict": {"BACKEND": BACKEND, "OPTIONS": {"pool": "shared-main"}},
    }
    strict = caches["strict"]
    assert manager.config(caches["lenient"].pool_alias) == manager.config("shared-main")

    def view(request: Any) -> HttpResponse:
        strict.set("saved", "yes")
        server_goes_away(proxy)
        return HttpResponse("saved")

    try:
        with pytest.raises(PipelineError, match="SET"):
            PipelineMiddleware(view)(rf.get("/"))
    finally:
        manager.forget("shared-main")
        manager.forget(caches["lenient"].pool_alias)
