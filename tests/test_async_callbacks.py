"""Async response callbacks (``set_response_callback`` with a coroutine function), awaited
as redis-py awaits them. On the auto-pipeliner: in the task that waits for the command,
never in the task that reads the batch. In an async request scope: when a handle's result
is first awaited, in that task, or else at the scope's end, where its error is reported
with the scope's other failures. Either way a callback may send commands through the same
client or scope, and a callback's error belongs to its command."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from ferrite_integrations import PipelineError, PoolManager
from ferrite_integrations.testing import EmbeddedServer
from tests.conftest import run_then_close


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


def auto_client(manager: PoolManager, command: str, callback: Any) -> Any:
    client = manager.async_client(auto_pipeline=True)
    client.set_response_callback(command, callback)
    return client


def test_an_async_callback_is_awaited(manager: PoolManager, direct: redis.Redis) -> None:
    direct.set("k", "value")

    async def body() -> list[Any]:
        client = auto_client(manager, "GET", shout)
        return list(await asyncio.gather(client.get("k"), client.get("k"), client.get("none")))

    assert run_then_close(manager, body) == [b"VALUE", b"VALUE", None]


def test_an_async_callbacks_error_is_its_commands_own(
    manager: PoolManager, direct: redis.Redis
) -> None:
    direct.set("k", "value")

    async def body() -> list[Any]:
        client = auto_client(manager, "GET", refuse)
        return list(
            await asyncio.gather(client.get("k"), client.echo("fine"), return_exceptions=True)
        )

    refused, fine = run_then_close(manager, body)
    assert isinstance(refused, ValueError)
    assert str(refused) == "the callback refused b'value'"
    assert fine == b"fine"


def test_a_callback_may_send_commands_through_the_same_client(
    manager: PoolManager, direct: redis.Redis
) -> None:
    direct.set("k", "value")
    direct.set("suffix", "-checked")

    async def body() -> Any:
        client: Any = None

        async def look_up(response: bytes, **options: Any) -> bytes:
            if response.startswith(b"-"):
                return response
            suffix: bytes = await client.get("suffix")  # GET again, through this callback
            return response + suffix

        client = auto_client(manager, "GET", look_up)
        return await asyncio.wait_for(asyncio.gather(client.get("k"), client.get("k")), 5)

    assert run_then_close(manager, body) == [b"value-checked", b"value-checked"]


def test_an_empty_response_is_returned_without_the_callback(manager: PoolManager) -> None:
    async def tag(response: Any, **options: Any) -> Any:
        return ("through the callback", response)

    async def body() -> Any:
        client = auto_client(manager, "MGET", tag)
        return await client.mget([]), await client.mget(["absent"])

    assert run_then_close(manager, body) == ([], ("through the callback", [None]))


# -- async request scopes -------------------------------------------------------------------


@pytest.fixture(params=["own pipeline", "auto-pipeliner"])
def batching(request: pytest.FixtureRequest) -> str:
    """Whether the scope's batches go through the pool's auto-pipeliner (made by the first
    ``async_client(auto_pipeline=True)`` on the loop) or through a pipeline of their own."""
    return str(request.param)


def scope_client(manager: PoolManager, batching: str, command: str, callback: Any) -> Any:
    if batching == "auto-pipeliner":
        manager.async_client(auto_pipeline=True)
    client = manager.async_client()
    client.set_response_callback(command, callback)
    scope_client: Any = manager.arequest_scope().client
    scope_client.set_response_callback(command, callback)
    return client


def test_a_deferred_commands_async_callback_is_awaited_by_result(
    manager: PoolManager, direct: redis.Redis, batching: str
) -> None:
    direct.set("k", "value")

    async def body() -> list[Any]:
        scope_client(manager, batching, "GET", shout)
        async with manager.arequest_scope() as scope:
            first, missing = scope.deferred.get("k"), scope.deferred.get("none")
            assert await scope.client.echo("sent") == b"sent"
            return [await first.result(), await missing.result(), await first.result()]

    assert run_then_close(manager, body) == [b"VALUE", None, b"VALUE"]


def test_a_read_that_carries_the_queue_awaits_its_own_async_callback(
    manager: PoolManager, batching: str
) -> None:
    async def body() -> Any:
        scope_client(manager, batching, "GET", shout)
        async with manager.arequest_scope() as scope:
            scope.deferred.set("k", "written")
            return await scope.client.get("k")  # carries the SET, then its own callback

    assert run_then_close(manager, body) == b"WRITTEN"


def test_an_async_callback_may_read_and_write_through_the_same_scope(
    manager: PoolManager, direct: redis.Redis, batching: str
) -> None:
    direct.set("k", "value")
    direct.set("suffix", "-checked")

    async def body() -> Any:
        scope: Any = None

        async def look_up(response: bytes, **options: Any) -> bytes:
            if response.startswith(b"-"):
                return response
            scope.deferred.set("seen", response)  # queued: the next read carries it
            suffix: bytes = await scope.client.get("suffix")
            return response + suffix

        scope_client(manager, batching, "GET", look_up)
        scope = manager.arequest_scope()
        async with scope:
            scope.deferred.set("other", "x")
            read = scope.client.get("k")  # carries the queue; its callback uses the scope
            return await asyncio.wait_for(read, 5)

    assert run_then_close(manager, body) == b"value-checked"
    assert direct.get("seen") == b"value"


def test_an_async_callback_nobody_awaits_runs_at_the_scope_end_and_its_error_is_reported(
    manager: PoolManager, direct: redis.Redis, batching: str, caplog: pytest.LogCaptureFixture
) -> None:
    direct.set("k", "value")
    ran: list[Any] = []

    async def record(response: Any, **options: Any) -> Any:
        await asyncio.sleep(0)
        ran.append(response)
        return response

    async def body() -> Any:
        scope_client(manager, batching, "GET", record)
        scope_client(manager, batching, "HGET", refuse)
        async with manager.arequest_scope(raise_on_error=True) as scope:
            scope.deferred.get("k")
            scope.deferred.hget("h", "f")
            scope.deferred.set("after", "kept")

    with pytest.raises(PipelineError) as caught:
        run_then_close(manager, body)
    assert ran == [b"value"]
    assert [(name, str(error)) for name, error in caught.value.failures] == [
        ("HGET", "the callback refused None")
    ]
    assert "Deferred HGET failed: ValueError: the callback refused None" in caplog.text
    assert direct.get("after") == b"kept"


def test_concurrent_awaiters_of_one_handle_run_its_callback_once(
    manager: PoolManager, direct: redis.Redis, batching: str
) -> None:
    direct.set("k", "value")
    calls: list[bytes] = []

    async def slow(response: bytes, **options: Any) -> bytes:
        calls.append(response)
        await asyncio.sleep(0.01)
        return response.upper()

    async def body() -> list[Any]:
        scope_client(manager, batching, "GET", slow)
        async with manager.arequest_scope() as scope:
            handle = scope.deferred.get("k")
            await scope.flush()
            return list(await asyncio.gather(*(handle.result() for _ in range(3))))

    assert run_then_close(manager, body) == [b"VALUE"] * 3
    assert calls == [b"value"]


def test_an_awaiter_cancelled_in_the_callback_leaves_it_to_the_next_one(
    manager: PoolManager, direct: redis.Redis, batching: str
) -> None:
    direct.set("k", "value")
    started = asyncio.Event()
    calls: list[bytes] = []

    async def slow(response: bytes, **options: Any) -> bytes:
        calls.append(response)
        started.set()
        await asyncio.sleep(0.05)
        return response.upper()

    async def body() -> Any:
        scope_client(manager, batching, "GET", slow)
        async with manager.arequest_scope() as scope:
            handle = scope.deferred.get("k")
            await scope.flush()
            first = asyncio.ensure_future(handle.result())
            await started.wait()
            first.cancel()
            with pytest.raises(asyncio.CancelledError):
                await first
            return await handle.result()

    assert run_then_close(manager, body) == b"VALUE"
    assert calls == [b"value", b"value"]


def test_an_exit_cancelled_while_callbacks_run_still_reports_the_scopes_failures(
    manager: PoolManager, batching: str, caplog: pytest.LogCaptureFixture
) -> None:
    started = asyncio.Event()

    async def slow(response: Any, **options: Any) -> Any:
        started.set()
        await asyncio.sleep(5)
        return response

    async def body() -> int:
        scope_client(manager, batching, "GET", slow)
        await manager.async_client().set("s", "text")

        async def request() -> None:
            async with manager.arequest_scope() as scope:
                scope.deferred.incr("s")  # the server refuses: a failure of the scope
                scope.deferred.get("s")  # its callback runs at the exit, slowly

        task = asyncio.ensure_future(request())
        await started.wait()
        task.cancel()  # the client went away while the exit ran the callback
        with pytest.raises(asyncio.CancelledError):
            await task
        failed: int = manager.async_pool().stats()["pipelining"]["failed_deferred"]
        return failed

    assert run_then_close(manager, body) == 1
    assert "Deferred INCRBY failed: ResponseError" in caplog.text


def test_a_callback_run_at_the_scope_end_may_defer_a_write(
    manager: PoolManager, direct: redis.Redis, batching: str
) -> None:
    direct.set("k", "value")

    async def body() -> None:
        scope: Any = manager.arequest_scope()

        async def remember(response: bytes, **options: Any) -> bytes:
            scope.deferred.set("seen", response)  # deferred while the scope ends
            return response

        scope_client(manager, batching, "GET", remember)
        async with scope:
            scope.deferred.get("k")  # nobody awaits it: its callback runs at the end

    run_then_close(manager, body)
    assert direct.get("seen") == b"value"


class Upper:
    """A callback object whose ``__call__`` is a coroutine function."""

    async def __call__(self, response: bytes | None, **options: Any) -> bytes | None:
        await asyncio.sleep(0)
        return None if response is None else response.upper()


def test_a_callable_object_with_an_async_call_is_awaited_like_a_coroutine_function(
    manager: PoolManager, direct: redis.Redis, batching: str
) -> None:
    direct.set("k", "value")

    async def body() -> list[Any]:
        scope_client(manager, batching, "GET", Upper())
        async with manager.arequest_scope() as scope:
            alone = await scope.client.get("k")
            handle = scope.deferred.get("k")
            scope.deferred.set("other", "x")
            carrying = await scope.client.get("k")  # carries the queue
            return [alone, carrying, await handle.result()]

    assert run_then_close(manager, body) == [b"VALUE"] * 3


def test_a_callbacks_own_cancelled_error_is_its_outcome_and_it_never_runs_again(
    manager: PoolManager, batching: str
) -> None:
    calls: list[Any] = []

    async def gives_up(response: Any, **options: Any) -> Any:
        calls.append(response)
        cancelled = asyncio.get_running_loop().create_future()
        cancelled.cancel()
        return await cancelled  # raises CancelledError in a task nobody cancelled

    async def body() -> Any:
        scope_client(manager, batching, "GET", gives_up)
        async with manager.arequest_scope() as scope:
            handle = scope.deferred.get("k")
            await scope.flush()
            with pytest.raises(asyncio.CancelledError):
                await handle.result()
            with pytest.raises(asyncio.CancelledError):
                await handle.result()  # the same outcome, not a second run
        return handle.done

    assert run_then_close(manager, body) is True
    assert calls == [None]


def test_a_cancelled_reads_callback_is_not_run_again_at_the_scope_end(
    manager: PoolManager, batching: str
) -> None:
    started = asyncio.Event()
    calls: list[Any] = []

    async def slow(response: Any, **options: Any) -> Any:
        calls.append(response)
        started.set()
        await asyncio.sleep(5)
        return response

    async def body() -> None:
        scope_client(manager, batching, "GET", slow)
        async with manager.arequest_scope() as scope:
            scope.deferred.set("k", "v")
            read = asyncio.ensure_future(scope.client.get("k"))  # carries the SET
            await started.wait()
            read.cancel()
            with pytest.raises(asyncio.CancelledError):
                await read

    run_then_close(manager, body)
    assert calls == [b"v"]
