"""Request scopes at their edges: ending while other threads or tasks still use them, an exit
that is cancelled, and sync code that meets an async scope whose loop is not running."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from ferrite_integrations import PoolManager, current_async_scope, current_scope
from ferrite_integrations.testing import EmbeddedServer, FaultProxy
from tests.conftest import await_until


@pytest.fixture
def manager() -> Iterator[PoolManager]:
    manager = PoolManager()
    yield manager
    manager.close()


def test_a_scope_reports_its_failures_without_holding_its_lock(
    server: EmbeddedServer, manager: PoolManager, direct: redis.Redis
) -> None:
    # A log handler that writes through the cache, in a thread sharing the request's
    # scope: it holds its own lock while it waits for the scope's, and the scope logs its
    # failures at exit. Done under the scope's lock, the two would wait on each other.
    manager.configure("default", server.url)
    direct.set("text", "abc")
    worker_has_the_scope = threading.Event()

    class CacheLogHandler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if threading.current_thread().name != "worker":
                return
            scope = current_scope("default")
            worker_has_the_scope.set()
            time.sleep(0.2)  # the request thread is closing the scope meanwhile
            client = manager.client("default")
            (scope.deferred if scope is not None else client).rpush("logs", record.getMessage())

    handler = CacheLogHandler()
    logging.getLogger().addHandler(handler)
    closed = threading.Event()

    def request() -> None:
        with manager.request_scope("default") as scope:
            scope.deferred.incr("text")  # fails at the end: logged by the scope
            context = contextvars.copy_context()
            worker = threading.Thread(
                target=context.run,
                args=(logging.getLogger("app").warning, "worker says hi"),
                name="worker",
            )
            worker.start()
            worker_has_the_scope.wait(5)
        closed.set()

    try:
        threading.Thread(target=request, daemon=True).start()
        assert closed.wait(5), "the scope's exit and the worker waited on each other"
        assert direct.lrange("logs", 0, -1) == [b"worker says hi"]
    finally:
        logging.getLogger().removeHandler(handler)


def test_a_task_that_keeps_writing_does_not_keep_the_scope_open(
    server: EmbeddedServer, manager: PoolManager, direct: redis.Redis
) -> None:
    manager.configure("default", server.url)

    async def body() -> float:
        stop = asyncio.Event()

        async def producer() -> None:
            n = 0
            while not stop.is_set():
                scope = current_async_scope("default")
                if scope is not None:
                    scope.deferred.set("n", n)  # what a cache's aset does in a scope
                else:
                    await manager.async_client("default").set("n", n)
                n += 1
                await asyncio.sleep(0)

        async with manager.arequest_scope("default"):
            task = asyncio.create_task(producer())
            await asyncio.sleep(0.01)
            leaving = time.monotonic()
        took = time.monotonic() - leaving
        stop.set()
        await task
        await manager.aclose()
        return took

    assert asyncio.run(body()) < 0.5  # the producer would have run on and on
    assert direct.get("n") is not None


def test_a_cancelled_exit_still_sends_the_queue(
    server: EmbeddedServer, proxy: FaultProxy, manager: PoolManager, direct: redis.Redis
) -> None:
    manager.configure("default", proxy.url)

    async def body() -> None:
        await manager.async_client("default").ping()
        proxy.delay(0.2)

        async def request() -> None:
            async with manager.arequest_scope("default") as scope:
                scope.deferred.set("a", "1")
                in_flight = asyncio.create_task(scope.client.get("x"))  # carries "a"
                await asyncio.sleep(0.05)
                scope.deferred.set("b", "2")  # queued behind it
            await in_flight

        task = asyncio.create_task(request())
        await asyncio.sleep(0.1)  # the exit waits for the batch in flight
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        proxy.pass_through()
        await await_until(lambda: direct.get("b") == b"2")
        await manager.aclose()

    asyncio.run(body())
    assert direct.get("a") == b"1"


def test_sync_code_between_runs_of_the_scopes_loop_sends_the_queue_itself(
    server: EmbeddedServer, manager: PoolManager
) -> None:
    manager.configure("default", server.url, socket_timeout=5)
    context = contextvars.copy_context()
    with asyncio.Runner() as runner:

        async def enter() -> Any:
            scope = manager.arequest_scope("default")
            await scope.__aenter__()
            scope.deferred.set("k", "queued")
            return scope

        scope = runner.run(enter(), context=context)
        started = time.monotonic()
        assert context.run(manager.client("default").get, "k") == b"queued"
        assert time.monotonic() - started < 1  # not a wait for a loop nobody runs
        runner.run(scope.__aexit__(None, None, None), context=context)
        runner.run(manager.aclose())


def test_a_sync_call_does_not_wait_forever_for_a_blocked_loop_and_loses_nothing(
    server: EmbeddedServer, manager: PoolManager, direct: redis.Redis
) -> None:
    manager.configure(
        "default",
        server.url,
        socket_timeout=0.1,
        socket_connect_timeout=0.1,
        acquire_timeout=0.1,
        retries=0,
    )
    ready = threading.Event()
    release = threading.Event()
    shared: dict[str, Any] = {}

    async def request() -> None:
        async with manager.arequest_scope("default") as scope:
            scope.deferred.set("k", "queued")
            shared["context"] = contextvars.copy_context()
            ready.set()
            release.wait(5)  # blocking code on the loop: it cannot send the queue meanwhile
        await manager.aclose()

    loop_thread = threading.Thread(target=asyncio.run, args=(request(),))
    loop_thread.start()
    assert ready.wait(5)
    started = time.monotonic()
    with pytest.raises(redis.TimeoutError, match=r"were not sent within 0\.3 s"):
        shared["context"].run(manager.client("default").get, "k")
    assert time.monotonic() - started < 2
    release.set()
    loop_thread.join(5)
    assert direct.get("k") == b"queued"  # sent once the loop ran again
