"""Async pools under the event-loop owners users actually have: pytest-asyncio (a loop per
test), asgiref's async_to_sync (Django), and a loop running in another thread."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest
from asgiref.sync import async_to_sync

from ferrite_integrations import ConfigError, PoolManager
from ferrite_integrations.testing import EmbeddedServer
from ferrite_integrations.testing.plugin import ServerFactory
from tests.conftest import run_then_close

NAME = "loops-test"


@pytest.fixture(scope="module")
def shared_manager(ferrite_server: EmbeddedServer) -> Iterator[PoolManager]:
    manager = PoolManager(client_name=NAME)
    manager.configure("default", ferrite_server.url)
    yield manager
    manager.close()


@pytest.mark.asyncio
@pytest.mark.parametrize("round_number", range(3))
async def test_each_pytest_asyncio_loop_gets_a_working_pool(
    shared_manager: PoolManager, round_number: int
) -> None:
    client = shared_manager.async_client()
    await client.set("round", round_number)
    assert await client.get("round") == str(round_number).encode()
    assert len(shared_manager.stats("default")["async"]) == 1


def test_async_to_sync_calls_reuse_nothing_from_finished_loops(
    shared_manager: PoolManager, ferrite_server: EmbeddedServer
) -> None:
    async def bump() -> int:
        return int(await shared_manager.async_client().incr("bumps"))

    first = async_to_sync(bump)()
    second = async_to_sync(bump)()
    assert second == first + 1


def test_close_from_another_thread_closes_a_running_loops_pools(
    ferrite_server: EmbeddedServer,
) -> None:
    manager = PoolManager(client_name=NAME + "-threaded")
    manager.configure("default", ferrite_server.url, min_idle=2)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(manager.awarm(), loop).result(timeout=10)
        assert ferrite_server.connected_clients(NAME + "-threaded") == 2
        manager.close()
        deadline = time.monotonic() + 5
        while ferrite_server.connected_clients(NAME + "-threaded") and time.monotonic() < deadline:
            time.sleep(0.01)
        assert ferrite_server.connected_clients(NAME + "-threaded") == 0
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def test_an_alias_bound_again_on_a_running_loop_gives_the_new_servers_client(
    ferrite_server_factory: ServerFactory,
) -> None:
    first, second = ferrite_server_factory(), ferrite_server_factory()
    manager = PoolManager(client_name=NAME)
    manager.configure("default", first.url)

    async def body() -> list[bytes | None]:
        await manager.async_client().set("where", "first")
        manager.configure("default", second.url, replace=True)
        seen = [await manager.async_client().get("where")]
        manager.forget("default")
        with pytest.raises(ConfigError, match="default"):
            manager.async_client()
        manager.configure("default", first.url)
        seen.append(await manager.async_client().get("where"))
        return seen

    try:
        assert run_then_close(manager, body) == [None, b"first"]
    finally:
        manager.close()
