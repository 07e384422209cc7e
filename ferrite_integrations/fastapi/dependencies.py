"""FastAPI dependencies: the auto-pipelining client and the per-request scope.

    async def view(redis: FerriteClient, scope: RequestScope): ...

``RequestScope`` runs with ``Depends(scope="function")``: its queue is sent when the path
operation function returns or raises, before the response is sent, so a client that reads
right after the response sees the request's writes.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Annotated, Any, Literal

import redis.asyncio
from fastapi import Depends
from starlette.requests import HTTPConnection

from ferrite_integrations import AsyncRequestScope, ConfigError
from ferrite_integrations.fastapi.pools import DEFAULT_ALIAS
from ferrite_integrations.fastapi.state import manager_for

__all__ = ["FerriteClient", "RequestScope", "get_client", "request_scope"]

if "scope" not in inspect.signature(Depends).parameters:  # pragma: no cover
    # Without Depends(scope="function") a scope could be sent after the response.
    raise ImportError(
        "ferrite_integrations.fastapi needs FastAPI 0.121 or newer (for Depends(scope=...)); "
        "pip install -U 'fastapi>=0.121'"
    )

OnError = Literal["flush", "discard"]

# HTTPConnection, not Request: FastAPI passes a WebSocket to it in WebSocket routes.
ClientDependency = Callable[[HTTPConnection], Coroutine[Any, Any, redis.asyncio.Redis]]
ScopeDependency = Callable[[HTTPConnection], AsyncIterator[AsyncRequestScope]]


def _check_alias(alias: Any) -> str:
    if not isinstance(alias, str) or not alias:
        raise ConfigError(f"A pool name must be a non-empty string; got {alias!r}.", option="alias")
    return alias


@functools.cache
def _client_dependency(alias: str, auto_pipeline: bool) -> ClientDependency:
    async def ferrite_client(connection: HTTPConnection) -> redis.asyncio.Redis:
        # async, so that FastAPI calls it on the event loop whose pool it returns
        return manager_for(connection, alias).async_client(alias, auto_pipeline=auto_pipeline)

    ferrite_client.__qualname__ = f"ferrite_client[{alias}]"
    return ferrite_client


def get_client(alias: str = DEFAULT_ALIAS, *, auto_pipeline: bool = True) -> ClientDependency:
    """The dependency giving the ``redis.asyncio.Redis`` client of a pool:
    ``cache: Annotated[redis.asyncio.Redis, Depends(get_client("cache"))]``.

    The client is shared by every request on the event loop (creating it costs nothing),
    and inside a request scope its commands are sent after the scope's queued writes.

    Args:
        alias: the pool's name in ``ferrite_lifespan(pools=...)``; default: the default pool.
        auto_pipeline: ``True`` (default): commands issued in the same event-loop tick, by
            this request or concurrent ones, share one pipeline on one connection.
            ``False``: a plain pooled client, one connection per command in flight.

    Raises:
        ConfigError: ``alias`` is not a string (here), or no such pool is configured (at
            the request).
    """
    return _client_dependency(_check_alias(alias), bool(auto_pipeline))


@functools.cache
def _scope_dependency(alias: str, raise_on_error: bool, on_error: OnError) -> ScopeDependency:
    async def ferrite_request_scope(
        connection: HTTPConnection,
    ) -> AsyncIterator[AsyncRequestScope]:
        manager = manager_for(connection, alias)
        scope = manager.arequest_scope(alias, raise_on_error=raise_on_error, on_error=on_error)
        _check_joined(scope, alias, raise_on_error, on_error)
        async with scope:  # leaving sends the queue, also when the handler raised
            yield scope

    ferrite_request_scope.__qualname__ = f"ferrite_request_scope[{alias}]"
    return ferrite_request_scope


def _check_joined(
    scope: AsyncRequestScope, alias: str, raise_on_error: bool, on_error: str
) -> None:
    """A second marker of the pool joins the request's scope: its options must match."""
    if (scope.raise_on_error, scope.on_error) == (raise_on_error, on_error):
        return
    raise ConfigError(
        f"Two request scopes of pool {alias!r} in one request ask for different options: "
        f"the scope already open has raise_on_error={scope.raise_on_error}, "
        f"on_error={scope.on_error!r} (from another request_scope()/RequestScope dependency "
        "of this request, or manager.arequest_scope()); this request_scope() asks for "
        f"raise_on_error={raise_on_error}, on_error={on_error!r}. A request has one scope "
        "per pool: give every request_scope() of the pool in a request the same options.",
        option="request_scope",
    )


def request_scope(
    alias: str = DEFAULT_ALIAS,
    *,
    raise_on_error: bool = True,
    on_error: OnError = "flush",
) -> Any:
    """The ``Depends`` marker of a pool's request scope, for ``Annotated``:
    ``scope: Annotated[AsyncRequestScope, request_scope("sessions")]``.

    Commands queued with ``scope.deferred`` go out with the next command of the pool's
    clients that needs a reply, in one round trip, and whatever is still queued goes out
    when the path operation function returns or raises, before the response is sent
    (``Depends(scope="function")``). One request has one scope per pool: every dependency
    that asks for it gets the same object, with or without FastAPI's dependency cache, and
    all of them must ask for the same options.

    A ``yield`` dependency of your own that takes a request scope must be declared with
    ``Depends(..., scope="function")`` too (FastAPI refuses a request-scoped dependency
    that depends on a function-scoped one). Background tasks run after the scope has
    ended: use the client there, not ``scope.deferred``.

    Args:
        alias: the pool's name; default: the default pool.
        raise_on_error: ``True`` (default): when deferred commands failed (the server is
            down, a wrong type, ...) and the handler itself returned, the scope raises
            ``PipelineError``, so the request answers 500 instead of reporting success;
            ``False``: the failures are only logged and counted (they always are).
        on_error: ``"flush"`` (default) sends the queue even when the handler raised;
            ``"discard"`` drops it.

    Raises:
        ConfigError: a wrong argument (here); at the request, another marker of the same
            pool in the request asks for other options.
    """
    if on_error not in ("flush", "discard"):
        raise ConfigError(
            f"on_error must be 'flush' or 'discard'; got {on_error!r}.", option="on_error"
        )
    dependency = _scope_dependency(_check_alias(alias), bool(raise_on_error), on_error)
    return Depends(dependency, scope="function")


FerriteClient = Annotated[redis.asyncio.Redis, Depends(get_client())]
"""The auto-pipelining ``redis.asyncio.Redis`` client of the default pool."""

RequestScope = Annotated[AsyncRequestScope, request_scope()]
"""The default pool's ``AsyncRequestScope`` for this request, with ``raise_on_error=True``:
a deferred command that failed makes the request fail (see ``request_scope``)."""
