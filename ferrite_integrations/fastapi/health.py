"""The health endpoint, for Starlette and FastAPI alike: JSON from ``manager.ahealth()``,
200 when the pools are up or degraded, 503 when down or when no pool is configured.

Starlette: ``Route("/health/ferrite", health_endpoint)``; FastAPI: ``health_router``.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from ferrite_integrations.fastapi.state import manager_for

__all__ = ["health_endpoint"]


async def health_endpoint(request: Request) -> JSONResponse:
    """Ping every configured pool's server (each at most ``health_timeout``) and report
    ``{"status": "up"|"degraded"|"down", "pools": {alias: {...}}}`` (no passwords)."""
    manager = manager_for(request)
    if not manager.aliases():
        return JSONResponse(
            {
                "status": "down",
                "pools": {},
                "error": "no Ferrite pool is configured: use lifespan=ferrite_lifespan(...)",
            },
            status_code=503,
        )
    report = await manager.ahealth()
    return JSONResponse(report, status_code=503 if report["status"] == "down" else 200)
