"""What the running lifespans of a process hold in each ``PoolManager``: pool aliases and
event loops. A lifespan forgets an alias at shutdown only when no other running lifespan
holds it, and closes its event loop's pools and monitor only when it is the loop's last
running lifespan; it never touches what Django, Flask or other code configured.

Locking: ``_lock`` guards ``_aliases`` and ``_loops`` and is taken before the manager's own
lock (``configure``, ``forget``), never after it. It stays held while ``forget`` retires a
pool, so that no lifespan can start on an alias between its count reaching zero and its
removal from the manager.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Sequence

from ferrite_integrations import ConfigError, PoolConfig, PoolManager
from ferrite_integrations.fastapi.pools import PoolSpec

__all__ = ["Held", "hold_aliases", "hold_loop", "release_aliases", "release_loop"]

Held = list[tuple[str, PoolConfig]]
"""The ``(alias, configuration)`` pairs one lifespan configured and must forget."""

_lock = threading.Lock()
_aliases: weakref.WeakKeyDictionary[PoolManager, dict[tuple[str, PoolConfig], int]] = (
    weakref.WeakKeyDictionary()
)
_loops: weakref.WeakKeyDictionary[PoolManager, dict[asyncio.AbstractEventLoop, int]] = (
    weakref.WeakKeyDictionary()
)


def hold_aliases(manager: PoolManager, specs: Sequence[PoolSpec]) -> Held:
    """Configure every pool of ``specs`` on ``manager`` and count this lifespan as a holder
    of the aliases it configured (or that another running lifespan configured alike). An
    alias that other code configured alike is used, not held.

    Raises:
        ConfigError: an alias is configured differently; nothing is held then.
    """
    held: Held = []
    with _lock:
        counts = _aliases.setdefault(manager, {})
        try:
            for spec in specs:
                key = (spec.alias, spec.config)
                by_others = key not in counts and spec.alias in manager.aliases()
                _configure(manager, spec, counts)
                if not by_others:
                    counts[key] = counts.get(key, 0) + 1
                    held.append(key)
        except ConfigError:
            _release(manager, counts, held)
            raise
    return held


def _configure(
    manager: PoolManager, spec: PoolSpec, counts: dict[tuple[str, PoolConfig], int]
) -> None:
    try:
        manager.configure(spec.alias, spec.url, **spec.options)
    except ConfigError:
        if spec.alias not in manager.aliases():
            raise
        existing = manager.config(spec.alias)
        owner = (
            "by another application whose lifespan is still running"
            if (spec.alias, existing) in counts
            else "by other code (Django, Flask or manager.configure())"
        )
        raise ConfigError(
            f"Ferrite pool {spec.alias!r} is already configured in this PoolManager "
            f"{owner}, for {existing.redacted_url} with other options or another server; "
            f"this ferrite_lifespan() configures it for {spec.config.redacted_url}. To run "
            "applications with different servers or options in one process (tests, "
            "several apps), give each its own manager: ferrite_lifespan(..., "
            "manager=PoolManager()); or name the pool differently.",
            option="alias",
        ) from None


def release_aliases(manager: PoolManager, held: Held) -> None:
    """Drop this lifespan's hold on ``held``: an alias no running lifespan holds any more
    leaves the manager (``forget``), unless it was rebound meanwhile."""
    with _lock:
        _release(manager, _aliases.get(manager, {}), held)


def _release(manager: PoolManager, counts: dict[tuple[str, PoolConfig], int], held: Held) -> None:
    # Caller holds _lock.
    for key in held:
        left = counts.get(key, 0) - 1
        if left > 0:
            counts[key] = left
            continue
        counts.pop(key, None)
        alias, config = key
        if alias in manager.aliases() and manager.config(alias) == config:
            manager.forget(alias)


def hold_loop(manager: PoolManager, loop: asyncio.AbstractEventLoop) -> None:
    """Count one more running lifespan of ``manager`` on ``loop``."""
    with _lock:
        loops = _loops.setdefault(manager, {})
        loops[loop] = loops.get(loop, 0) + 1


def release_loop(manager: PoolManager, loop: asyncio.AbstractEventLoop) -> bool:
    """Count one running lifespan less on ``loop``; ``True`` when it was the last one, which
    then closes the loop's pools and monitor."""
    with _lock:
        loops = _loops.get(manager, {})
        left = loops.get(loop, 0) - 1
        if left > 0:
            loops[loop] = left
            return False
        loops.pop(loop, None)
        return True
