"""Async response callbacks (``set_response_callback`` with a coroutine function) are
awaited on every async path, as redis-py awaits them: request-scope batches (the scope's own
pipeline, or a group in an auto-pipelined batch) and auto-pipelined commands. A callback's
error belongs to its command; a request cancelled while a callback runs settles every
handle, and no callback is left un-awaited."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from ferrite_integrations import FerriteError, PipelineError, PoolManager
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
    await asyncio.sleep(0)  # a real suspension, not just a coroutine that returns at once
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
            refused = scope.deferred.get("k")
            fine = scope.deferred.set("other", "1")
            await client.echo("carrier")
        return refused, fine  # pragma: no cover - the scope raises on exit

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


@pytest.mark.parametrize("path", ["scope", "scope-in-pipeliner"])
def test_a_request_cancelled_while_a_callback_runs_settles_every_handle(
    manager: PoolManager, direct: redis.Redis, path: str
) -> None:
    direct.set("k", "value")
    awaited: list[str] = []

    async def body() -> tuple[Any, ...]:
        running = asyncio.Event()

        async def slow(response: Any, **options: Any) -> Any:
            awaited.append("started")
            running.set()
            await asyncio.sleep(5)
            awaited.append("finished")  # pragma: no cover - cancelled before
            return response

        client = clients(manager, path, slow)
        async with manager.arequest_scope() as scope:
            scope.client.set_response_callback("GET", slow)
            first = scope.deferred.get("k")
            second = scope.deferred.get("k")  # its callback must never start
            written = scope.deferred.set("written", "yes")
            reader = asyncio.ensure_future(client.echo("carrier"))
            await running.wait()
            reader.cancel()
            with pytest.raises(asyncio.CancelledError):
                await reader
        return first, second, written

    first, second, written = run_then_close(manager, body)
    assert awaited == ["started"]
    for handle in (first, second):
        assert isinstance(handle.exception(), FerriteError)
        assert "applied, but the request was cancelled" in str(handle.exception())
    assert written.exception() is None
    assert direct.get("written") == b"yes"
