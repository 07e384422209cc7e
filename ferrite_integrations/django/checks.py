"""System checks: a bad ``CACHES`` entry for ``FerriteCache`` is reported by ``manage.py
check`` (and at startup) with the option named, before a request ever fails."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, register

from ferrite_integrations.django.cache import FerriteCache

__all__ = ["check_caches"]

BACKEND = "ferrite_integrations.django.FerriteCache"


@register(Tags.caches)
def check_caches(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """``ferrite.E001`` for every ``CACHES`` entry whose configuration is invalid."""
    errors = []
    for name, entry in getattr(settings, "CACHES", {}).items():
        if entry.get("BACKEND") != BACKEND:
            continue
        error = FerriteCache(entry.get("LOCATION"), entry).config_error
        if error is not None:
            errors.append(
                Error(
                    f"CACHES[{name!r}]: {error}",
                    hint="Fix the LOCATION or OPTIONS of this cache (docs/django.md).",
                    obj=f"CACHES[{name!r}]",
                    id="ferrite.E001",
                )
            )
    return errors
