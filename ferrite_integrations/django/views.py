"""The health view: JSON from ``manager.health()``; 200 when up or degraded, 503 when
down. Mount it with ``path("health/ferrite/", include("ferrite_integrations.django.urls"))``."""

from __future__ import annotations

from typing import Any

from django.http import JsonResponse

from ferrite_integrations import get_manager

__all__ = ["health"]


def health(request: Any) -> JsonResponse:
    report = get_manager().health()
    return JsonResponse(report, status=503 if report["status"] == "down" else 200)
