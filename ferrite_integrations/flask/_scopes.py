"""Request scopes opened lazily during a request (``ferrite.pipeline``) and closed at its
teardown.

Invariants:

- Scopes are closed in the reverse order they were opened, all of them at once, whichever
  extension instance opened them. A scope registers itself in a context variable and
  restores the previous value when it closes, so closing them out of order would leave a
  finished scope registered (the first teardown function to run closes every one).
- A scope belongs to the app context that opened it (``g``), which alone closes it. Copies
  of the same request (``copy_current_request_context`` in a worker thread) share the
  request object, not ``g``: they find the request's scopes on the request and join them
  (the scope's send lock orders their sends; after the request's end, a command deferred
  through a joined scope is sent at once).
- Every open scope is also in ``_open`` (weakly), so that the exit hook can send what a
  context that was pushed and never popped still holds.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import weakref
from typing import Any

from flask import g, has_app_context, has_request_context, request

from ferrite_integrations import RequestScope, current_scope, get_manager

__all__ = ["close_scopes", "flush_open_scopes", "open_scope", "shared_scope"]

logger = logging.getLogger("ferrite_integrations.flask")

_G_KEY = "_ferrite_request_scopes"
_REQUEST_KEY = "ferrite.request_scopes"
_open: weakref.WeakSet[RequestScope] = weakref.WeakSet()
_open_lock = threading.Lock()


def open_scope(alias: str) -> RequestScope:
    """The request scope of ``alias`` for the current app context, opened on first use
    (or the scope of the same request opened by the context this one was copied from).

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
    if scope is not None:
        return scope
    joined = shared_scope(alias)
    if joined is not None:
        return joined
    _refuse_async_view()
    scope = get_manager().request_scope(alias)
    scope.__enter__()
    scopes[alias] = scope
    with _open_lock:
        _open.add(scope)
    if has_request_context():
        request.environ.setdefault(_REQUEST_KEY, {})[alias] = scope
    return scope


def shared_scope(alias: str) -> RequestScope | None:
    """The scope of ``alias`` that another copy of the current request opened and that is
    not active in this context, or ``None``."""
    if not has_request_context():
        return None
    shared: dict[str, RequestScope] | None = request.environ.get(_REQUEST_KEY)
    scope = shared.get(alias) if shared else None
    if scope is None or current_scope(alias) is scope:
        return None
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
    if has_request_context():
        shared = request.environ.get(_REQUEST_KEY, {})
        for alias, scope in scopes.items():
            if shared.get(alias) is scope:
                del shared[alias]
    kind: Any = type(error) if error is not None else None
    trace = error.__traceback__ if error is not None else None
    for alias, scope in reversed(list(scopes.items())):
        with _open_lock:
            _open.discard(scope)
        try:
            scope.__exit__(kind, error, trace)
        except Exception:
            logger.exception("Could not send the request pipeline of Ferrite pool %r", alias)


def flush_open_scopes() -> int:
    """At process exit: end the scopes never closed (an app context pushed and never popped,
    as scripts and notebooks leave it), sending what they hold; failures of those commands
    are logged and counted by the scopes as at a request's end. Returns how many commands
    could not be sent at all (logged)."""
    with _open_lock:
        scopes = list(_open)
        _open.clear()
    lost = 0
    for scope in scopes:
        queued = scope.queued
        if queued:
            logger.warning(
                "Ferrite: sending %d deferred command(s) of pool %r at exit: their app "
                "context was pushed and never popped.",
                queued,
                scope.aliases[0],
            )
        try:
            scope.__exit__(None, None, None)
        except Exception as error:  # at exit: report, and go on with the other scopes
            logger.error(
                "Ferrite: could not end the request scope of pool %r at exit: %s: %s",
                scope.aliases[0],
                type(error).__name__,
                error,
            )
        if scope.queued:
            lost += scope.queued
            logger.error(
                "Ferrite: %d deferred command(s) of pool %r were never sent.",
                scope.queued,
                scope.aliases[0],
            )
    return lost
