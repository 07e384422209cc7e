"""The health view: JSON from ``manager.health()``; 200 when up or degraded, 503 when
down, when a ``FerriteCache`` in ``CACHES`` is misconfigured, or when no pool is configured.
Mount it with ``path("health/ferrite/", include("ferrite_integrations.django.urls"))``."""

from __future__ import annotations

from functools import partial
from typing import Any

from django.core.cache import caches
from django.http import JsonResponse

from ferrite_integrations import get_manager
from ferrite_integrations.django.apps import entry_problem, ferrite_entries

__all__ = ["health"]


def health(request: Any) -> JsonResponse:
    """``{"status", "pools"}`` as ``manager.health()``; with a misconfigured cache, also
    ``"misconfigured": {CACHES name: error}`` and status ``down`` (every request using that
    cache fails), the other pools still reported."""
    misconfigured = _misconfigured()  # first: building the caches registers their pools
    report = get_manager().health()
    if misconfigured:
        report.update(status="down", misconfigured=misconfigured)
    elif not report["pools"]:
        report.update(
            status="down",
            error="no Ferrite pool is configured: add a FerriteCache to CACHES (docs/django.md)",
        )
    response = JsonResponse(report, status=503 if report["status"] == "down" else 200)
    response["Cache-Control"] = "no-store"  # a cached "up" would outlive the server
    return response


def _misconfigured() -> dict[str, str]:
    """``CACHES`` name -> what is wrong, for every unusable ``FerriteCache`` entry."""
    problems = {}
    for name, (_, entry) in ferrite_entries().items():
        problem = entry_problem(entry, partial(caches.__getitem__, name))
        if problem is not None:
            problems[name] = problem
    return problems
