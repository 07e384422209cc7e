"""The health endpoint (``<PREFIX>_HEALTH_URL``, e.g. ``/health/ferrite``): a live report
of the app's pools as JSON, 200 when every pool is up or degraded, 503 when any is down
(the rule of ``flask ferrite status``: an app that needs a pool it cannot reach is not
healthy)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from flask import Response, jsonify

from ferrite_integrations import get_manager

if TYPE_CHECKING:
    from ferrite_integrations.flask.extension import FerriteState

__all__ = ["any_down", "health_report", "make_health_view"]


def health_report(state: FerriteState) -> dict[str, Any]:
    """``{"status": "up"|"degraded"|"down", "pools": {name: report}}`` for one app's pools:
    each server pinged now (bounded by ``health_timeout``), never a password shown. The
    overall status is ``up`` when every pool is up, ``down`` when every pool is down, else
    ``degraded``."""
    manager = get_manager()
    pools = {name: manager.health(alias)["pools"][alias] for name, alias in state.bound().items()}
    statuses = {report["status"] for report in pools.values()}
    status = statuses.pop() if len(statuses) == 1 else "degraded"
    return {"status": status, "pools": pools}


def any_down(pools: Mapping[str, Mapping[str, Any]]) -> bool:
    """Whether a pool of the report is down: the health endpoint answers 503 and ``flask
    ferrite status`` exits with 1."""
    return any(report["status"] == "down" for report in pools.values())


def make_health_view(state: FerriteState) -> Callable[[], Response]:
    """The view function serving ``health_report(state)``."""

    def ferrite_health() -> Response:
        report = health_report(state)
        response = jsonify(report)
        response.status_code = 503 if any_down(report["pools"]) else 200
        response.headers["Cache-Control"] = "no-store"
        return response

    return ferrite_health
