"""Automatic pipelining and async request scopes against a real server: batching under
gather, each caller's own reply or error, bypassed commands, a cancellation storm with
batches in flight, and a server dying mid-batch."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from ferrite_integrations import PipelineError, PoolManager
from ferrite_integrations.testing import EmbeddedServer, FaultProxy
from tests.conftest import proxied_manager
from tests.conftest import run_then_close as run

NAME = "auto-pipeline-test"


@pytest.fixture
def manager(proxy: FaultProxy) -> Iterator[PoolManager]:
    yield from proxied_manager(proxy, NAME)


def test_commands_under_gather_go_out_as_one_pipeline_on_one_connection(
    manager: PoolManager, proxy: FaultProxy, server: EmbeddedServer
) -> None:
    async def body() -> list[int]:
        client = manager.async_client(auto_pipeline=True)
        await client.ping()
        before = proxy.requests_forwarded
        results = await asyncio.gather(*(client.incr("n") for _ in range(200)))
        assert proxy.requests_forwarded - before == 1
        assert server.connected_clients(NAME) == 1
        return sorted(results)

    assert run(manager, body) == list(range(1, 201))


def test_the_option_switches_it_on_too(server: EmbeddedServer) -> None:
    manager = PoolManager(client_name=NAME)
    manager.configure("default", server.url, auto_pipeline=True)

    async def body() -> Any:
        client = manager.async_client()
        await asyncio.gather(*(client.set(f"k{i}", i) for i in range(10)))
        return manager.stats("default")["async"][0]["pipelining"]

    pipelining = run(manager, body)
    assert pipelining["commands_per_round_trip"] == 10.0


def test_each_caller_gets_its_own_reply_or_its_own_error(
    manager: PoolManager, direct: redis.Redis
) -> None:
    direct.set("text", "not a number")

    async def body() -> list[Any]:
        client = manager.async_client(auto_pipeline=True)
        return await asyncio.gather(
            client.set("a", 1),
            client.incr("text"),
            client.get("a"),
            client.hgetall("missing"),
            return_exceptions=True,
        )

    ok, bad, value, empty = run(manager, body)
    assert ok is True
    assert isinstance(bad, redis.ResponseError)
    assert (value, empty) == (b"1", {})


def test_blocking_commands_pubsub_and_transactions_bypass_the_batcher(
    manager: PoolManager,
) -> None:
    async def body() -> None:
        client = manager.async_client(auto_pipeline=True)
        await client.rpush("jobs", "x")
        assert await client.blpop(["jobs"], timeout=1) in ([b"jobs", b"x"], (b"jobs", b"x"))
        async with client.pipeline(transaction=True) as tx:
            tx.incr("t").incr("t")
            assert await tx.execute() == [1, 2]
        pubsub = client.pubsub()
        await pubsub.subscribe("news")
        assert await client.publish("news", "hi") == 1
        message = None
        for _ in range(10):
            message = await pubsub.get_message(timeout=1, ignore_subscribe_messages=True)
            if message:
                break
        assert message is not None
        assert message["data"] == b"hi"
        await pubsub.aclose()

    run(manager, body)


def test_a_cancellation_storm_never_hands_a_caller_another_callers_reply(
    manager: PoolManager, proxy: FaultProxy
) -> None:
    proxy.delay(0.0005)  # keep batches in flight while callers are cancelled

    async def body() -> tuple[int, int]:
        client = manager.async_client(auto_pipeline=True)
        wrong = 0

        async def caller(index: int) -> None:
            nonlocal wrong
            await asyncio.sleep(random.random() * 0.02)
            reply = await client.echo(f"caller-{index}")
            if reply != f"caller-{index}".encode():
                wrong += 1

        tasks = [asyncio.create_task(caller(index)) for index in range(3000)]
        for _ in range(60):
            await asyncio.sleep(0.001)
            for task in random.sample(tasks, 30):
                task.cancel()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        cancelled = sum(isinstance(outcome, asyncio.CancelledError) for outcome in outcomes)
        others = [
            o for o in outcomes if o is not None and not isinstance(o, asyncio.CancelledError)
        ]
        assert others == []
        assert await client.echo("after") == b"after"
        stats = manager.stats("default")["async"][0]
        assert (stats["in_use"], stats["waiting"]) == (0, 0)
        return wrong, cancelled

    wrong, cancelled = run(manager, body)
    assert wrong == 0
    assert cancelled > 100


def test_a_server_dying_mid_batch_reports_no_success_and_resends_nothing(
    manager: PoolManager, proxy: FaultProxy, direct: redis.Redis
) -> None:
    async def body() -> list[Any]:
        client = manager.async_client(auto_pipeline=True)
        await client.ping()
        proxy.drop_reply_after(1, match=b"INCRBY")
        return await asyncio.gather(*(client.incr("c") for _ in range(20)), return_exceptions=True)

    outcomes = run(manager, body)
    assert all(isinstance(outcome, redis.ConnectionError) for outcome in outcomes)
    assert direct.get("c") in (None, b"20")  # the batch went out whole, at most once


def test_async_request_scope_mirrors_the_sync_one(
    manager: PoolManager, proxy: FaultProxy, direct: redis.Redis
) -> None:
    async def body() -> None:
        async with manager.arequest_scope() as scope:
            await scope.client.ping()
            before = proxy.requests_forwarded
            for i in range(10):
                scope.deferred.set(f"k{i}", i)
            hits = scope.deferred.incr("hits")
            assert proxy.requests_forwarded == before
            assert await scope.client.get("k9") == b"9"
            assert proxy.requests_forwarded - before == 1
            assert await hits.result() == 1
            assert await manager.async_client().get("k0") == b"0"
            scope.deferred.set("late", "yes")
            with pytest.raises(TypeError, match="BLPOP"):
                scope.deferred.blpop(["q"], timeout=1)
        assert direct.get("late") == b"yes"

    run(manager, body)


def test_async_scope_errors_and_exit_by_exception(
    manager: PoolManager, direct: redis.Redis
) -> None:
    direct.set("text", "x")

    async def failing_request() -> None:
        async with manager.arequest_scope(raise_on_error=True) as scope:
            scope.deferred.incr("text")
            scope.deferred.set("ok", 1)

    async def crashing_view() -> None:
        async with manager.arequest_scope() as scope:
            scope.deferred.set("written", "yes")
            raise RuntimeError("view failed")

    async def body() -> None:
        with pytest.raises(PipelineError) as caught:
            await failing_request()
        assert [name for name, _ in caught.value.failures] == ["INCRBY"]
        with pytest.raises(RuntimeError):
            await crashing_view()

    run(manager, body)
    assert direct.mget(["ok", "written"]) == [b"1", b"yes"]


def test_tasks_spawned_inside_a_scope_share_it_safely(
    manager: PoolManager, direct: redis.Redis
) -> None:
    async def body() -> None:
        async with manager.arequest_scope() as scope:

            async def worker(index: int) -> None:
                handle = scope.deferred.set(f"w{index}", index)
                assert await scope.client.get(f"w{index}") == str(index).encode()
                assert await handle.result() is True

            await asyncio.gather(*(worker(index) for index in range(50)))

    run(manager, body)
    assert direct.mget([f"w{i}" for i in range(50)]) == [str(i).encode() for i in range(50)]
