"""Flask integration: the ``Ferrite`` extension (``ferrite.init_app(app)``), the
``flask ferrite`` CLI, the health endpoint and, with ``CACHE_TYPE =
"ferrite_integrations.flask.FerriteCache"``, a Flask-Caching backend on the same pools.

``FerriteCache`` is imported on first use, so this package works without Flask-Caching.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ferrite_integrations.flask.extension import Ferrite, FerriteState

if TYPE_CHECKING:
    from ferrite_integrations.flask.caching import FerriteCache

__all__ = ["Ferrite", "FerriteCache", "FerriteState"]


def __getattr__(name: str) -> Any:
    if name != "FerriteCache":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        from ferrite_integrations.flask.caching import FerriteCache
    except ModuleNotFoundError as error:
        if error.name is None or not error.name.startswith(("flask_caching", "cachelib")):
            raise
        raise ImportError(
            "FerriteCache needs Flask-Caching: pip install ferrite-integrations[flask-caching]"
        ) from error
    globals()["FerriteCache"] = FerriteCache
    return FerriteCache


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
