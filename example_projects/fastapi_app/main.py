"""A small FastAPI app on ferrite-integrations: a cached item store with view counters.

Run it (a server on FERRITE_URL, default localhost:6379):

    uvicorn example_projects.fastapi_app.main:app
    uvicorn example_projects.fastapi_app.main:create_app --factory --workers 2

Routes (none under /flask/ or /django/, so it can be mounted at / beside those apps):

    PUT  /items/{item_id}   {"name": ..., "price": ...}: stored for an hour (503 when the
                            write failed: the server is down)
    GET  /items/{item_id}   the item and its view count (the count's INCR rides along
                            with the item's GET: one round trip)
    GET  /items             the ten most viewed items
    GET  /pool              the default pool's stats
    GET  /health/ferrite    200 when the server is up, 503 when down

Mounted inside another ASGI app, this app's lifespan does not run: give the outer app
``lifespan=ferrite_lifespan(...)`` (or this app's ``router.lifespan_context``).
"""

from __future__ import annotations

import json
from typing import Any, cast

import redis.exceptions
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from ferrite_integrations import PipelineError, PoolManager
from ferrite_integrations.fastapi import (
    FerriteClient,
    RequestScope,
    ferrite_lifespan,
    health_router,
)

ITEM_TTL = 3600
POPULAR = "items:popular"


class Item(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    price: float = Field(ge=0)


def create_app(
    url: str | None = None, *, manager: PoolManager | None = None, **options: Any
) -> FastAPI:
    """The example app.

    Args:
        url: the server; default: ``FERRITE_URL``, else ``localhost:6379``.
        manager: the pool manager; default: the process-wide one.
        **options: pool options (default ``max_connections=20, min_idle=2``).
    """
    options = {"max_connections": 20, "min_idle": 2, **options}
    app = FastAPI(
        title="ferrite-integrations FastAPI example",
        lifespan=ferrite_lifespan(url, manager=manager, **options),
    )
    app.include_router(health_router, prefix="/health")
    app.add_exception_handler(PipelineError, _unavailable)
    app.add_exception_handler(redis.exceptions.ConnectionError, _unavailable)

    @app.put("/items/{item_id}")
    async def put_item(item_id: int, item: Item, scope: RequestScope) -> dict[str, Any]:
        scope.deferred.set(f"item:{item_id}", item.model_dump_json(), ex=ITEM_TTL)
        # The SET is sent after this return, before the response; if it fails, RequestScope
        # (raise_on_error=True) raises PipelineError and the client gets a 503, not this.
        return {"item_id": item_id, "stored": True}

    @app.get("/items/{item_id}")
    async def read_item(item_id: int, redis: FerriteClient, scope: RequestScope) -> dict[str, Any]:
        scope.deferred.incr(f"views:{item_id}")
        scope.deferred.zincrby(POPULAR, 1, str(item_id))
        # the queued INCR and ZINCRBY go out with this MGET: one round trip, and it sees them
        cached, views = await redis.mget(f"item:{item_id}", f"views:{item_id}")
        if cached is None:
            raise HTTPException(status_code=404, detail=f"no item {item_id}")
        return {"item_id": item_id, **json.loads(cached), "views": int(views or 0)}

    @app.get("/items")
    async def popular_items(redis: FerriteClient) -> list[dict[str, Any]]:
        ranked = cast(
            list[tuple[bytes, float]], await redis.zrevrange(POPULAR, 0, 9, withscores=True)
        )
        return [{"item_id": int(member), "views": int(score)} for member, score in ranked]

    @app.get("/pool")
    async def pool_stats(request: Request) -> dict[str, Any]:
        manager: PoolManager = request.state.ferrite
        stats: dict[str, Any] = manager.stats("default")
        return {"url": stats["url"], "async": stats["async"]}

    return app


async def _unavailable(request: Request, error: Exception) -> JSONResponse:
    # The server could not be reached (or a deferred write failed): say so, never "stored".
    return JSONResponse(
        {"detail": f"the item store is unavailable: {type(error).__name__}"}, status_code=503
    )


app = create_app()
