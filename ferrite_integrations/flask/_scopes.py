"""Request scopes opened lazily during a request (``ferrite.pipeline``) and closed at its
teardown.

Invariant: scopes are closed in the reverse order they were opened, all of them at once,
whichever extension instance opened them. A scope registers itself in a context variable
and restores the previous value when it closes, so closing them out of order would leave
a finished scope registered (the first teardown function to run closes every one).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from flask import g, has_app_context

from ferrite_integrations import RequestScope, get_manager

__all__ = ["close_scopes", "open_scope"]

logger = logging.getLogger("ferrite_integrations.flask")

_G_KEY = "_ferrite_request_scopes"


def open_scope(alias: str) -> RequestScope:
    """The request scope of ``alias`` for the current app context, opened on first use.

    Raises:
        RuntimeError: outside an app context, or inside an async view.
    """
    if not has_app_context():
        raise RuntimeError(
            "ferrite.pipeline needs a request or an application context: use it in a view, "
            "a CLI command, or `with app.app_context():`."
        )
    scopes: dict[str, RequestScope] = g.setdefault(_G_KEY, {})
    scope = scopes.get(alias)
    if scope is None:
        _refuse_async_view()
        scope = get_manager().request_scope(alias)
        scope.__enter__()
        scopes[alias] = scope
    return scope


def _refuse_async_view() -> None:
    # An async view runs on its own event loop, in a copy of the request's context: a scope
    # opened there could not be closed from the teardown, which runs in the original one.
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise RuntimeError(
        "ferrite.pipeline is for sync views. In an async view use ferrite.async_client; "
        "with FERRITE_AUTO_PIPELINE = True its concurrent commands share round trips."
    )


def close_scopes(error: BaseException | None) -> None:
    """Send what every open scope of this app context has queued, newest scope first.
    Never raises: failures of deferred commands are logged (and counted) by the scopes;
    anything else is logged here, since a teardown function must not fail the response."""
    scopes: dict[str, RequestScope] | None = g.pop(_G_KEY, None)
    if not scopes:
        return
    kind: Any = type(error) if error is not None else None
    trace = error.__traceback__ if error is not None else None
    for alias, scope in reversed(list(scopes.items())):
        try:
            scope.__exit__(kind, error, trace)
        except Exception:
            logger.exception("Could not send the request pipeline of Ferrite pool %r", alias)
