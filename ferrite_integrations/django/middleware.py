"""``PipelineMiddleware``: one request scope per request for every pool behind a
``FerriteCache``. Cache writes whose result Django does not return (``set``, ``set_many``,
``delete_many``) wait and go out with the next cache read, or when the response is ready,
in as few round trips as read-your-writes allows. Nothing is lost when the view raises:
the scope still sends its queue."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack, ExitStack
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.core.cache import caches

from ferrite_integrations import get_manager
from ferrite_integrations.django.cache import FerriteCache

__all__ = ["PipelineMiddleware"]


def ferrite_pool_aliases() -> list[str]:
    """The pool aliases of every ``FerriteCache`` in ``CACHES`` (each once)."""
    aliases = []
    for name in caches.settings:
        cache = caches[name]
        if isinstance(cache, FerriteCache) and cache.pool_alias not in aliases:
            aliases.append(cache.pool_alias)
    return aliases


class PipelineMiddleware:
    """Add ``"ferrite_integrations.django.PipelineMiddleware"`` to ``MIDDLEWARE``, before
    middleware that uses the cache (sessions, the per-site cache). Works under WSGI and
    ASGI (sync and async views)."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response
        self._aliases: list[str] | None = None
        self._async = iscoroutinefunction(get_response)
        if self._async:
            markcoroutinefunction(self)

    def __call__(self, request: Any) -> Any:
        if self._async:
            return self._acall(request)
        manager = get_manager()
        aliases = self._pool_aliases()
        if len(aliases) == 1:
            with manager.request_scope(aliases[0]):
                return self.get_response(request)
        with ExitStack() as scopes:
            for alias in aliases:
                scopes.enter_context(manager.request_scope(alias))
            return self.get_response(request)

    async def _acall(self, request: Any) -> Any:
        manager = get_manager()
        async with AsyncExitStack() as scopes:
            for alias in self._pool_aliases():
                await scopes.enter_async_context(manager.arequest_scope(alias))
            response: Awaitable[Any] = self.get_response(request)
            return await response

    def _pool_aliases(self) -> list[str]:
        if self._aliases is None:
            self._aliases = ferrite_pool_aliases()
        return self._aliases
