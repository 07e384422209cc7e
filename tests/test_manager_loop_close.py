"""``PoolManager.aclose_loop``: an app that served on one event loop closes that loop's
async pools and monitor task, and nothing else: the sync pools, the sync monitor thread
and the pools and monitors of other event loops keep running."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

from ferrite_integrations import AsyncFerritePool, FerritePool, PoolManager
from ferrite_integrations.testing import EmbeddedServer
from tests.conftest import await_until

FAST = {"min_idle": 1, "health_check_interval": 0.05, "breaker_reset_timeout": 0.05}


@pytest.fixture
def other_loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="other-loop", daemon=True)
    thread.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


async def _open_async(manager: PoolManager) -> AsyncFerritePool:
    await manager.awarm("async")
    manager.start_async_monitor()
    return manager.async_pool("async")


def _open(pool: FerritePool | AsyncFerritePool) -> int:
    stats = pool.stats()
    return int(stats["idle"] + stats["in_use"])


def test_aclose_loop_closes_only_the_running_loops_pools_and_monitor(
    server: EmbeddedServer, other_loop: asyncio.AbstractEventLoop
) -> None:
    manager = PoolManager()
    manager.configure("sync", server.url, client_name="loop-close-sync", **FAST)
    manager.configure("async", server.url, client_name="loop-close-async", **FAST)
    manager.warm("sync")
    manager.start_monitor()
    sync_pool = manager.pool("sync")
    other = asyncio.run_coroutine_threadsafe(_open_async(manager), other_loop).result(5)

    async def main() -> None:
        mine = await _open_async(manager)
        await manager.aclose_loop()
        assert (_open(mine), _open(other), _open(sync_pool)) == (0, 1, 1)
        created = {pool: pool.stats()["created"] for pool in (mine, other, sync_pool)}
        server.kill_clients()
        # the other loop's monitor and the sync monitor re-open their min_idle ...
        await await_until(
            lambda: all(pool.stats()["created"] > created[pool] for pool in (other, sync_pool))
        )
        await asyncio.sleep(0.25)  # ... and this loop's monitor, stopped, does not
        assert mine.stats()["created"] == created[mine]
        assert await manager.async_client("async").ping()  # the pool reopens if used

    try:
        asyncio.run(main())
    finally:
        manager.close()


@pytest.mark.asyncio
async def test_aclose_loop_without_pools_on_the_loop_is_a_no_op() -> None:
    manager = PoolManager()
    await manager.aclose_loop()
    assert manager.aliases() == []
