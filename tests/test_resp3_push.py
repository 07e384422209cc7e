"""The check of an idle connection (on borrow, maintenance and health pings). RESP3 pushes
that reach it (a CLIENT TRACKING invalidation) are handed to the parser's push handlers; the
connection, and the tracking switched on for it, stay. Anything else waiting on it, in the
kernel or already in the parser's buffer, and any failure of the check itself, gets it
replaced, never lent out."""

from __future__ import annotations

import select
import socket
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from redis._parsers import _AsyncRESP2Parser, _RESP2Parser

from ferrite_integrations import PoolManager
from ferrite_integrations.connection import (
    AsyncConnection,
    AsyncSSLConnection,
    Connection,
    SSLConnection,
)
from ferrite_integrations.testing import EmbeddedServer
from ferrite_integrations.testing.plugin import ServerFactory
from tests.conftest import run_then_close, wait_until

NAME = "push-test"


@pytest.fixture(params=["default-parser", "python-parser"])
def manager(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[PoolManager]:
    """A manager whose connections parse with redis-py's default parser (hiredis, when it
    is installed) or with its pure-Python one (as on a machine without hiredis)."""
    if request.param == "python-parser":
        for cls, parser_class in (
            (Connection, _RESP2Parser),  # redis-py takes its RESP3 twin for protocol=3
            (SSLConnection, _RESP2Parser),
            (AsyncConnection, _AsyncRESP2Parser),
            (AsyncSSLConnection, _AsyncRESP2Parser),
        ):
            monkeypatch.setattr(cls, "__init__", _with_parser(cls.__init__, parser_class))
    manager = PoolManager(client_name=NAME)
    yield manager
    manager.close()


def _with_parser(init: Any, parser_class: type) -> Any:
    def with_parser(self: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("parser_class", parser_class)
        init(self, *args, **kwargs)

    return with_parser


@pytest.fixture(params=[False, True], ids=["plain", "tls"])
def tracked_server(request: pytest.FixtureRequest, ferrite_server_factory: ServerFactory) -> Any:
    return ferrite_server_factory(tls=request.param)


def invalidate(server: EmbeddedServer, key: str, value: str) -> None:
    """Change ``key`` from another connection: the server pushes an invalidation to every
    connection that tracks it."""
    writer = redis.Redis(**server.redis_kwargs())
    try:
        writer.set(key, value)
    finally:
        writer.close()


def kernel_holds_data(sock: Any) -> bool:
    return bool(select.select([sock], [], [], 0)[0])


def broken(manager: PoolManager, kind: str = "sync") -> int:
    stats = manager.stats("default")
    pool_stats = stats["sync"] if kind == "sync" else stats["async"][0]
    return int(pool_stats["closed"]["broken"])


def test_an_invalidation_on_an_idle_connection_keeps_it_and_its_tracking(
    tracked_server: EmbeddedServer, manager: PoolManager
) -> None:
    manager.configure("default", tracked_server.url, max_connections=1, protocol=3)
    client = manager.client("default")
    client.execute_command("CLIENT", "TRACKING", "ON")
    client.set("k", "old")
    assert client.get("k") == b"old"  # now tracked
    connection_id = client.client_id()
    (idle,) = manager.pool("default")._state.idle
    for round_number in range(3):
        invalidate(tracked_server, "k", f"new{round_number}")
        wait_until(lambda: kernel_holds_data(idle._sock))
        assert client.get("k") == f"new{round_number}".encode()
    assert client.client_id() == connection_id
    assert b"on" in client.execute_command("CLIENT", "TRACKINGINFO")[b"flags"]
    assert broken(manager) == 0
    assert tracked_server.connected_clients(NAME) == 1


def test_invalidations_reach_the_parsers_invalidation_handler(
    server: EmbeddedServer, manager: PoolManager
) -> None:
    manager.configure("default", server.url, max_connections=1, protocol=3)
    pool = manager.pool("default")
    seen: list[Any] = []
    connection = pool.get_connection()
    try:
        connection._parser.set_invalidation_push_handler(seen.append)
        connection.send_command("CLIENT", "TRACKING", "ON")
        assert connection.read_response() in (b"OK", "OK")
        connection.send_command("GET", "watched")
        connection.read_response()
    finally:
        pool.release(connection)
    invalidate(server, "watched", "changed")
    wait_until(lambda: kernel_holds_data(connection._sock))
    assert manager.client("default").get("watched") == b"changed"
    assert len(seen) == 1
    assert seen[0][1] == [b"watched"]


@pytest.mark.parametrize(
    ("protocol", "push_first"),
    [(2, False), (3, False), (3, True)],
    ids=["resp2-reply", "resp3-reply", "resp3-push-then-reply"],
)
def test_a_stray_reply_on_an_idle_connection_still_replaces_it(
    server: EmbeddedServer, manager: PoolManager, protocol: int, push_first: bool
) -> None:
    manager.configure("default", server.url, max_connections=1, protocol=protocol)
    client = manager.client("default")
    if push_first:
        client.execute_command("CLIENT", "TRACKING", "ON")
        client.get("k")
    connection_id = client.client_id()
    pool = manager.pool("default")
    connection = pool.get_connection()
    try:
        if push_first:
            invalidate(server, "k", "changed")
            wait_until(lambda: kernel_holds_data(connection._sock))
        connection.send_command("PING")  # its reply is never read
    finally:
        pool.release(connection)
    wait_until(lambda: kernel_holds_data(connection._sock))
    client.set("k", "mine")
    assert client.get("k") == b"mine"  # not the stray PONG
    assert client.client_id() != connection_id
    assert broken(manager) == 1


def test_an_async_invalidation_on_an_idle_connection_keeps_it_and_its_tracking(
    tracked_server: EmbeddedServer, manager: PoolManager
) -> None:
    manager.configure("default", tracked_server.url, max_connections=1, protocol=3)

    async def body() -> None:
        client = manager.async_client("default")
        await client.execute_command("CLIENT", "TRACKING", "ON")
        await client.set("k", "old")
        assert await client.get("k") == b"old"
        connection_id = await client.client_id()
        (idle,) = manager.async_pool("default")._state.idle
        sock = idle._writer.transport.get_extra_info("socket")
        for round_number in range(3):
            invalidate(tracked_server, "k", f"new{round_number}")
            # The loop does not run meanwhile: the borrow check meets the push in the kernel.
            wait_until(lambda: kernel_holds_data(sock))
            assert await client.get("k") == f"new{round_number}".encode()
        assert await client.client_id() == connection_id
        info = await client.execute_command("CLIENT", "TRACKINGINFO")
        assert b"on" in info[b"flags"]
        assert broken(manager, "async") == 0

    run_then_close(manager, body)


@pytest.mark.parametrize("push_first", [False, True], ids=["reply", "push-then-reply"])
def test_an_async_stray_reply_on_an_idle_resp3_connection_still_replaces_it(
    server: EmbeddedServer, manager: PoolManager, push_first: bool
) -> None:
    manager.configure("default", server.url, max_connections=1, protocol=3)

    async def body() -> None:
        client = manager.async_client("default")
        if push_first:
            await client.execute_command("CLIENT", "TRACKING", "ON")
            await client.get("k")
        connection_id = await client.client_id()
        pool = manager.async_pool("default")
        connection = await pool.get_connection()
        sock = connection._writer.transport.get_extra_info("socket")
        try:
            if push_first:
                invalidate(server, "k", "changed")
                wait_until(lambda: kernel_holds_data(sock))
            await connection.send_command("PING")
        finally:
            await pool.release(connection)
        wait_until(lambda: kernel_holds_data(sock))
        await client.set("k", "mine")
        assert await client.get("k") == b"mine"
        assert await client.client_id() != connection_id
        assert broken(manager, "async") == 1

    run_then_close(manager, body)


# -- replies left behind, and checks that fail ------------------------------------------------


def leave_a_stray_reply_in_the_parser(connection: Any) -> None:
    """Two replies arrive in one read; only the first is taken, the second stays in the
    parser's buffer with nothing left in the kernel (what a caller that read one reply of
    two leaves behind)."""
    connection.send_command("ECHO", "first")
    connection.send_command("ECHO", "stray")
    both = len(b"$5\r\nfirst\r\n$5\r\nstray\r\n")
    wait_until(lambda: len(connection._sock.recv(both, socket.MSG_PEEK)) >= both)
    assert connection.read_response() == b"first"
    assert not kernel_holds_data(connection._sock)


@pytest.mark.parametrize("protocol", [2, 3])
def test_a_reply_left_in_the_parsers_buffer_gets_the_connection_replaced(
    server: EmbeddedServer, manager: PoolManager, protocol: int
) -> None:
    manager.configure("default", server.url, max_connections=1, protocol=protocol)
    client = manager.client("default")
    client.set("k", "real-value")
    pool = manager.pool("default")
    connection = pool.get_connection()
    try:
        leave_a_stray_reply_in_the_parser(connection)
    finally:
        pool.release(connection)
    assert client.get("k") == b"real-value"
    assert broken(manager) == 1


@pytest.mark.parametrize("checker", ["ping", "maintain"])
def test_a_pool_check_never_lends_out_a_connection_it_found_dirty(
    server: EmbeddedServer, manager: PoolManager, checker: str
) -> None:
    manager.configure("default", server.url, max_connections=1, protocol=3)
    client = manager.client("default")
    client.set("k", "real-value")
    pool = manager.pool("default")
    connection = pool.get_connection()
    try:
        connection.send_command("PING")  # two replies never read
        connection.send_command("PING")
    finally:
        pool.release(connection)
    wait_until(lambda: kernel_holds_data(connection._sock))
    pool.ping(1.0) if checker == "ping" else pool.maintain()
    assert broken(manager) == 1  # closed by the check itself, not left for the next borrow
    assert client.get("k") == b"real-value"


def test_a_push_handler_that_fails_costs_the_connection_not_the_caller(
    server: EmbeddedServer, manager: PoolManager
) -> None:
    manager.configure("default", server.url, max_connections=1, protocol=3)
    pool = manager.pool("default")
    client = manager.client("default")
    client.set("k", "real-value")

    def failing_handler(push: Any) -> None:
        raise ZeroDivisionError("a push handler of the user's own")

    checks = {"maintain": pool.maintain, "ping": lambda: pool.ping(1.0), "borrow": client.ping}
    for round_number, check in enumerate(checks.values(), start=1):
        connection = pool.get_connection()
        try:  # a RESP3 connection may subscribe and go on with commands
            connection.send_command("SUBSCRIBE", "news")
            connection.read_response(push_request=True)
            connection._parser.set_pubsub_push_handler(failing_handler)
        finally:
            pool.release(connection)
        publisher = redis.Redis(**server.redis_kwargs())
        assert publisher.publish("news", "hello") == 1
        publisher.close()
        sock = connection._sock
        wait_until(lambda: kernel_holds_data(sock))  # noqa: B023 (used at once)
        check()  # no error: the connection is replaced, and its slot comes back
        assert broken(manager) == round_number
        assert manager.stats("default")["sync"]["in_use"] == 0
    assert client.get("k") == b"real-value"


def test_an_async_ping_never_lends_out_a_connection_it_found_dirty(
    server: EmbeddedServer, manager: PoolManager
) -> None:
    manager.configure("default", server.url, max_connections=1, protocol=3)

    async def body() -> None:
        client = manager.async_client("default")
        await client.set("k", "real-value")
        pool = manager.async_pool("default")
        connection = await pool.get_connection()
        sock = connection._writer.transport.get_extra_info("socket")
        try:
            await connection.send_command("PING")  # two replies never read
            await connection.send_command("PING")
        finally:
            await pool.release(connection)
        wait_until(lambda: kernel_holds_data(sock))
        await pool.ping(1.0)
        assert broken(manager, "async") == 1  # closed by the ping, not left for a borrow
        assert await client.get("k") == b"real-value"

    run_then_close(manager, body)
