"""The application the uvicorn tests run in a real uvicorn process:
``uvicorn tests.fastapi.uvicorn_app:create_app --factory``. The server comes from
``FERRITE_URL``; the pool size and client name from ``TEST_*`` variables."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from fastapi import Depends, FastAPI

from ferrite_integrations.fastapi import (
    FerriteClient,
    RequestScope,
    ferrite_lifespan,
    get_client,
    health_router,
)

PlainClient = Depends(get_client(auto_pipeline=False))


def create_app() -> FastAPI:
    app = FastAPI(
        lifespan=ferrite_lifespan(
            max_connections=int(os.environ["TEST_MAX_CONNECTIONS"]),
            min_idle=int(os.environ["TEST_MIN_IDLE"]),
            client_name=os.environ["TEST_CLIENT_NAME"],
        )
    )
    app.include_router(health_router, prefix="/health")

    @app.get("/work/{number}")
    async def work(
        number: int, redis: FerriteClient, scope: RequestScope, plain: Any = PlainClient
    ) -> dict[str, Any]:
        scope.deferred.set(f"req:{number}", number)  # sent with the GET below
        # five commands at once on the plain client: each wants its own connection
        await asyncio.gather(*(plain.incr("hits") for _ in range(5)))
        echo = int(await redis.get(f"req:{number}") or -1)
        scope.deferred.set(f"done:{number}", number)  # still queued when the handler returns
        return {"pid": os.getpid(), "echo": echo}

    @app.post("/deferred/{number}")
    async def deferred(number: int, scope: RequestScope) -> int:
        scope.deferred.set(f"deferred:{number}", number)
        return number

    return app
