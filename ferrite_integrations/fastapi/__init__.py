"""FastAPI (and any ASGI app with a lifespan) integration.

    app = FastAPI(lifespan=ferrite_lifespan("redis://127.0.0.1:6379/0", min_idle=2))
    app.include_router(health_router, prefix="/health")

    @app.get("/items/{item_id}")
    async def read_item(item_id: int, redis: FerriteClient, scope: RequestScope): ...

``ferrite_lifespan`` and ``health_endpoint`` need only Starlette; ``FerriteClient``,
``get_client``, ``RequestScope``, ``request_scope`` and ``health_router`` need FastAPI.
Names are imported on first use, so a plain Starlette app never imports FastAPI.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ferrite_integrations.fastapi.dependencies import (
        FerriteClient,
        RequestScope,
        get_client,
        request_scope,
    )
    from ferrite_integrations.fastapi.health import health_endpoint
    from ferrite_integrations.fastapi.lifespan import FerriteLifespan, ferrite_lifespan
    from ferrite_integrations.fastapi.router import health_router
    from ferrite_integrations.fastapi.state import manager_for

__all__ = [
    "FerriteClient",
    "FerriteLifespan",
    "RequestScope",
    "ferrite_lifespan",
    "get_client",
    "health_endpoint",
    "health_router",
    "manager_for",
    "request_scope",
]

_HOMES = {
    "FerriteClient": "dependencies",
    "RequestScope": "dependencies",
    "get_client": "dependencies",
    "request_scope": "dependencies",
    "health_endpoint": "health",
    "FerriteLifespan": "lifespan",
    "ferrite_lifespan": "lifespan",
    "health_router": "router",
    "manager_for": "state",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
