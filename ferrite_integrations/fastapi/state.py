"""Where a request finds its pool manager: the lifespan state (``request.state.ferrite``),
else the process-wide manager. Needs only Starlette."""

from __future__ import annotations

from starlette.requests import HTTPConnection

from ferrite_integrations import ConfigError, PoolManager, get_manager

__all__ = ["STATE_KEY", "manager_for"]

STATE_KEY = "ferrite"
"""The lifespan state key ``ferrite_lifespan`` yields its manager under."""


def manager_for(connection: HTTPConnection, alias: str | None = None) -> PoolManager:
    """The manager serving ``connection`` (a ``Request`` or ``WebSocket``).

    Args:
        connection: the current request.
        alias: when given, the manager must have this pool alias configured.

    Raises:
        ConfigError: ``alias`` is configured nowhere; the message says how to configure it.
    """
    manager = getattr(connection.state, STATE_KEY, None)
    from_lifespan = isinstance(manager, PoolManager)
    if not isinstance(manager, PoolManager):
        manager = get_manager()
    if alias is not None and alias not in manager.aliases():
        where = (
            "the application's ferrite_lifespan(...)"
            if from_lifespan
            else "no ferrite_lifespan ran for this application"
        )
        raise ConfigError(
            f"No Ferrite pool {alias!r} is configured ({where}; configured pools: "
            f"{manager.aliases() or 'none'}). Pass lifespan=ferrite_lifespan(url, ...) to "
            "FastAPI()/Starlette() (for a mounted app, to the outermost app: the lifespans "
            f"of mounted apps do not run), with pools={{{alias!r}: {{...}}}} for a named pool.",
            option="alias",
        )
    return manager
