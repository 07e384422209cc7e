"""``PipelineMiddleware``: one request scope per request for every pool behind a
``FerriteCache``. Cache writes whose result Django does not return (``set``, ``set_many``,
``delete_many``) wait and go out with the next cache read, or when the response is ready,
in as few round trips as read-your-writes allows. Nothing is lost when the view raises:
the scope still sends its queue. A queued write that fails when the queue goes out at the
end fails the request (``PipelineError``, a 500), as the write itself would have failed it
without the middleware, unless every cache on that pool has ``ignore_exceptions``."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack, ExitStack
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.core.cache import caches

from ferrite_integrations import get_manager
from ferrite_integrations.django.cache import FerriteCache

__all__ = ["PipelineMiddleware"]

logger = logging.getLogger("ferrite_integrations.django")


def ferrite_pool_aliases() -> list[str]:
    """The pool aliases of every ``FerriteCache`` in ``CACHES`` (each once)."""
    aliases = []
    for name in caches.settings:
        cache = caches[name]
        if isinstance(cache, FerriteCache) and cache.pool_alias not in aliases:
            aliases.append(cache.pool_alias)
    return aliases


def pipelined_pools() -> list[tuple[str, bool]]:
    """``(pool alias, raise_on_error)`` for each pool behind a ``FerriteCache``: a failed
    deferred write fails the request unless every cache on the pool ignores exceptions. A
    misconfigured cache is left out (logged; ``manage.py check`` reports it), so that it
    cannot fail requests that never use it."""
    manager = get_manager()
    pools: dict[Any, tuple[str, bool]] = {}  # by configuration: one scope per pool
    for name in caches.settings:
        cache = caches[name]
        if not isinstance(cache, FerriteCache):
            continue
        if cache.config_error is not None:
            logger.warning(
                "PipelineMiddleware leaves out CACHES[%r], which is misconfigured: %s",
                name,
                cache.config_error,
            )
            continue
        config = manager.config(cache.pool_alias)
        alias, strict = pools.get(config, (cache.pool_alias, False))
        pools[config] = (alias, strict or not cache.ignores_exceptions)
    return list(pools.values())


class PipelineMiddleware:
    """Add ``"ferrite_integrations.django.PipelineMiddleware"`` to ``MIDDLEWARE``, before
    middleware that uses the cache (sessions, the per-site cache). Works under WSGI and
    ASGI (sync and async views)."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response
        self._pools: list[tuple[str, bool]] | None = None
        self._async = iscoroutinefunction(get_response)
        if self._async:
            markcoroutinefunction(self)

    def __call__(self, request: Any) -> Any:
        if self._async:
            return self._acall(request)
        manager = get_manager()
        pools = self._pipelined_pools()
        if len(pools) == 1:
            alias, raise_on_error = pools[0]
            with manager.request_scope(alias, raise_on_error=raise_on_error):
                return self.get_response(request)
        with ExitStack() as scopes:
            for alias, raise_on_error in pools:
                scopes.enter_context(manager.request_scope(alias, raise_on_error=raise_on_error))
            return self.get_response(request)

    async def _acall(self, request: Any) -> Any:
        manager = get_manager()
        async with AsyncExitStack() as scopes:
            for alias, raise_on_error in self._pipelined_pools():
                scope = manager.arequest_scope(alias, raise_on_error=raise_on_error)
                await scopes.enter_async_context(scope)
            response: Awaitable[Any] = self.get_response(request)
            return await response

    def _pipelined_pools(self) -> list[tuple[str, bool]]:
        if self._pools is None:
            self._pools = pipelined_pools()
        return self._pools
