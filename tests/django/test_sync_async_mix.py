"""Sync and async cache calls mixed within one request through PipelineMiddleware (asgiref's
hops, or blocking calls from a coroutine): each sees the other's queued writes, and the last
write wins, as without the middleware."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from asgiref.sync import async_to_sync, sync_to_async
from django.core.cache import caches
from django.http import JsonResponse

from ferrite_integrations import get_manager
from ferrite_integrations.django import PipelineMiddleware


def stored(client: redis.Redis, key: str) -> Any:
    cache = caches["default"]
    raw = client.get(cache.make_key(key))
    return None if raw is None else cache._codec.loads(raw)


async def through_the_middleware(view: Any, async_rf: Any) -> Any:
    """One ASGI request through PipelineMiddleware, the loop's pools closed after it."""
    await caches["default"].aget("warm-up")  # this loop's pool: connected before the view
    try:
        return await PipelineMiddleware(view)(async_rf.get("/"))
    finally:
        await get_manager().aclose()


@pytest.mark.asyncio
async def test_under_asgi_sync_code_in_a_thread_sees_and_follows_queued_async_writes(
    async_rf: Any, ferrite_client: redis.Redis
) -> None:
    cache = caches["default"]

    async def view(request: Any) -> JsonResponse:
        await cache.aset("hop", "from aset")
        seen = await sync_to_async(cache.get)("hop")
        await cache.aset("order", "first")
        await sync_to_async(cache.set)("order", "second")
        await cache.aset_many({"gone": 1})
        await sync_to_async(cache.delete)("gone")
        return JsonResponse({"seen": seen})

    response = await through_the_middleware(view, async_rf)
    assert response.content == b'{"seen": "from aset"}'
    assert stored(ferrite_client, "order") == "second"
    assert stored(ferrite_client, "gone") is None


@pytest.mark.asyncio
async def test_under_asgi_blocking_calls_on_the_loop_see_and_follow_queued_async_writes(
    async_rf: Any, ferrite_client: redis.Redis
) -> None:
    cache = caches["default"]

    async def view(request: Any) -> JsonResponse:
        await cache.aset("hop", "from aset")
        seen = cache.get("hop")  # blocking, on the event loop
        await cache.aset("order", "first")
        cache.set("order", "second")
        await cache.aset("after", "async last")
        return JsonResponse({"seen": seen, "again": await cache.aget("order")})

    response = await through_the_middleware(view, async_rf)
    assert response.content == b'{"seen": "from aset", "again": "second"}'
    assert stored(ferrite_client, "order") == "second"
    assert stored(ferrite_client, "after") == "async last"


def test_under_wsgi_async_code_sees_and_follows_queued_sync_writes(
    rf: Any, ferrite_client: redis.Redis
) -> None:
    cache = caches["default"]
    seen: dict[str, Any] = {}

    def view(request: Any) -> JsonResponse:
        cache.set("hop", "from set")
        seen["hop"] = async_to_sync(cache.aget)("hop")
        cache.set("order", "first")
        async_to_sync(cache.aset)("order", "second")
        cache.set("then", "sync")
        async_to_sync(cache.adelete_many)(["then"])
        return JsonResponse({})

    PipelineMiddleware(view)(rf.get("/"))
    assert seen == {"hop": "from set"}
    assert stored(ferrite_client, "order") == "second"
    assert stored(ferrite_client, "then") is None
