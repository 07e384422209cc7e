"""Configurations connect to real servers with the options they name: address, database,
credentials, client name, decoding, unix sockets, sync and asyncio alike."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis
import redis.asyncio

from ferrite_integrations import PoolConfig, connection_kwargs
from ferrite_integrations.testing import EmbeddedServer
from ferrite_integrations.testing.plugin import ServerFactory


def run_sync(config: PoolConfig, *command: Any) -> Any:
    client = redis.Redis(connection_pool=redis.ConnectionPool(**connection_kwargs(config)))
    try:
        return client.execute_command(*command)
    finally:
        client.close()
        client.connection_pool.disconnect()


def run_async(config: PoolConfig, *command: Any) -> Any:
    async def run() -> Any:
        pool = redis.asyncio.ConnectionPool(**connection_kwargs(config, use_asyncio=True))
        client = redis.asyncio.Redis(connection_pool=pool)
        try:
            return await client.execute_command(*command)
        finally:
            await client.aclose()
            await pool.disconnect()

    return asyncio.run(run())


RUNNERS = {"sync": run_sync, "async": run_async}


@pytest.fixture(params=sorted(RUNNERS))
def run(request: pytest.FixtureRequest) -> Any:
    return RUNNERS[request.param]


def test_database_from_the_url_is_selected(ferrite_server: EmbeddedServer, run: Any) -> None:
    base = f"redis://127.0.0.1:{ferrite_server.port}"
    run(PoolConfig.from_url(f"{base}/3"), "SET", "where", "db3")
    assert run(PoolConfig.from_url(f"{base}/3"), "GET", "where") == b"db3"
    assert run(PoolConfig.from_url(f"{base}/4"), "GET", "where") is None
    run(PoolConfig.from_url(f"{base}/3"), "FLUSHDB")


def test_client_name_is_visible_on_the_server(ferrite_server: EmbeddedServer, run: Any) -> None:
    config = PoolConfig.from_url(ferrite_server.url, client_name="orders-api")
    assert run(config, "CLIENT", "GETNAME") == b"orders-api"


def test_decode_responses(ferrite_server: EmbeddedServer, run: Any) -> None:
    config = PoolConfig.from_url(ferrite_server.url, decode_responses=True)
    assert run(config, "ECHO", "héllo") == "héllo"


@pytest.mark.parametrize(("protocol", "resp"), [(None, "3"), (2, "2"), (3, "3")])
def test_protocol_reaches_the_server(
    ferrite_server: EmbeddedServer, run: Any, protocol: int | None, resp: str
) -> None:
    config = PoolConfig.from_url(ferrite_server.url, protocol=protocol, decode_responses=True)
    info = run(config, "CLIENT", "INFO")
    assert f"resp={resp}" in info.split()


def test_default_reply_shapes_match_redis_py(ferrite_server: EmbeddedServer) -> None:
    plain = redis.Redis(**ferrite_server.redis_kwargs())
    ours = redis.Redis(
        connection_pool=redis.ConnectionPool(
            **connection_kwargs(PoolConfig.from_url(ferrite_server.url))
        )
    )
    plain.zadd("shape", {"a": 1})
    assert ours.zrange("shape", 0, -1, withscores=True) == plain.zrange(
        "shape", 0, -1, withscores=True
    )
    plain.delete("shape")
    plain.close()
    ours.close()
    ours.connection_pool.disconnect()


def test_password_server_accepts_the_password_and_refuses_without(
    ferrite_server_factory: ServerFactory, run: Any
) -> None:
    server = ferrite_server_factory(password="s3cret")
    assert run(PoolConfig.from_url(server.url), "PING") is True
    with pytest.raises(redis.AuthenticationError):
        run(PoolConfig.from_url(f"redis://127.0.0.1:{server.port}/0"), "SET", "k", "v")


def test_acl_user(ferrite_server_factory: ServerFactory, run: Any) -> None:
    server = ferrite_server_factory(username="app", password="pw")
    config = PoolConfig.from_url(f"redis://app:pw@127.0.0.1:{server.port}/0")
    assert run(config, "ACL", "WHOAMI") == b"app"


def test_unix_socket(ferrite_server_factory: ServerFactory, run: Any) -> None:
    server = ferrite_server_factory(unix_socket=True)
    config = PoolConfig.from_url(server.unix_url)
    assert config.unix_socket_path == server.unix_socket_path
    assert run(config, "PING") is True


def test_refused_port_fails_fast_with_a_connection_error(
    ferrite_server_factory: ServerFactory, run: Any
) -> None:
    server = ferrite_server_factory()
    server.stop()
    with pytest.raises(redis.ConnectionError, match=r"Connection refused|Connect call failed"):
        run(PoolConfig.from_url(server.url), "PING")
