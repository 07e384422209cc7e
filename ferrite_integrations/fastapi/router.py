"""``health_router``: ``app.include_router(health_router, prefix="/health")`` serves
``GET /health/ferrite`` (see ``health_endpoint``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from ferrite_integrations.fastapi.health import health_endpoint

__all__ = ["health_router"]

_EXAMPLE: dict[str, Any] = {
    "status": "up",
    "pools": {
        "default": {
            "status": "up",
            "breaker": "closed",
            "latency_ms": 0.12,
            "last_error": None,
            "in_use": 0,
            "idle": 2,
            "waiting": 0,
            "max": 20,
            "address": "127.0.0.1:6379",
            "url": "redis://127.0.0.1:6379/0",
        }
    },
}

health_router = APIRouter(tags=["health"])
health_router.add_api_route(
    "/ferrite",
    health_endpoint,
    methods=["GET"],
    summary="Ferrite pool health",
    description="Pings each pool's server: 200 when up or degraded, 503 when down.",
    responses={
        200: {
            "description": "Up or degraded",
            "content": {"application/json": {"example": _EXAMPLE}},
        },
        503: {"description": "Down, or no pool configured"},
    },
)
