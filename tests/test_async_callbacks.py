"""Async response callbacks (``set_response_callback`` with a coroutine function) on the
auto-pipeliner: awaited as redis-py awaits them, in the task that waits for the command,
never in the task that reads the batch, so a callback may send commands through the same
client. A callback's error belongs to its command. (Async request-scope handles still hand
such a callback's awaitable to the caller: see CHANGELOG.)"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from ferrite_integrations import PoolManager
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
