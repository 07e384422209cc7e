"""A write whose reply is lost is never applied twice, whatever shape it takes: single
commands, scripts, transactions, pipelines (also ones sent in several chunks), after
redis-py's own health-check PING, and after a reconnect handshake. Sync and async."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
import redis

from ferrite_integrations import PoolManager
from ferrite_integrations.testing import FaultProxy

LUA = "return redis.call('INCR', KEYS[1])"
BIG = b"x" * (8 * 1024 * 1024)


@pytest.fixture
def manager(proxy: FaultProxy) -> Iterator[PoolManager]:
    manager = PoolManager(client_name="no-double")
    manager.configure("default", proxy.url, socket_timeout=2.0, breaker_threshold=100)
    yield manager
    manager.close()


def sync_writes(client: redis.Redis) -> dict[str, tuple[Callable[[], Any], bytes]]:
    script = client.register_script(LUA)

    def pipeline(transaction: bool) -> Callable[[], Any]:
        def run() -> Any:
            pipe = client.pipeline(transaction=transaction)
            pipe.incr("c").get("x")
            return pipe.execute()

        return run

    def pipeline_with_script() -> Any:
        pipe = client.pipeline(transaction=False)
        script(keys=["c"], client=pipe)
        pipe.get("x")
        return pipe.execute()

    def chunked_pipeline() -> Any:
        pipe = client.pipeline(transaction=False)
        pipe.incr("c").set("big", BIG)
        return pipe.execute()

    return {
        "INCR": (lambda: client.incr("c"), b"INCR"),
        "EVALSHA": (lambda: script(keys=["c"]), b"EVALSHA"),
        "EVAL": (lambda: client.eval(LUA, 1, "c"), b"EVAL"),
        "transaction": (pipeline(True), b"INCR"),
        "pipeline": (pipeline(False), b"INCR"),
        "pipeline with script": (pipeline_with_script, b"EVALSHA"),
        "chunked pipeline": (chunked_pipeline, b"INCR"),
    }


def async_writes(client: Any) -> dict[str, tuple[Callable[[], Awaitable[Any]], bytes]]:
    script = client.register_script(LUA)

    async def pipeline(transaction: bool) -> Any:
        pipe = client.pipeline(transaction=transaction)
        pipe.incr("c").get("x")
        return await pipe.execute()

    async def pipeline_with_script() -> Any:
        pipe = client.pipeline(transaction=False)
        await script(keys=["c"], client=pipe)
        pipe.get("x")
        return await pipe.execute()

    async def chunked_pipeline() -> Any:
        pipe = client.pipeline(transaction=False)
        pipe.incr("c").set("big", BIG)
        return await pipe.execute()

    return {
        "INCR": (lambda: client.incr("c"), b"INCR"),
        "EVALSHA": (lambda: script(keys=["c"]), b"EVALSHA"),
        "EVAL": (lambda: client.eval(LUA, 1, "c"), b"EVAL"),
        "transaction": (lambda: pipeline(True), b"INCR"),
        "pipeline": (lambda: pipeline(False), b"INCR"),
        "pipeline with script": (pipeline_with_script, b"EVALSHA"),
        "chunked pipeline": (chunked_pipeline, b"INCR"),
    }


CASES = list(sync_writes(redis.Redis()))


@pytest.mark.parametrize("case", CASES)
def test_sync_write_with_a_lost_reply_is_applied_once(
    case: str, manager: PoolManager, proxy: FaultProxy, direct: redis.Redis
) -> None:
    client = manager.client()
    call, match = sync_writes(client)[case]
    direct.script_load(LUA)  # so that EVALSHA runs the script rather than answering NOSCRIPT
    direct.set("c", 0)
    client.ping()
    proxy.drop_reply_after(1, match=match)
    with pytest.raises(redis.ConnectionError):
        call()
    assert direct.get("c") == b"1"


@pytest.mark.parametrize("case", CASES)
def test_async_write_with_a_lost_reply_is_applied_once(
    case: str, manager: PoolManager, proxy: FaultProxy, direct: redis.Redis
) -> None:
    async def main() -> None:
        client = manager.async_client()
        call, match = async_writes(client)[case]
        direct.script_load(LUA)
        direct.set("c", 0)
        await client.ping()
        proxy.drop_reply_after(1, match=match)
        with pytest.raises(redis.ConnectionError):
            await call()
        assert direct.get("c") == b"1"
        await manager.aclose()

    asyncio.run(main())


def test_redis_py_health_check_ping_does_not_make_incr_look_safe(
    proxy: FaultProxy, direct: redis.Redis
) -> None:
    manager = PoolManager(client_name="no-double")
    manager.configure("default", proxy.url, health_check_interval=0.05, breaker_threshold=100)
    client = redis.Redis(connection_pool=manager.pool(), single_connection_client=True)
    direct.set("c", 0)
    client.ping()
    time.sleep(0.1)  # the held connection is now due for redis-py's own PING
    proxy.drop_reply_after(1, match=b"INCR")
    with pytest.raises(redis.ConnectionError):
        client.incr("c")
    assert direct.get("c") == b"1"
    client.close()
    manager.close()


def test_a_reconnect_handshake_does_not_make_incr_look_safe(
    proxy: FaultProxy, direct: redis.Redis
) -> None:
    manager = PoolManager(client_name="no-double")
    manager.configure("default", f"{proxy.url[:-2]}/3", breaker_threshold=100)
    client = redis.Redis(connection_pool=manager.pool(), single_connection_client=True)
    client.ping()
    client.connection.disconnect()  # the next command reconnects, ending its handshake with SELECT
    direct.execute_command("SELECT", 3)
    direct.set("c", 0)
    proxy.drop_reply_after(1, match=b"INCR")
    with pytest.raises(redis.ConnectionError):
        client.incr("c")
    assert direct.get("c") == b"1"
    client.close()
    manager.close()
