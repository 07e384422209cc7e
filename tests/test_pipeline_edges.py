"""Request scopes and the auto-pipeliner at their edges: failing response callbacks,
scopes shared by threads and tasks, state-changing commands, pipelines and scripts inside
a scope, cancellation, and use after the scope ended."""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis

from ferrite_integrations import PipelineError, PoolManager
from ferrite_integrations.testing import FaultProxy


@pytest.fixture
def manager(proxy: FaultProxy) -> Iterator[PoolManager]:
    manager = PoolManager(client_name="edges")
    manager.configure("default", proxy.url, max_connections=4, breaker_threshold=1000)
    yield manager
    manager.close()


def test_a_failing_callback_fails_its_own_command_and_leaves_the_connection_clean(
    manager: PoolManager, proxy: FaultProxy, direct: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    manager.configure("one", proxy.url, max_connections=1, breaker_threshold=1000)
    direct.zadd("z", {"a": float("inf")})
    direct.set("secret", "someone-elses-value")
    proxy.delay(0.001)
    with caplog.at_level(logging.WARNING), manager.request_scope("one") as scope:
        bad = scope.deferred.zrange("z", 0, -1, withscores=True, score_cast_func=int)
        written = scope.deferred.set("s", "v")
        assert scope.client.get("secret") == b"someone-elses-value"
    assert isinstance(bad.exception(), OverflowError)
    assert written.result() is True
    client = manager.client("one")
    assert client.get("s") == b"v"  # the next user reads its own reply, not a leftover
    assert client.exists("s") == 1


def test_the_auto_pipeliner_gives_a_callback_error_to_its_own_caller_only(
    manager: PoolManager, direct: redis.Redis
) -> None:
    direct.zadd("z", {"a": float("inf")})

    async def main() -> list[Any]:
        client = manager.async_client(auto_pipeline=True)
        outcomes = await asyncio.gather(
            client.zrange("z", 0, -1, withscores=True, score_cast_func=int),
            client.incr("counter"),
            client.set("s", "v"),
            return_exceptions=True,
        )
        await manager.aclose()
        return outcomes

    bad, counter, written = asyncio.run(main())
    assert isinstance(bad, OverflowError)
    assert (counter, written) == (1, True)


def test_threads_sharing_a_scope_through_copied_contexts_keep_read_your_writes(
    manager: PoolManager, direct: redis.Redis
) -> None:
    pending = 0

    def work(thread: int) -> None:
        nonlocal pending
        for index in range(100):
            handle = scope.deferred.set(f"t{thread}:{index}", index)
            assert scope.client.get(f"t{thread}:{index}") == str(index).encode()
            pending += not handle.done

    with manager.request_scope() as scope, ThreadPoolExecutor(6) as threads:
        futures = [threads.submit(contextvars.copy_context().run, work, t) for t in range(6)]
        for future in futures:
            future.result()
    assert pending == 0
    assert len(direct.keys("t*")) == 600


def test_a_task_reads_its_own_write_even_when_another_task_flushed_it(
    manager: PoolManager, proxy: FaultProxy
) -> None:
    proxy.delay(0.002)

    async def main() -> bytes | None:
        async with manager.arequest_scope() as scope:
            flushed = asyncio.Event()

            async def task_a() -> None:
                await asyncio.sleep(0.001)
                flushed.set()
                await scope.flush()  # carries B's write

            async def task_b() -> bytes | None:
                scope.deferred.set("b", "v")
                await flushed.wait()
                value: bytes | None = await scope.client.get("b")
                return value

            _, value = await asyncio.gather(task_a(), task_b())
        await manager.aclose()
        return value

    assert asyncio.run(main()) == b"v"


def test_state_changing_commands_are_refused_by_a_scope(manager: PoolManager) -> None:
    with manager.request_scope() as scope:
        for call in (
            lambda: scope.deferred.select(1),
            lambda: scope.deferred.watch("k"),
            lambda: scope.deferred.execute_command("MULTI"),
            scope.deferred.multi,
        ):
            with pytest.raises(TypeError, match="connection's state"):
                call()
        with scope.client.pipeline(transaction=True) as tx:  # the way to do transactions
            tx.incr("t").incr("t")
            assert tx.execute() == [1, 2]
    assert manager.client().get("t") == b"2"


def test_a_pipeline_made_before_deferred_writes_still_reads_them(manager: PoolManager) -> None:
    with manager.request_scope() as scope:
        pipe = scope.client.pipeline(transaction=False)
        scope.deferred.set("late", "seen")
        pipe.get("late")
        assert pipe.execute() == [b"seen"]


def test_scripts_called_through_the_deferred_queue_run(manager: PoolManager) -> None:
    client = manager.client()
    script = client.register_script("return redis.call('INCR', KEYS[1])")
    with manager.request_scope() as scope:
        handle = script(keys=["n"], client=scope.deferred)
    assert handle.result() == 1


def test_async_scripts_registered_on_the_deferred_queue_run_after_it(
    manager: PoolManager, direct: redis.Redis
) -> None:
    async def request() -> Any:
        async with manager.arequest_scope() as scope:
            scope.deferred.set("n", 41)
            script = scope.deferred.register_script("return redis.call('INCR', KEYS[1])")
            return await script(keys=["n"])

    assert asyncio.run(request()) == 42
    assert direct.get("n") == b"42"


def test_errors_of_commands_that_run_at_once_are_reported_too(
    manager: PoolManager, direct: redis.Redis
) -> None:
    direct.set("text", "x")

    def request() -> None:
        with manager.request_scope(raise_on_error=True) as scope:
            scope.deferred.blpop(["text"], timeout=1)

    with pytest.raises(PipelineError, match="BLPOP"):
        request()


def test_async_deferring_after_the_scope_ended_is_an_error(manager: PoolManager) -> None:
    async def main() -> None:
        async with manager.arequest_scope() as scope:
            pass
        with pytest.raises(RuntimeError, match="outside its request scope"):
            scope.deferred.set("k", "v")
        await manager.aclose()

    asyncio.run(main())


def test_an_async_flush_cancelled_in_flight_reports_an_unknown_outcome(
    manager: PoolManager, proxy: FaultProxy
) -> None:
    proxy.delay(0.05)

    async def main() -> BaseException | None:
        async with manager.arequest_scope() as scope:
            handle = scope.deferred.incr("n")
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(scope.flush(), 0.02)
        await manager.aclose()
        return handle.exception()

    error = asyncio.run(main())
    assert isinstance(error, redis.ConnectionError)
    assert "unknown" in str(error)


def test_cancelling_the_pipelining_task_never_leaves_a_caller_waiting(
    manager: PoolManager, proxy: FaultProxy
) -> None:
    proxy.delay(0.05)

    async def main() -> BaseException | None:
        client = manager.async_client(auto_pipeline=True)
        call = asyncio.create_task(client.get("k"))
        await asyncio.sleep(0.01)
        client.pipeliner._sender.cancel()  # type: ignore[attr-defined,union-attr]
        outcome = await asyncio.wait_for(asyncio.gather(call, return_exceptions=True), 2)
        await manager.aclose()
        error = outcome[0]
        return error if isinstance(error, BaseException) else None

    assert isinstance(asyncio.run(main()), redis.ConnectionError)
