"""The health endpoint (``<PREFIX>_HEALTH_URL``, e.g. ``/health/ferrite``): a live report
of the app's pools as JSON, 200 when up or degraded, 503 when down."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flask import Response, jsonify

from ferrite_integrations import get_manager

if TYPE_CHECKING:
    from ferrite_integrations.flask.extension import FerriteState

__all__ = ["health_report", "make_health_view"]


def health_report(state: FerriteState) -> dict[str, Any]:
    """``{"status": "up"|"degraded"|"down", "pools": {name: report}}`` for one app's pools:
    each server pinged now (bounded by ``health_timeout``), never a password shown."""
    manager = get_manager()
    pools = {name: manager.health(alias)["pools"][alias] for name, alias in state.aliases.items()}
    statuses = {report["status"] for report in pools.values()}
    status = statuses.pop() if len(statuses) == 1 else "degraded"
    return {"status": status, "pools": pools}


def make_health_view(state: FerriteState) -> Callable[[], Response]:
    """The view function serving ``health_report(state)``."""

    def ferrite_health() -> Response:
        report = health_report(state)
        response = jsonify(report)
        response.status_code = 503 if report["status"] == "down" else 200
        response.headers["Cache-Control"] = "no-store"
        return response

    return ferrite_health
