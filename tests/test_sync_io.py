"""The sync connection sends and reads on its own (one call layer fewer than redis-py's
``send_packed_command`` / ``read_response``) on the redis-py versions it was checked
against, and through redis-py's methods on any other: on both paths every failure a user
can meet must come out exactly as redis-py's own connection reports it, with the same type
and message, leave the connection closed (or open) as redis-py's does, and reach the
circuit breaker."""

from __future__ import annotations

import select
import threading
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import pytest
import redis
import redis.connection

import ferrite_integrations.connection as ferrite_connection
from ferrite_integrations.breaker import CircuitBreaker
from ferrite_integrations.connection import Connection
from ferrite_integrations.testing import EmbeddedServer, FaultProxy

Factory = Callable[..., Any]
KINDS: dict[str, Factory] = {"redis-py": redis.connection.Connection, "ferrite": Connection}


@pytest.fixture(autouse=True, params=["own", "redis-py's"])
def io_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both of our paths: the inlined send and read (redis-py versions checked against),
    and redis-py's own methods (any other version)."""
    monkeypatch.setattr(ferrite_connection, "OWN_IO", request.param == "own")


def _failure(call: Callable[[], object]) -> tuple[type[BaseException], str]:
    with pytest.raises(redis.RedisError) as caught:
        call()
    return type(caught.value), str(caught.value)


def _both(scenario: Callable[[Factory], tuple[Any, ...]]) -> tuple[Any, ...]:
    """Run ``scenario`` on redis-py's connection and on ours; they must agree."""
    theirs, ours = (scenario(factory) for factory in KINDS.values())
    assert ours == theirs
    return ours


@pytest.fixture
def paused(server: EmbeddedServer) -> Iterator[EmbeddedServer]:
    yield server
    if server.paused:
        server.resume()


def _fail_while_paused(
    server: EmbeddedServer, factory: Factory, act: Callable[[Any], object]
) -> tuple[Any, tuple[type[BaseException], str]]:
    """A connection (0.2 s socket timeout), and how ``act`` on it fails while the server is
    paused; the server runs again afterwards."""
    connection = factory(host=server.host, port=server.port, socket_timeout=0.2)
    connection.connect()
    server.pause()
    try:
        return connection, _failure(lambda: act(connection))
    finally:
        server.resume()


def _get_then_read(connection: Any, **read: Any) -> object:
    connection.send_command("GET", "k")
    return connection.read_response(**read)


def test_a_read_that_times_out_fails_and_closes_as_redis_pys_does(paused: EmbeddedServer) -> None:
    def scenario(factory: Factory) -> tuple[Any, ...]:
        connection, failure = _fail_while_paused(paused, factory, _get_then_read)
        return failure, connection._sock is None

    failure, closed = _both(scenario)
    assert failure[0] is redis.TimeoutError
    assert failure[1].startswith("Timeout reading from ")
    assert closed


def test_a_read_told_not_to_close_on_error_keeps_the_connection(paused: EmbeddedServer) -> None:
    def scenario(factory: Factory) -> tuple[Any, ...]:
        keep = partial(_get_then_read, disconnect_on_error=False)
        connection, failure = _fail_while_paused(paused, factory, keep)
        # The reply arrives once the server runs again, on the connection kept open.
        reply = connection.read_response(timeout=5)
        connection.disconnect()
        return failure, reply

    failure, reply = _both(scenario)
    assert failure[0] is redis.TimeoutError
    assert reply is None


def _reset_while_reading(proxy: FaultProxy, connection: Any) -> tuple[type[BaseException], str]:
    proxy.blackhole()
    connection.send_command("GET", "k")
    cut = threading.Timer(0.05, proxy.cut_all, kwargs={"reset": True})
    cut.start()
    try:
        return _failure(connection.read_response)
    finally:
        cut.join()
        proxy.pass_through()


def test_a_read_cut_by_a_reset_fails_as_redis_pys_does(proxy: FaultProxy) -> None:
    def scenario(factory: Factory) -> tuple[Any, ...]:
        connection = factory(host=proxy.host, port=proxy.port, socket_timeout=5)
        connection.connect()
        return _reset_while_reading(proxy, connection), connection._sock is None

    (kind, message), closed = _both(scenario)
    assert kind is redis.ConnectionError
    assert message.startswith(f"Error while reading from {proxy.host}:{proxy.port} : (")
    assert "reset" in message.lower()
    assert closed


def test_a_write_on_a_reset_connection_fails_as_redis_pys_does(proxy: FaultProxy) -> None:
    def scenario(factory: Factory) -> tuple[Any, ...]:
        connection = factory(host=proxy.host, port=proxy.port, socket_timeout=5)
        connection.connect()
        proxy.cut_all(reset=True)
        readable, _, _ = select.select([connection._sock], [], [], 5)  # the reset arrived
        assert readable
        failure = _failure(lambda: connection.send_command("GET", "k"))
        return failure, connection._sock is None

    (kind, message), closed = _both(scenario)
    assert kind is redis.ConnectionError
    assert message.startswith("Error ")
    assert "while writing to socket." in message
    assert closed


def test_a_write_the_server_does_not_take_fails_as_redis_pys_does(paused: EmbeddedServer) -> None:
    value = b"x" * (48 << 20)  # more than the loopback socket buffers hold

    def scenario(factory: Factory) -> tuple[Any, ...]:
        connection, failure = _fail_while_paused(
            paused, factory, lambda connection: connection.send_command("SET", "big", value)
        )
        return failure, connection._sock is None

    assert _both(scenario) == ((redis.TimeoutError, "Timeout writing to socket"), True)


def test_a_failed_read_and_a_failed_write_each_open_the_breaker(proxy: FaultProxy) -> None:
    """Both paths tell the circuit breaker: with a threshold of 1, either failure opens it."""
    connection = Connection(host=proxy.host, port=proxy.port, socket_timeout=5)
    connection.connect()
    connection.ferrite_breaker = _breaker(proxy)
    _reset_while_reading(proxy, connection)
    assert connection.ferrite_breaker.state == "open"

    connection.ferrite_breaker = None
    connection.connect()
    connection.ferrite_breaker = _breaker(proxy)
    proxy.cut_all(reset=True)
    assert select.select([connection._sock], [], [], 5)[0]
    with pytest.raises(redis.ConnectionError, match="while writing to socket"):
        connection.send_command("GET", "k")
    assert connection.ferrite_breaker.state == "open"


def _breaker(proxy: FaultProxy) -> CircuitBreaker:
    return CircuitBreaker(proxy.url, threshold=1, reset_timeout=60, probe_timeout=60)
