"""FaultProxy in front of a real server: forwarding, counters and every fault mode."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
import redis

from ferrite_integrations.testing import EmbeddedServer, FaultProxy, FaultProxyError
from ferrite_integrations.testing.plugin import ServerFactory

ClientFactory = Callable[..., redis.Redis]
"""The ``make_client`` fixture (see conftest.py)."""


def _wait_until(condition: Callable[[], bool], timeout: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def _key() -> str:
    return f"proxy-test:{uuid.uuid4().hex}"


def _round_trip(client: redis.Redis) -> float:
    started = time.monotonic()
    assert client.ping()
    return time.monotonic() - started


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
    except ConnectionRefusedError:
        return True
    return False


@pytest.fixture
def proxy(ferrite_server: EmbeddedServer) -> Iterator[FaultProxy]:
    with FaultProxy(ferrite_server.host, ferrite_server.port) as started:
        yield started


@pytest.fixture
def direct(ferrite_server: EmbeddedServer, make_client: ClientFactory) -> redis.Redis:
    """A client straight to the server, bypassing the proxy."""
    return make_client(ferrite_server.url)


# -- pass-through and counters ---------------------------------------------------------


def test_pass_through_forwards_commands_and_pipelines(
    proxy: FaultProxy, make_client: ClientFactory, direct: redis.Redis
) -> None:
    client = make_client(proxy.url)
    key = _key()

    assert client.set(key, b"value")
    assert client.get(key) == b"value"
    assert direct.get(key) == b"value"
    with client.pipeline() as pipe:
        pipe.incr(f"{key}:n")
        pipe.incr(f"{key}:n")
        pipe.get(f"{key}:n")
        results = pipe.execute()
    assert results == [1, 2, b"2"]


def test_large_values_cross_intact(proxy: FaultProxy, make_client: ClientFactory) -> None:
    client = make_client(proxy.url)
    key = _key()
    value = bytes(range(256)) * 8192

    client.set(key, value)

    assert client.get(key) == value


def test_url_host_port_and_repr(proxy: FaultProxy, ferrite_server: EmbeddedServer) -> None:
    assert proxy.host == "127.0.0.1"
    assert proxy.url == f"redis://127.0.0.1:{proxy.port}/0"
    assert proxy.port not in (0, ferrite_server.port)
    assert proxy.target == (ferrite_server.host, ferrite_server.port)
    assert proxy.mode == "pass-through"
    assert f"127.0.0.1:{proxy.port}" in repr(proxy)


def test_counts_accepted_and_open_connections(
    proxy: FaultProxy, make_client: ClientFactory
) -> None:
    first = make_client(proxy.url, single_connection_client=True)
    second = make_client(proxy.url, single_connection_client=True)
    first.ping()
    second.ping()

    assert proxy.connections_accepted == 2
    assert proxy.open_connections == 2

    first.close()
    assert _wait_until(lambda: proxy.open_connections == 1)
    proxy.reset_counters()
    assert proxy.connections_accepted == 0
    assert proxy.open_connections == 1


def test_server_side_connection_closes_with_the_client(
    proxy: FaultProxy, make_client: ClientFactory, ferrite_server: EmbeddedServer
) -> None:
    name = f"proxied-{uuid.uuid4().hex[:8]}"
    client = make_client(proxy.url, client_name=name, single_connection_client=True)
    client.ping()
    assert ferrite_server.connected_clients(name) == 1

    client.close()

    assert _wait_until(lambda: ferrite_server.connected_clients(name) == 0)
    assert _wait_until(lambda: proxy.open_connections == 0)


def test_unreachable_server_closes_the_client(
    ferrite_server_factory: ServerFactory, make_client: ClientFactory
) -> None:
    server = ferrite_server_factory()
    with FaultProxy(server.host, server.port) as proxy:
        server.stop()
        client = make_client(proxy.url)

        with pytest.raises(redis.ConnectionError):
            client.ping()
        assert proxy.connections_accepted == 1
        assert _wait_until(lambda: proxy.open_connections == 0)


# -- delay -----------------------------------------------------------------------------


def test_delay_holds_each_direction(proxy: FaultProxy, make_client: ClientFactory) -> None:
    client = make_client(proxy.url)
    client.ping()

    proxy.delay(0.02)
    elapsed = _round_trip(client)

    assert 0.04 <= elapsed < 0.5
    proxy.pass_through()
    assert _round_trip(client) < 0.04


def test_small_delay_is_per_chunk_not_per_byte(
    proxy: FaultProxy, make_client: ClientFactory
) -> None:
    client = make_client(proxy.url)
    key = _key()
    client.ping()

    proxy.delay(0.001)
    started = time.monotonic()
    for _ in range(20):
        client.set(key, b"x" * 100_000)
    elapsed = time.monotonic() - started

    assert 0.04 <= elapsed < 1.0


def test_delay_rejects_negative_seconds(proxy: FaultProxy) -> None:
    with pytest.raises(ValueError, match="delay"):
        proxy.delay(-0.1)


# -- blackhole -------------------------------------------------------------------------


def test_blackhole_makes_commands_time_out(proxy: FaultProxy, make_client: ClientFactory) -> None:
    client = make_client(proxy.url, socket_timeout=0.2)
    client.ping()

    proxy.blackhole()

    with pytest.raises(redis.TimeoutError):
        client.ping()
    assert proxy.mode == "blackhole"
    proxy.pass_through()
    assert make_client(proxy.url).ping()


def test_blackhole_accepts_new_connections_that_then_hang(
    proxy: FaultProxy, make_client: ClientFactory
) -> None:
    proxy.blackhole()
    client = make_client(proxy.url, socket_timeout=0.2)

    with pytest.raises(redis.TimeoutError):
        client.ping()
    assert proxy.connections_accepted == 1


# -- refuse ----------------------------------------------------------------------------


def test_refuse_rejects_connects_and_closes_open_connections(
    proxy: FaultProxy, make_client: ClientFactory
) -> None:
    client = make_client(proxy.url, single_connection_client=True)
    client.ping()
    port = proxy.port

    proxy.refuse()

    assert proxy.open_connections == 0
    with pytest.raises(redis.ConnectionError):
        client.ping()
    with pytest.raises(redis.ConnectionError, match="refused"):
        make_client(proxy.url).ping()
    assert _refused(port)
    assert proxy.connections_accepted == 1
    assert proxy.port == port


@pytest.mark.parametrize("reopen", ["pass_through", "delay", "blackhole", "drop_reply_after"])
def test_leaving_refuse_listens_on_the_same_port(
    proxy: FaultProxy, make_client: ClientFactory, reopen: str
) -> None:
    port = proxy.port
    proxy.refuse()

    if reopen == "delay":
        proxy.delay(0.0)
    elif reopen == "drop_reply_after":
        proxy.drop_reply_after(match=b"INCR")
    else:
        getattr(proxy, reopen)()

    assert proxy.port == port
    assert not _refused(port)
    if reopen != "blackhole":
        assert make_client(proxy.url).ping()


# -- drop_reply_after ------------------------------------------------------------------


def test_lost_reply_after_the_server_ran_the_command(
    proxy: FaultProxy, make_client: ClientFactory, direct: redis.Redis
) -> None:
    client = make_client(proxy.url)
    key = _key()
    direct.set(key, 10)
    proxy.drop_reply_after(1, match=b"INCR")

    with pytest.raises(redis.ConnectionError):
        client.incr(key)

    assert direct.get(key) == b"11"
    assert proxy.faults_triggered == 1
    assert client.incr(key) == 12
    assert direct.get(key) == b"12"
    assert proxy.faults_triggered == 1
    assert proxy.mode == "pass-through"


def test_lost_reply_ignores_requests_that_do_not_match(
    proxy: FaultProxy, make_client: ClientFactory, direct: redis.Redis
) -> None:
    client = make_client(proxy.url)
    key = _key()
    direct.set(key, 5)
    proxy.drop_reply_after(1, match=b"INCR")

    assert client.get(key) == b"5"
    assert client.set(f"{key}:other", 1)
    assert proxy.faults_triggered == 0
    with pytest.raises(redis.ConnectionError):
        client.incr(key)
    assert direct.get(key) == b"6"


def test_lost_reply_counts_down_then_passes_through(
    proxy: FaultProxy, make_client: ClientFactory, direct: redis.Redis
) -> None:
    client = make_client(proxy.url)
    key = _key()
    proxy.drop_reply_after(2, match=b"INCR")

    for expected in (b"1", b"2"):
        with pytest.raises(redis.ConnectionError):
            client.incr(key)
        assert direct.get(key) == expected
    assert client.incr(key) == 3
    assert proxy.faults_triggered == 2
    proxy.reset_counters()
    assert proxy.faults_triggered == 0


def test_lost_reply_without_match_hits_the_next_request(
    proxy: FaultProxy, make_client: ClientFactory, direct: redis.Redis
) -> None:
    client = make_client(proxy.url)
    key = _key()
    client.ping()
    proxy.drop_reply_after()

    with pytest.raises(redis.ConnectionError):
        client.set(key, b"stored")

    assert direct.get(key) == b"stored"
    assert proxy.faults_triggered == 1
    assert _wait_until(lambda: proxy.open_connections == 0)


def test_drop_reply_rejects_a_count_below_one(proxy: FaultProxy) -> None:
    with pytest.raises(ValueError, match="count"):
        proxy.drop_reply_after(0)


# -- cut_all and close -----------------------------------------------------------------


def test_cut_all_fails_the_next_command_then_reconnects(
    proxy: FaultProxy, make_client: ClientFactory
) -> None:
    client = make_client(proxy.url, single_connection_client=True)
    client.ping()

    proxy.cut_all()

    assert proxy.open_connections == 0
    with pytest.raises(redis.ConnectionError):
        client.ping()
    assert make_client(proxy.url).ping()
    assert proxy.connections_accepted == 2


def test_cut_all_fails_a_blocked_read_promptly(
    proxy: FaultProxy, make_client: ClientFactory
) -> None:
    client = make_client(proxy.url, socket_timeout=10.0)
    client.ping()
    proxy.blackhole()
    errors: list[BaseException] = []

    def blocked_ping() -> None:
        try:
            client.ping()
        except redis.RedisError as error:
            errors.append(error)

    worker = threading.Thread(target=blocked_ping)
    worker.start()
    time.sleep(0.1)
    started = time.monotonic()
    proxy.cut_all()
    worker.join(5.0)

    assert time.monotonic() - started < 1.0
    assert len(errors) == 1
    assert isinstance(errors[0], redis.ConnectionError)


def test_close_with_open_connections_is_quick_and_complete(
    ferrite_server: EmbeddedServer, make_client: ClientFactory
) -> None:
    proxy = FaultProxy(ferrite_server.host, ferrite_server.port)
    proxy.start()
    name = f"proxied-{uuid.uuid4().hex[:8]}"
    clients = [make_client(proxy.url, client_name=name) for _ in range(3)]
    for client in clients:
        client.ping()
    proxy.delay(0.5)
    port = proxy.port
    before = {thread.ident for thread in threading.enumerate()}

    started = time.monotonic()
    proxy.close()
    proxy.close()

    assert time.monotonic() - started < 0.5
    assert proxy.open_connections == 0
    assert _refused(port)
    assert not any(
        thread.name.startswith("fault-proxy") and thread.is_alive()
        for thread in threading.enumerate()
        if thread.ident in before
    )
    assert _wait_until(lambda: ferrite_server.connected_clients(name) == 0)


def test_controls_after_close_raise(ferrite_server: EmbeddedServer) -> None:
    proxy = FaultProxy(ferrite_server.host, ferrite_server.port)
    with pytest.raises(FaultProxyError, match="start"):
        _ = proxy.port
    proxy.close()

    with pytest.raises(FaultProxyError, match="closed"):
        proxy.start()
    with pytest.raises(FaultProxyError, match="closed"):
        proxy.pass_through()
    with pytest.raises(FaultProxyError, match="closed"):
        proxy.cut_all()
