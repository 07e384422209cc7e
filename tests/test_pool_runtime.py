"""The pools in the places real applications put them: forked workers, several event
loops, redis-py's higher-level APIs, TLS and unix sockets."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from ferrite_integrations import PoolManager
from ferrite_integrations.testing import EmbeddedServer
from ferrite_integrations.testing.plugin import ServerFactory

NAME = "runtime-test"


@pytest.fixture
def manager() -> Iterator[PoolManager]:
    manager = PoolManager(client_name=NAME)
    yield manager
    manager.close()


@pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")
def test_fork_child_builds_its_own_connections_and_the_parent_keeps_its_own(
    ferrite_server: EmbeddedServer, manager: PoolManager
) -> None:
    manager.configure("default", ferrite_server.url, min_idle=1)
    manager.warm()
    client = manager.client()
    parent_id = client.client_id()
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        status = 1
        try:
            child_id = manager.client().client_id()
            stats = manager.stats("default")["sync"]
            ok = child_id != parent_id and stats["closed"]["fork"] == 1
            os.write(write, f"{child_id} {ok}".encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write)
    _, status = os.waitpid(child, 0)
    reply = os.read(read, 100).decode()
    os.close(read)
    assert os.waitstatus_to_exitcode(status) == 0
    child_id, ok = reply.split()
    assert ok == "True", reply
    assert int(child_id) != parent_id
    assert client.client_id() == parent_id  # the parent's socket was never touched
    assert manager.stats("default")["sync"]["closed"]["fork"] == 0


def test_loops_one_after_another_each_get_a_pool_and_close_it_with_the_loop(
    ferrite_server: EmbeddedServer, manager: PoolManager
) -> None:
    manager.configure("default", ferrite_server.url)

    async def work(value: int) -> tuple[Any, int]:
        client = manager.async_client("default")
        await client.set("k", value)
        return await client.get("k"), id(manager.async_pool("default"))

    first = asyncio.run(work(1))
    assert ferrite_server.connected_clients(NAME) == 0  # closed when its loop shut down
    second = asyncio.run(work(2))
    assert (first[0], second[0]) == (b"1", b"2")
    assert first[1] != second[1]


def test_loops_in_two_threads_at_once_never_share_a_pool(
    ferrite_server: EmbeddedServer, manager: PoolManager
) -> None:
    manager.configure("default", ferrite_server.url)
    start = threading.Barrier(2)
    pools: list[int] = []
    errors: list[BaseException] = []

    async def work(name: str) -> None:
        start.wait()
        client = manager.async_client("default")
        for index in range(50):
            await client.set(f"{name}:{index}", index)
            assert await client.get(f"{name}:{index}") == str(index).encode()
        pools.append(id(manager.async_pool("default")))

    def run(name: str) -> None:
        try:
            asyncio.run(work(name))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(set(pools)) == 2


def test_async_pool_outside_a_loop_says_how_to_use_it(manager: PoolManager) -> None:
    manager.configure("default", "redis://127.0.0.1:1/0")
    with pytest.raises(Exception, match="running event loop"):
        manager.async_pool("default")


def test_redis_py_apis_work_unchanged_on_the_sync_pool(
    ferrite_server: EmbeddedServer, manager: PoolManager
) -> None:
    manager.configure("default", ferrite_server.url, max_connections=4, decode_responses=True)
    client = manager.client()
    pipe = client.pipeline()
    pipe.set("a", 1).incr("a").get("a")
    assert pipe.execute() == [True, 2, "2"]
    with client.pipeline(transaction=True) as tx:
        tx.incr("a").incr("a")
        assert tx.execute() == [3, 4]
    script = client.register_script("return redis.call('INCRBY', KEYS[1], ARGV[1])")
    assert script(keys=["a"], args=[10]) == 14
    with client.lock("resource", timeout=5):
        assert client.get("resource") is not None
    pubsub = client.pubsub()
    pubsub.subscribe("news")
    assert pubsub.get_message(timeout=1)["type"] == "subscribe"
    client.publish("news", "hello")
    message = pubsub.get_message(timeout=1)
    assert message is not None
    assert message["data"] == "hello"
    pubsub.close()
    stats = manager.stats("default")["sync"]
    assert stats["in_use"] == 0
    assert stats["total"] <= 4


def test_redis_py_apis_work_unchanged_on_the_async_pool(
    ferrite_server: EmbeddedServer, manager: PoolManager
) -> None:
    manager.configure("default", ferrite_server.url, max_connections=4, decode_responses=True)

    async def main() -> None:
        client = manager.async_client()
        pipe = client.pipeline()
        pipe.set("a", 1).incr("a").get("a")
        assert await pipe.execute() == [True, 2, "2"]
        async with client.lock("resource", timeout=5):
            assert await client.get("resource") is not None
        pubsub = client.pubsub()
        await pubsub.subscribe("news")
        await client.publish("news", "hello")
        seen = []
        for _ in range(10):
            message = await pubsub.get_message(timeout=1, ignore_subscribe_messages=True)
            if message:
                seen.append(message["data"])
                break
        assert seen == ["hello"]
        await pubsub.aclose()
        assert manager.stats("default")["async"][0]["in_use"] == 0

    asyncio.run(main())


def test_cancelled_waiters_never_lose_a_connection(
    ferrite_server: EmbeddedServer, manager: PoolManager
) -> None:
    manager.configure("default", ferrite_server.url, max_connections=2, acquire_timeout=5.0)

    async def main() -> None:
        client = manager.async_client()

        async def one(index: int) -> None:
            await client.set(f"k{index}", index)

        tasks = [asyncio.create_task(one(index)) for index in range(200)]
        await asyncio.sleep(0)
        for task in tasks[::3]:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        stats = manager.stats("default")["async"][0]
        assert (stats["in_use"], stats["waiting"]) == (0, 0)
        assert stats["total"] <= 2
        assert await client.ping() is True

    asyncio.run(main())


def test_tls_connections_are_reused_not_reopened(
    ferrite_tls_server: EmbeddedServer, manager: PoolManager
) -> None:
    manager.configure("default", ferrite_tls_server.url, max_connections=2)
    client = manager.client()
    for index in range(200):
        client.set("k", index)
        assert client.get("k") == str(index).encode()
    stats = manager.stats("default")["sync"]
    assert stats["created"] == 1
    assert stats["closed"]["broken"] == 0


def test_unix_socket_pool(ferrite_server_factory: ServerFactory, manager: PoolManager) -> None:
    server = ferrite_server_factory(unix_socket=True)
    manager.configure("default", server.unix_url, min_idle=2)
    manager.warm()
    assert server.connected_clients(NAME) == 2
    server.kill_clients()
    assert manager.client().ping() is True
    assert manager.stats("default")["sync"]["closed"]["broken"] == 1
