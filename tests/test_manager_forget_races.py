"""``PoolManager.forget`` while the monitor is in a round, racing with another ``forget``,
with ``start_monitor``, with ``close`` and with the async monitor: the forgotten pool's
connections close and stay closed, and no monitor outlives ``close()``."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest

from ferrite_integrations import AsyncFerritePool, PoolManager
from ferrite_integrations.testing import EmbeddedServer, FaultProxy
from tests.conftest import wait_until

FAST = {"health_check_interval": 0.05, "breaker_reset_timeout": 0.05}


@pytest.fixture
def manager() -> Iterator[PoolManager]:
    manager = PoolManager(client_name="forget-races")
    yield manager
    manager.close()


def _busy_monitor(server: EmbeddedServer, proxy: FaultProxy, manager: PoolManager) -> None:
    """Start the monitor and return while its round is warming the pool "slow" (its
    connections go through ``proxy``, which holds every chunk 0.03 s)."""
    manager.configure("fast", server.url, client_name="races-fast", min_idle=1, **FAST)
    manager.configure("slow", proxy.url, client_name="races-slow", min_idle=2, **FAST)
    proxy.delay(0.03)
    manager.start_monitor()
    # the health ping's probe connection, then the first one warm() opens
    wait_until(lambda: proxy.connections_accepted >= 2)


def _forget_in_background(manager: PoolManager, alias: str) -> threading.Thread:
    thread = threading.Thread(target=manager.forget, args=(alias,))
    thread.start()
    time.sleep(0.02)  # it is now waiting for the monitor's round
    return thread


def _stays_closed(server: EmbeddedServer, name: str) -> None:
    wait_until(lambda: server.connected_clients(name) == 0)
    time.sleep(0.3)  # longer than the rest of the round and several monitor intervals
    assert server.connected_clients(name) == 0


def test_two_forgets_during_a_round_both_wait_for_it(
    server: EmbeddedServer, proxy: FaultProxy, manager: PoolManager
) -> None:
    _busy_monitor(server, proxy, manager)
    first = _forget_in_background(manager, "fast")
    assert manager.forget("slow") is True
    first.join(5)
    assert manager.aliases() == []
    _stays_closed(server, "races-slow")


def test_forget_after_start_monitor_waits_for_every_running_round(
    server: EmbeddedServer, proxy: FaultProxy, manager: PoolManager
) -> None:
    _busy_monitor(server, proxy, manager)
    first = _forget_in_background(manager, "fast")
    manager.start_monitor()  # another app starting (Flask's prepare, Django's ready)
    assert manager.forget("slow") is True
    first.join(5)
    _stays_closed(server, "races-slow")


def test_close_during_forget_leaves_no_monitor_running(
    server: EmbeddedServer, proxy: FaultProxy, manager: PoolManager
) -> None:
    _busy_monitor(server, proxy, manager)
    manager.configure("other", server.url, client_name="races-other", min_idle=1, **FAST)
    forgetting = _forget_in_background(manager, "fast")
    manager.close()
    forgetting.join(5)
    _stays_closed(server, "races-other")  # no monitor re-opens its min_idle
    _stays_closed(server, "races-slow")


def test_the_async_monitor_survives_an_alias_forgotten_by_another_thread(
    server: EmbeddedServer, manager: PoolManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    manager.configure("kept", server.url, client_name="races-kept", min_idle=1, **FAST)
    manager.configure("leaving", server.url, client_name="races-leaving", **FAST)
    async_pool = manager.async_pool
    forgotten = threading.Event()

    def listing(alias: str = "default") -> AsyncFerritePool:
        # Another thread (a Flask app released, another loop's lifespan stopping) forgets
        # "leaving" while the monitor task is listing its pools.
        if not forgotten.is_set():
            forgotten.set()
            other = threading.Thread(target=manager.forget, args=("leaving",))
            other.start()
            other.join(0.2)
        return async_pool(alias)

    async def main() -> None:
        manager.start_async_monitor()
        monkeypatch.setattr(manager, "async_pool", listing)
        for _ in range(500):
            if manager.aliases() == ["kept"]:
                break
            await asyncio.sleep(0.01)
        monkeypatch.undo()
        await manager.awarm("kept")
        server.kill_clients()
        # the monitor still runs: it re-opens min_idle
        for _ in range(500):
            if server.connected_clients("races-kept") == 1:
                break
            await asyncio.sleep(0.01)
        assert server.connected_clients("races-kept") == 1
        await manager.aclose()

    asyncio.run(main())
