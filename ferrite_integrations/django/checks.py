"""System checks: a bad ``CACHES`` entry for ``FerriteCache`` is reported by ``manage.py
check`` (and at startup) with the option named, before a request ever fails."""

from __future__ import annotations

from functools import partial
from typing import Any

from django.core.checks import Error, Tags, register

from ferrite_integrations.django.apps import entry_problem, ferrite_entries

__all__ = ["check_caches"]


@register(Tags.caches)
def check_caches(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """``ferrite.E001`` for every ``CACHES`` entry whose configuration is invalid, whatever
    is wrong with it: a check reports, it never crashes."""
    errors = []
    for name, (backend, entry) in ferrite_entries().items():
        problem = entry_problem(entry, partial(backend, entry.get("LOCATION"), dict(entry)))
        if problem is not None:
            errors.append(
                Error(
                    f"CACHES[{name!r}]: {problem}",
                    hint="Fix the LOCATION or OPTIONS of this cache (docs/django.md).",
                    obj=f"CACHES[{name!r}]",
                    id="ferrite.E001",
                )
            )
    return errors
