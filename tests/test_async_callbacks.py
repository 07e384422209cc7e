"""Async response callbacks (``set_response_callback`` with a coroutine function) are
awaited on every async path, as redis-py awaits them: request-scope batches (the scope's own
pipeline, or a group in an auto-pipelined batch) and auto-pipelined commands. They run in
the caller's task, never in the task that reads a batch and never under a scope's send
lock, so a callback may send commands through the same client. A callback's error belongs
to its command, and no callback is left un-awaited (the suite turns the "never awaited"
warning into an error)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from ferrite_integrations import PipelineError, PoolManager
from ferrite_integrations.testing import EmbeddedServer
from tests.conftest import run_then_close

PATHS = ["scope", "scope-in-pipeliner", "pipeliner"]


@pytest.fixture
def manager(server: EmbeddedServer) -> Iterator[PoolManager]:
    manager = PoolManager(client_name="async-callbacks")
    manager.configure("default", server.url)
    yield manager
    manager.close()


async def shout(response: bytes | None, **options: Any) -> bytes | None:
    await asyncio.sleep(0)  # a real suspension, not a coroutine that returns at once
    return None if response is None else response.upper()


async def refuse(response: Any, **options: Any) -> Any:
    await asyncio.sleep(0)
    raise ValueError(f"the callback refused {response!r}")


def clients(manager: PoolManager, path: str, callback: Any) -> Any:
    """The client that reads on ``path``, with ``callback`` for GET on every client a scope
    or a pipeliner could parse replies with."""
    auto = manager.async_client(auto_pipeline=True) if path != "scope" else None
    plain = manager.async_client()
    for client in (plain, auto):
        if client is not None:
            client.set_response_callback("GET", callback)
    return auto or plain


@pytest.mark.parametrize("path", PATHS)
def test_an_async_callback_is_awaited(manager: PoolManager, direct: redis.Redis, path: str) -> None:
    direct.set("k", "value")

    async def body() -> tuple[Any, ...]:
        client = clients(manager, path, shout)
        if path == "pipeliner":
            return tuple(await asyncio.gather(client.get("k"), client.get("k")))
        async with manager.arequest_scope(raise_on_error=True) as scope:
            scope.client.set_response_callback("GET", shout)
            queued = scope.deferred.get("k")
            read = await client.get("k")  # carries the queue
        return await queued.result(), read

    assert run_then_close(manager, body) == (b"VALUE", b"VALUE")


@pytest.mark.parametrize("path", PATHS)
def test_an_async_callbacks_error_is_its_commands_own(
    manager: PoolManager, direct: redis.Redis, path: str
) -> None:
    direct.set("k", "value")

    async def body() -> Any:
        client = clients(manager, path, refuse)
        if path == "pipeliner":
            return await asyncio.gather(
                client.get("k"), client.echo("fine"), return_exceptions=True
            )
        async with manager.arequest_scope(raise_on_error=True) as scope:
            scope.client.set_response_callback("GET", refuse)
            scope.deferred.get("k")  # nobody awaits it: the scope's end runs its callback
            fine = scope.deferred.set("other", "1")
            await client.echo("carrier")
        return fine  # pragma: no cover - the scope raises on exit

    if path == "pipeliner":
        refused, fine = run_then_close(manager, body)
        assert isinstance(refused, ValueError)
        assert str(refused) == "the callback refused b'value'"
        assert fine == b"fine"
        return
    with pytest.raises(PipelineError) as raised:
        run_then_close(manager, body)
    [(name, error)] = raised.value.failures
    assert name == "GET"
    assert isinstance(error, ValueError)
    assert str(error) == "the callback refused b'value'"
    assert direct.get("other") == b"1"


@pytest.mark.parametrize("path", PATHS)
def test_a_callback_may_send_commands_through_the_same_client(
    manager: PoolManager, direct: redis.Redis, path: str
) -> None:
    direct.set("k", "value")
    direct.set("suffix", "-checked")

    async def body() -> tuple[Any, ...]:
        client: Any = None
        scope: Any = None

        async def look_up(response: bytes, **options: Any) -> bytes:
            if response.startswith(b"-"):
                return response
            if scope is not None:  # the GET below carries it: the scope is busy again
                scope.deferred.set("from-callback", "yes")
            suffix: bytes = await client.get("suffix")  # GET again, through this callback
            return response + suffix

        client = clients(manager, path, look_up)
        if path == "pipeliner":
            return await asyncio.wait_for(client.get("k"), 5), None
        async with manager.arequest_scope(raise_on_error=True) as opened:
            scope = opened
            scope.client.set_response_callback("GET", look_up)
            client = scope.client
            queued = scope.deferred.get("k")
            scope.deferred.set("written", "yes")
            read = await asyncio.wait_for(client.get("k"), 5)
            return read, await asyncio.wait_for(queued.result(), 5)

    read, queued = run_then_close(manager, body)
    assert read == b"value-checked"
    assert queued == (None if path == "pipeliner" else b"value-checked")
    expected = None if path == "pipeliner" else b"yes"
    assert direct.get("written") == expected
    assert direct.get("from-callback") == expected


def test_a_scope_cancelled_at_its_end_stops_the_callbacks_nobody_awaited(
    manager: PoolManager, direct: redis.Redis
) -> None:
    direct.set("k", "value")
    started: list[str] = []

    async def body() -> tuple[Any, Any, Any]:
        running = asyncio.Event()

        async def slow(response: Any, **options: Any) -> Any:
            started.append("started")
            running.set()
            await asyncio.sleep(5)
            return response  # pragma: no cover - cancelled before

        client = clients(manager, "scope", slow)
        handles: dict[str, Any] = {}

        async def request() -> None:
            async with manager.arequest_scope() as scope:
                scope.client.set_response_callback("GET", slow)
                handles["first"] = scope.deferred.get("k")
                handles["second"] = scope.deferred.get("k")  # its callback never starts
                handles["written"] = scope.deferred.set("written", "yes")

        task = asyncio.ensure_future(request())
        await running.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0)
        await client.ping()
        return handles["first"], handles["second"], handles["written"]

    first, second, written = run_then_close(manager, body)
    assert started == ["started"]
    for handle in (first, second):
        error = handle.exception()
        assert isinstance(error, redis.ConnectionError)
        assert "async response callback was cancelled" in str(error)
    assert written.exception() is None
    assert direct.get("written") == b"yes"


def test_a_caller_cancelled_while_its_callback_runs_leaves_it_to_the_next_caller(
    manager: PoolManager, direct: redis.Redis
) -> None:
    direct.set("k", "value")
    runs: list[str] = []

    async def body() -> Any:
        release = asyncio.Event()

        async def gated(response: bytes, **options: Any) -> bytes:
            runs.append("run")
            await release.wait()
            return response.upper()

        clients(manager, "scope", gated)
        async with manager.arequest_scope() as scope:
            scope.client.set_response_callback("GET", gated)
            queued = scope.deferred.get("k")
            await scope.flush()
            impatient = asyncio.ensure_future(queued.result())
            await asyncio.sleep(0.01)
            impatient.cancel()
            with pytest.raises(asyncio.CancelledError):
                await impatient
            release.set()
            return await queued.result()

    assert run_then_close(manager, body) == b"VALUE"
    assert runs == ["run"]  # one callback run, shared by both callers
