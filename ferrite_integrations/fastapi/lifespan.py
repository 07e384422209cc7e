"""``ferrite_lifespan``: the pools of an ASGI application, opened at startup and closed at
shutdown, as a Starlette lifespan (an async context manager that yields state).

Needs no FastAPI: ``Starlette(lifespan=ferrite_lifespan(...))`` works the same. Each worker
process (``uvicorn --workers``, gunicorn) runs its own lifespan, so each gets its own pools;
nothing is opened when the application object is merely built or imported.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, Unpack

from ferrite_integrations import ConfigError, PoolManager, PoolOptions, get_manager
from ferrite_integrations.fastapi.holds import (
    hold_aliases,
    hold_loop,
    release_aliases,
    release_loop,
)
from ferrite_integrations.fastapi.pools import PoolSpec, pool_specs
from ferrite_integrations.fastapi.startup import prepare_pools
from ferrite_integrations.fastapi.state import STATE_KEY

__all__ = ["AppLifespan", "FerriteLifespan", "LifespanArgument", "ferrite_lifespan"]

AppLifespan = Callable[[Any], AbstractAsyncContextManager[Mapping[str, Any] | None]]
"""An application's own lifespan: ``app -> async context manager`` yielding state or None."""

LifespanArgument = (
    AppLifespan
    | Callable[[Any], AsyncIterator[Mapping[str, Any]]]
    | Callable[[Any], AsyncIterator[None]]
)
"""What ``lifespan=`` accepts: an ``@asynccontextmanager`` function, or a plain async
generator function (wrapped with ``asynccontextmanager``)."""


def _as_lifespan(lifespan: Any) -> AppLifespan | None:
    if lifespan is None:
        return None
    if not callable(lifespan):
        raise ConfigError(
            "lifespan must be the application's own lifespan: a callable taking the app "
            "and returning an async context manager (an @asynccontextmanager function); "
            f"got {type(lifespan).__name__}.",
            option="lifespan",
        )
    _check_kind(lifespan)
    if inspect.isasyncgenfunction(lifespan):
        wrapped: AppLifespan = contextlib.asynccontextmanager(lifespan)
        return wrapped
    checked: AppLifespan = lifespan
    return checked


_FIX = (
    "Write it as `@contextlib.asynccontextmanager` over `async def lifespan(app): ...; "
    "yield {...}` (state to merge, or nothing)."
)


def _check_kind(lifespan: Any) -> None:
    """Refuse, when the app is built, a lifespan Starlette could only fail on at startup."""
    name = getattr(lifespan, "__qualname__", type(lifespan).__name__)
    target = inspect.unwrap(lifespan)
    problem = None
    if inspect.isgeneratorfunction(target):
        problem = (
            "is a @contextlib.contextmanager: a sync context manager"
            if target is not lifespan
            else "is a sync generator function (def with yield)"
        )
    elif inspect.iscoroutinefunction(target):
        problem = "is an async function that returns instead of yielding once"
    else:
        try:
            signature = inspect.signature(lifespan)
        except (TypeError, ValueError):  # no signature to check (a builtin): trust it
            return
        try:
            signature.bind(None)
        except TypeError:
            problem = f"does not take the application as its one argument: {name}{signature}"
    if problem is not None:
        raise ConfigError(
            f"lifespan={name} {problem}; a lifespan is called with the app and must "
            f"return an async context manager. {_FIX}",
            option="lifespan",
        )


class FerriteLifespan:
    """The lifespan ``ferrite_lifespan()`` returns; pass it as ``lifespan=``.

    Calling it with the application gives the async context manager Starlette enters at
    startup and leaves at shutdown. The same object may serve several applications or
    several runs (each ``TestClient`` block is a run).

    Attributes:
        specs: the pools it configures, validated.
        strict: whether an unreachable server fails startup.
    """

    def __init__(
        self,
        specs: list[PoolSpec],
        *,
        lifespan: AppLifespan | None,
        strict: bool,
        manager: PoolManager | None,
    ) -> None:
        self.specs = specs
        self.strict = strict
        self._lifespan = lifespan
        self._manager = manager

    @property
    def aliases(self) -> list[str]:
        """The pool aliases this lifespan configures, default pool first."""
        return [spec.alias for spec in self.specs]

    @property
    def manager(self) -> PoolManager:
        """The manager it configures: the one given, else the process-wide one."""
        return self._manager if self._manager is not None else get_manager()

    def __call__(self, app: Any) -> AbstractAsyncContextManager[dict[str, Any]]:
        return self._run(app)

    @contextlib.asynccontextmanager
    async def _run(self, app: Any) -> AsyncIterator[dict[str, Any]]:
        manager = self.manager
        loop = asyncio.get_running_loop()
        held = hold_aliases(manager, self.specs)
        hold_loop(manager, loop)
        try:
            await prepare_pools(manager, self.specs, strict=self.strict)
            manager.start_async_monitor()
            async with contextlib.AsyncExitStack() as stack:
                state: dict[str, Any] = {STATE_KEY: manager}
                if self._lifespan is not None:
                    own = _checked_context(self._lifespan(app))
                    state.update(_checked_state(await stack.enter_async_context(own)))
                yield state
        finally:
            # The application's own shutdown (above) still had the pools. Close only what
            # this lifespan opened: its aliases unless another running lifespan holds them,
            # and this loop's pools and monitor when no other lifespan runs on the loop,
            # else only the loop's pools whose aliases are now gone. The sync pools and
            # monitor thread (Django, Flask) and other loops stay open.
            try:
                release_aliases(manager, held)
            finally:
                if release_loop(manager, loop):
                    await manager.aclose_loop()
                else:
                    await manager.aclose_unbound()

    def __repr__(self) -> str:
        pools = ", ".join(f"{spec.alias}={spec.config.redacted_url}" for spec in self.specs)
        return f"<FerriteLifespan {pools} strict={self.strict}>"


def _checked_context(context: Any) -> AbstractAsyncContextManager[Mapping[str, Any] | None]:
    if not (hasattr(context, "__aenter__") and hasattr(context, "__aexit__")):
        raise ConfigError(
            "The application's lifespan must return an async context manager when called "
            f"with the app; it returned {type(context).__name__}. {_FIX}",
            option="lifespan",
        )
    checked: AbstractAsyncContextManager[Mapping[str, Any] | None] = context
    return checked


def _checked_state(state: Mapping[str, Any] | None) -> Mapping[str, Any]:
    if state is None:
        return {}
    if not isinstance(state, Mapping):
        raise ConfigError(
            "The application's lifespan must yield a dict of state (or nothing); it "
            f"yielded {type(state).__name__}.",
            option="lifespan",
        )
    if STATE_KEY in state:
        raise ConfigError(
            f"The application's lifespan yielded the state key {STATE_KEY!r}, which "
            "ferrite_lifespan uses for the pool manager; rename that key.",
            option="lifespan",
        )
    return state


def ferrite_lifespan(
    url: str | None = None,
    *,
    lifespan: LifespanArgument | None = None,
    pools: Mapping[str, Any] | None = None,
    strict: bool = True,
    manager: PoolManager | None = None,
    **options: Unpack[PoolOptions],
) -> FerriteLifespan:
    """The lifespan of an app that uses Ferrite: ``FastAPI(lifespan=ferrite_lifespan(url))``.

    At startup it configures the pools, checks that each server answers (one PING bounded
    by ``health_timeout``), opens ``min_idle`` connections, starts the health monitor, and
    yields ``{"ferrite": manager}`` (handlers reach it as ``request.state.ferrite``). At
    shutdown it closes only what it opened: it unconfigures its pool aliases (unless
    another running lifespan uses them), and closes its event loop's pools and monitor
    (while another lifespan runs on that loop, only the idle connections of the pools it
    no longer shares); Django's and Flask's pools, the sync monitor and other event loops
    are left alone. Options are validated now, so a mistake
    fails when the app is built.

    Args:
        url: the default pool's server, ``redis://``, ``rediss://`` or ``unix://``; when
            ``None``, the ``FERRITE_URL`` environment variable, else ``localhost:6379``.
        lifespan: the application's own lifespan, run inside this one: it starts after the
            pools are ready, stops before they close, and the state it yields is merged.
        pools: named pools, ``{name: {"url": ..., **options}}`` (or ``{name: url}``),
            reached with ``get_client(name)`` and ``request_scope(name)``. With ``pools``,
            the default pool exists only if ``url`` or options are given, or ``pools`` has
            a ``"default"`` entry.
        strict: ``True`` (default): fail startup with a ``ServerUnavailableError`` naming
            the server when it cannot be reached. ``False``: log a warning and start
            degraded; commands fail fast until the server answers, and the monitor
            reconnects and re-warms the pool.
        manager: the ``PoolManager`` to configure; default: the process-wide one, shared
            with Django and Flask in the same process. Apps running at the same time that
            configure one pool name differently need a manager each (``PoolManager()``).
        **options: pool options of the default pool (``max_connections``, ``min_idle``,
            ``socket_timeout``, ``health_check_interval``, TLS, ...; docs/configuration.md).

    Raises:
        ConfigError: an option, the pools argument or the lifespan is wrong (now); at
            startup, a pool name is configured differently in the manager.
    """
    if not isinstance(strict, bool):
        raise ConfigError(f"strict must be True or False; got {strict!r}.", option="strict")
    if manager is not None and not isinstance(manager, PoolManager):
        raise ConfigError(
            f"manager must be a PoolManager; got {type(manager).__name__}.", option="manager"
        )
    return FerriteLifespan(
        pool_specs(url, options, pools),
        lifespan=_as_lifespan(lifespan),
        strict=strict,
        manager=manager,
    )
