"""Connecting under restrictions and faults: an ACL user without CLIENT SETNAME, and a TLS
server that never finishes its handshake."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import redis

from ferrite_integrations import PoolManager, TLSError
from ferrite_integrations.testing import EmbeddedServer, FaultProxy
from ferrite_integrations.testing.plugin import ServerFactory
from tests.conftest import run_then_close


def restricted_user(server: EmbeddedServer) -> str:
    """An ACL user that may read, write and connect, but not run CLIENT (as least-privilege
    application users often are); returns its URL."""
    control = redis.Redis(**server.redis_kwargs())
    control.execute_command(
        "ACL", "SETUSER", "app", "on", ">app-pw", "~*", "+@read", "+@write", "+hello",
        "+ping", "+auth", "+select",
    )  # fmt: skip
    control.close()
    return f"redis://app:app-pw@127.0.0.1:{server.port}/0"


@pytest.mark.parametrize("protocol", [2, 3])
def test_the_managers_default_client_name_never_costs_a_restricted_user_its_connection(
    ferrite_server_factory: ServerFactory, protocol: int
) -> None:
    server = ferrite_server_factory(password="admin-pw")
    manager = PoolManager(client_name="named-by-default")
    manager.configure("default", restricted_user(server), protocol=protocol)
    try:
        client = manager.client("default")
        client.set("k", "v")
        assert client.get("k") == b"v"

        async def body() -> Any:
            return await manager.async_client("default").get("k")

        assert run_then_close(manager, body) == b"v"
    finally:
        manager.close()


def test_the_default_client_name_is_set_where_the_acl_allows(server: EmbeddedServer) -> None:
    manager = PoolManager(client_name="named-by-default")
    manager.configure("default", server.url)
    try:
        manager.client("default").ping()
        assert server.connected_clients("named-by-default") == 1
    finally:
        manager.close()


def test_a_client_name_asked_for_is_still_required(ferrite_server_factory: ServerFactory) -> None:
    server = ferrite_server_factory(password="admin-pw")
    manager = PoolManager()
    manager.configure("default", restricted_user(server), client_name="asked-for")
    try:
        with pytest.raises(redis.exceptions.NoPermissionError, match=r"client\|setname"):
            manager.client("default").get("k")
    finally:
        manager.close()


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_hung_tls_handshake_is_not_retried(ferrite_tls_server: EmbeddedServer, kind: str) -> None:
    tls_server = ferrite_tls_server
    with FaultProxy("127.0.0.1", tls_server.port) as proxy:
        proxy.blackhole()  # accepts, never answers the TLS hello
        manager = PoolManager()
        manager.configure(
            "default",
            f"rediss://127.0.0.1:{proxy.port}/0",
            socket_connect_timeout=0.3,
            ssl_ca_certs=tls_server.tls_files.ca_file,
        )
        started = time.monotonic()
        try:
            get = (
                manager.client("default").get
                if kind == "sync"
                else lambda key: asyncio.run(_async_get(manager))
            )
            with pytest.raises(TLSError, match="did not complete within socket_connect_timeout"):
                get("k")
        finally:
            manager.close()
        assert proxy.connections_accepted == 1
        assert time.monotonic() - started < 0.3 * 2


async def _async_get(manager: PoolManager) -> Any:
    try:
        return await manager.async_client("default").get("k")
    finally:
        await manager.aclose()
