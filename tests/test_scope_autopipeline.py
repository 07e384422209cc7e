"""Async request scopes on an auto-pipelined pool: a scope's queue and the read that carries
it go to the pool's ``AutoPipeliner`` as one group, so concurrent requests share round
trips. Against a real server: batching across scopes, groups kept adjacent and in order,
read-your-writes, errors on their own handles, the flush at exit, cancellation mid-flight,
a reply lost mid-batch (nothing applied twice), and the paths that still bypass the
pipeliner (transactions, blocking reads)."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from ferrite_integrations import AsyncRequestScope, PipelineError, PoolManager
from ferrite_integrations.testing import EmbeddedServer, FaultProxy
from tests.conftest import proxied_manager
from tests.conftest import run_then_close as run

NAME = "scope-auto-pipeline"
TASKS = 50


@pytest.fixture
def manager(proxy: FaultProxy) -> Iterator[PoolManager]:
    yield from proxied_manager(proxy, NAME)


def pipelining(manager: PoolManager) -> dict[str, Any]:
    stats: dict[str, Any] = manager.stats("default")["async"][0]["pipelining"]
    return stats


def test_concurrent_scopes_share_round_trips_and_each_reads_its_own_writes(
    manager: PoolManager, proxy: FaultProxy, server: EmbeddedServer, direct: redis.Redis
) -> None:
    async def body() -> list[tuple[Any, ...]]:
        client = manager.async_client(auto_pipeline=True)
        await client.ping()
        before, counted = proxy.requests_forwarded, pipelining(manager)

        async def request(index: int) -> tuple[Any, ...]:
            async with manager.arequest_scope() as scope:
                for part in range(3):
                    scope.deferred.rpush(f"list:{index}", f"{index}:{part}")
                hits = scope.deferred.incr("hits")
                read = await client.lrange(f"list:{index}", 0, -1)  # carries the queue
                assert scope.queued == 0
                return read, await hits.result(), scope.round_trips, scope.commands_sent

        results = await asyncio.gather(*(request(index) for index in range(TASKS)))
        round_trips = proxy.requests_forwarded - before
        assert round_trips <= 3, round_trips  # not one per request: the groups were merged
        assert server.connected_clients(NAME) == 1
        after = pipelining(manager)
        assert after["commands"] - counted["commands"] == TASKS * 5  # counted once each
        assert after["round_trips"] - counted["round_trips"] == round_trips
        assert after["failed_deferred"] == 0
        return results

    results = run(manager, body)
    for index, (read, _, scope_trips, scope_commands) in enumerate(results):
        assert read == [f"{index}:{part}".encode() for part in range(3)]  # in order, all seen
        assert (scope_trips, scope_commands) == (1, 5)
    assert sorted(hits for _, hits, _, _ in results) == list(range(1, TASKS + 1))
    assert direct.get("hits") == str(TASKS).encode()


def test_a_scopes_group_stays_adjacent_in_a_shared_batch(
    manager: PoolManager, direct: redis.Redis
) -> None:
    async def body() -> None:
        client = manager.async_client(auto_pipeline=True)

        async def scoped(index: int) -> None:
            async with manager.arequest_scope() as scope:
                for part in range(4):
                    scope.deferred.rpush("shared", f"s{index}:{part}")
                await client.llen("shared")

        async def loose(index: int) -> None:
            await client.rpush("shared", f"loose{index}")

        tasks = [scoped(index) for index in range(20)] + [loose(index) for index in range(20)]
        random.shuffle(tasks)
        await asyncio.gather(*tasks)

    run(manager, body)
    items = [item.decode() for item in direct.lrange("shared", 0, -1)]
    assert len(items) == 20 * 4 + 20
    for index in range(20):
        start = items.index(f"s{index}:0")
        assert items[start : start + 4] == [f"s{index}:{part}" for part in range(4)]


def test_a_failing_deferred_command_keeps_its_error_and_is_reported(
    manager: PoolManager, direct: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    direct.set("text", "not a number")

    async def body() -> tuple[Any, ...]:
        client = manager.async_client(auto_pipeline=True)
        handles: dict[str, Any] = {}

        async def failing() -> None:
            async with manager.arequest_scope(raise_on_error=True) as scope:
                handles["bad"] = scope.deferred.incr("text")
                handles["ok"] = scope.deferred.set("ok", 1)
                assert await client.get("ok") == b"1"  # the read itself is unaffected

        async def neighbour(index: int) -> bytes | None:
            async with manager.arequest_scope() as scope:
                scope.deferred.set(f"n{index}", index)
                value: bytes | None = await client.get(f"n{index}")
                return value

        outcomes = await asyncio.gather(
            failing(), *(neighbour(index) for index in range(10)), return_exceptions=True
        )
        return outcomes[0], outcomes[1:], handles, pipelining(manager)

    with caplog.at_level(logging.WARNING, logger="ferrite_integrations.pipeline"):
        raised, neighbours, handles, stats = run(manager, body)
    assert isinstance(raised, PipelineError)
    assert [name for name, _ in raised.failures] == ["INCRBY"]
    assert isinstance(handles["bad"].exception(), redis.ResponseError)
    assert handles["ok"].exception() is None
    assert neighbours == [str(index).encode() for index in range(10)]
    assert stats["failed_deferred"] == 1
    assert "Deferred INCRBY failed" in caplog.text


def test_on_error_discard_still_drops_what_was_not_sent(
    manager: PoolManager, direct: redis.Redis
) -> None:
    async def body() -> Any:
        client = manager.async_client(auto_pipeline=True)
        async with manager.arequest_scope(on_error="discard") as scope:
            scope.deferred.set("sent", "yes")
            assert await client.get("sent") == b"yes"
            dropped = scope.deferred.set("dropped", "yes")
            raise RuntimeError("view failed")
        return dropped  # pragma: no cover

    with pytest.raises(RuntimeError):
        run(manager, body)
    assert direct.get("sent") == b"yes"
    assert direct.exists("dropped") == 0


def test_the_flush_at_exit_goes_through_the_pipeliner(
    manager: PoolManager, proxy: FaultProxy, server: EmbeddedServer, direct: redis.Redis
) -> None:
    async def body() -> list[tuple[int, int]]:
        client = manager.async_client(auto_pipeline=True)
        await client.ping()
        before = proxy.requests_forwarded

        async def writer(index: int) -> tuple[int, int]:
            async with manager.arequest_scope() as scope:
                scope.deferred.set(f"w{index}", index)
                scope.deferred.incr("writes")
            return scope.round_trips, scope.commands_sent

        sent = await asyncio.gather(*(writer(index) for index in range(TASKS)))
        assert proxy.requests_forwarded - before <= 3
        assert server.connected_clients(NAME) == 1
        return sent

    assert run(manager, body) == [(1, 2)] * TASKS
    assert direct.get("writes") == str(TASKS).encode()
    assert direct.mget([f"w{i}" for i in range(TASKS)]) == [str(i).encode() for i in range(TASKS)]


def test_a_read_cancelled_mid_flight_still_settles_the_writes_it_carried(
    manager: PoolManager, proxy: FaultProxy, direct: redis.Redis
) -> None:
    async def body() -> tuple[Any, Any, AsyncRequestScope]:
        task, holder, client = await _scope_in_flight(manager, proxy, "n")
        assert holder["scope"].busy
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        proxy.pass_through()
        # the scope's exit waited for the carried write: its handle has the real outcome
        assert holder["incr"].done
        assert await client.echo("next") == b"next"  # nobody got a leftover reply
        stats = manager.stats("default")["async"][0]
        assert (stats["in_use"], stats["waiting"]) == (0, 0)
        return holder["incr"], stats["pipelining"], holder["scope"]

    incr, stats, scope = run(manager, body)
    assert incr.exception() is None
    assert direct.get("n") == b"1"  # applied once, not lost, not resent
    assert stats["failed_deferred"] == 0
    assert not scope.busy


def test_a_failure_settled_after_a_twice_cancelled_scope_ended_is_still_reported(
    manager: PoolManager,
    proxy: FaultProxy,
    direct: redis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    direct.set("text", "not a number")

    async def body() -> tuple[Any, dict[str, Any]]:
        task, holder, _ = await _scope_in_flight(manager, proxy, "text")
        task.cancel()  # the read stops waiting; the scope's exit waits for the group
        await asyncio.sleep(0.01)
        task.cancel()  # and now the exit stops waiting too
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not holder["incr"].done
        for _ in range(100):  # the group's replies still arrive, and settle it
            if holder["incr"].done:
                break
            await asyncio.sleep(0.01)
        return holder["incr"], pipelining(manager)

    with caplog.at_level(logging.WARNING, logger="ferrite_integrations.pipeline"):
        bad, stats = run(manager, body)
    assert isinstance(bad.exception(), redis.ResponseError)
    assert stats["failed_deferred"] == 1
    assert "Deferred INCRBY failed" in caplog.text


def test_a_cancellation_storm_across_scopes_loses_and_misroutes_nothing(
    manager: PoolManager, proxy: FaultProxy, direct: redis.Redis
) -> None:
    proxy.delay(0.0005)  # keep batches in flight while requests are cancelled

    async def body() -> tuple[int, int, set[int]]:
        client = manager.async_client(auto_pipeline=True)
        wrong, deferred = 0, set()

        async def request(index: int) -> None:
            nonlocal wrong
            await asyncio.sleep(random.random() * 0.02)
            async with manager.arequest_scope() as scope:
                scope.deferred.set(f"k{index}", index)
                scope.deferred.incr("total")
                deferred.add(index)
                if await client.get(f"k{index}") != str(index).encode():
                    wrong += 1
                if await client.echo(f"r{index}") != f"r{index}".encode():
                    wrong += 1

        tasks = [asyncio.create_task(request(index)) for index in range(1000)]
        alive = list(tasks)
        for _ in range(40):
            await asyncio.sleep(0.001)
            random.shuffle(alive)
            for task in alive[:15]:  # each task is cancelled at most once
                task.cancel()
            alive = alive[15:]
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        others = [o for o in outcomes if o is not None and not isinstance(o, BaseException)]
        errors = [o for o in outcomes if isinstance(o, Exception)]
        assert (others, errors) == ([], [])
        cancelled = sum(isinstance(outcome, asyncio.CancelledError) for outcome in outcomes)
        assert await client.echo("after") == b"after"
        stats = manager.stats("default")["async"][0]
        assert (stats["in_use"], stats["waiting"]) == (0, 0)
        assert stats["pipelining"]["failed_deferred"] == 0
        return wrong, cancelled, deferred

    wrong, cancelled, deferred = run(manager, body)
    assert wrong == 0
    assert cancelled > 100
    # every write a request queued reached the server exactly once, cancelled or not
    assert direct.get("total") == str(len(deferred)).encode()
    values = direct.mget([f"k{index}" for index in sorted(deferred)])
    assert values == [str(index).encode() for index in sorted(deferred)]


def test_a_reply_lost_mid_batch_fails_every_group_and_resends_nothing(
    manager: PoolManager, proxy: FaultProxy, direct: redis.Redis
) -> None:
    async def body() -> tuple[list[Any], list[Any], dict[str, Any]]:
        client = manager.async_client(auto_pipeline=True)
        await client.ping()
        handles: list[Any] = []

        async def request(index: int) -> Any:
            async with manager.arequest_scope() as scope:
                handles.append(scope.deferred.incr("c"))
                return await client.get(f"k{index}")

        proxy.drop_reply_after(1, match=b"INCRBY")
        outcomes = await asyncio.gather(
            *(request(index) for index in range(20)), return_exceptions=True
        )
        assert await client.echo("after") == b"after"  # a fresh connection, clean
        return outcomes, handles, pipelining(manager)

    outcomes, handles, stats = run(manager, body)
    assert all(isinstance(outcome, redis.ConnectionError) for outcome in outcomes)
    assert all(isinstance(handle.exception(), redis.ConnectionError) for handle in handles)
    assert stats["failed_deferred"] == 20  # each deferred failure counted, none dropped
    assert direct.get("c") in (None, b"20")  # the batch went out whole, at most once


def test_transactions_and_blocking_reads_still_work_beside_the_pipeliner(
    manager: PoolManager, direct: redis.Redis
) -> None:
    async def body() -> tuple[Any, Any]:
        client = manager.async_client(auto_pipeline=True)
        async with manager.arequest_scope() as scope:
            scope.deferred.set("t", 5)
            async with client.pipeline(transaction=True) as tx:
                tx.incr("t")
                counted = await tx.execute()  # after the queued SET, which it flushed
            scope.deferred.rpush("jobs", "x")
            popped = await client.blpop(["jobs"], timeout=1)  # after the queued RPUSH
        return counted, popped

    counted, popped = run(manager, body)
    assert counted == [6]
    assert popped in ([b"jobs", b"x"], (b"jobs", b"x"))
    assert direct.get("t") == b"6"


@pytest.mark.asyncio
async def test_fastapi_requests_using_the_client_and_the_scope_share_round_trips(
    proxy: FaultProxy, direct: redis.Redis
) -> None:
    pytest.importorskip("fastapi")
    lifespans = pytest.importorskip("asgi_lifespan")
    from fastapi import Depends, FastAPI

    from ferrite_integrations.fastapi import ferrite_lifespan, get_client, request_scope
    from tests.fastapi.helpers import call_asgi

    # FerriteClient and RequestScope, as defaults: this module's annotations are strings,
    # which FastAPI would look up in the module's globals
    ferrite_client = Depends(get_client())
    ferrite_scope = request_scope()

    manager = PoolManager(client_name=NAME)
    app = FastAPI(lifespan=ferrite_lifespan(proxy.url, min_idle=1, monitor=False, manager=manager))

    @app.get("/work/{n}")
    async def work(n: int, redis: Any = ferrite_client, scope: Any = ferrite_scope) -> int:
        for i in range(5):
            scope.deferred.set(f"w:{n}:{i}", i)
        total = 0
        for i in range(5):  # the first GET carries the five SETs
            total += int(await redis.get(f"w:{n}:{i}") or 0)
        return total

    try:
        async with lifespans.LifespanManager(app) as running:
            assert (await call_asgi(running.app, "/work/0")).body == b"10"
            before = proxy.requests_forwarded
            requests = (call_asgi(running.app, f"/work/{n}") for n in range(40))
            results = await asyncio.gather(*requests)
            round_trips = proxy.requests_forwarded - before
    finally:
        manager.close()
    assert [(result.status, result.body) for result in results] == [(200, b"10")] * 40
    assert round_trips <= 12, round_trips  # 40 requests x 5 reads, merged across requests
    assert direct.mget([f"w:39:{i}" for i in range(5)]) == [str(i).encode() for i in range(5)]


async def _scope_in_flight(
    manager: PoolManager, proxy: FaultProxy, key: str
) -> tuple[asyncio.Task[None], dict[str, Any], Any]:
    """Start a request whose scope defers ``INCR key`` and reads ``key`` on an
    auto-pipelining client; when this returns, that group is on the wire (the proxy holds
    replies for 50 ms). Returns the request's task, its ``scope`` and ``incr`` handle, and
    the client."""
    client = manager.async_client(auto_pipeline=True)
    await client.ping()
    proxy.delay(0.05)
    holder: dict[str, Any] = {}

    async def request() -> None:
        async with manager.arequest_scope() as scope:
            holder["scope"] = scope
            holder["incr"] = scope.deferred.incr(key)
            await client.get(key)

    task = asyncio.create_task(request())
    await asyncio.sleep(0.02)
    return task, holder, client
