"""The short command path (``manager.client()`` outside a batch, and a request scope's
batches) answers exactly as redis-py's own path does, for every shape of command: names with
spaces, bytes names, buffer arguments, values redis-py refuses, callback options, server
errors; and a lost reply is retried only when the request is safe to repeat."""

from __future__ import annotations

import enum
import re
from collections.abc import Iterator

import pytest
import redis

from ferrite_integrations import PoolManager
from ferrite_integrations.testing import EmbeddedServer, FaultProxy


@pytest.fixture
def manager(server: EmbeddedServer) -> Iterator[PoolManager]:
    manager = PoolManager(client_name="wire")
    manager.configure("default", server.url)
    manager.configure("text", server.url, decode_responses=True)
    yield manager
    manager.close()


def test_commands_of_every_shape_answer_as_redis_py_does(
    manager: PoolManager, direct: redis.Redis
) -> None:
    client = manager.client()
    assert client.execute_command(b"SET", "k", b"v") == direct.execute_command(b"SET", "k", b"v")
    assert client.set("buffer", bytearray(b"from a bytearray")) is True
    assert client.set("view", memoryview(b"from a view")) is True
    assert client.set("number", 1.5) is True
    assert direct.mget("k", "buffer", "view", "number") == [
        b"v",
        b"from a bytearray",
        b"from a view",
        b"1.5",
    ]
    names = {entry["name"] for entry in client.execute_command("CLIENT LIST")}
    assert "wire" in names
    assert client.execute_command("GEORADIUS_RO", "nowhere", 0, 0, 1, "km") == []
    assert client.mget([]) == []  # redis-py turns the server's refusal into []


def test_a_value_redis_py_refuses_is_the_same_data_error(
    manager: PoolManager, direct: redis.Redis
) -> None:
    client = manager.client()
    with pytest.raises(redis.DataError) as expected:
        direct.set("k", True)  # type: ignore[arg-type]
    with pytest.raises(redis.DataError, match=re.escape(str(expected.value))):
        client.set("k", True)  # type: ignore[arg-type]
    assert client.ping() is True  # nothing half-sent is left on the connection


def test_server_errors_keep_their_message_and_type(manager: PoolManager) -> None:
    client = manager.client()
    client.set("text", "abc")
    with pytest.raises(redis.ResponseError, match="not an integer"):
        client.incr("text")
    assert client.get("text") == b"abc"


def test_decoding_options_are_honoured(manager: PoolManager, direct: redis.Redis) -> None:
    direct.set("k", "value")
    text = manager.client("text")
    assert text.get("k") == "value"
    assert isinstance(text.dump("k"), bytes)  # DUMP never decodes


def test_a_scope_batch_answers_each_command_in_place(manager: PoolManager) -> None:
    with manager.request_scope() as scope:
        written = scope.deferred.set("k", "v")
        failing = scope.deferred.incr("k")
        empty = scope.deferred.mget([])
        assert scope.client.get("k") == b"v"
        assert scope.round_trips == 1
    assert written.result() is True
    assert empty.result() == []
    with pytest.raises(redis.ResponseError, match="not an integer"):
        failing.result()


def test_a_read_whose_reply_is_lost_is_sent_again(
    manager: PoolManager, proxy: FaultProxy, direct: redis.Redis
) -> None:
    manager.configure("proxied", proxy.url, breaker_threshold=100)
    client = manager.client("proxied")
    direct.set("k", "v")
    client.ping()
    accepted = proxy.connections_accepted
    proxy.drop_reply_after(1, match=b"GET")
    assert client.get("k") == b"v"
    assert proxy.faults_triggered == 1
    assert proxy.connections_accepted == accepted + 1  # the lost connection was replaced


def test_a_scope_batch_of_reads_whose_reply_is_lost_is_sent_again(
    manager: PoolManager, proxy: FaultProxy, direct: redis.Redis
) -> None:
    manager.configure("proxied", proxy.url, breaker_threshold=100)
    direct.mset({"a": "1", "b": "2"})
    manager.client("proxied").ping()
    proxy.drop_reply_after(1, match=b"MGET")
    with manager.request_scope("proxied") as scope:
        queued = scope.deferred.mget("a", "b")
        assert scope.client.get("b") == b"2"
    assert queued.result() == [b"1", b"2"]
    assert proxy.faults_triggered == 1


def test_a_scope_batch_with_a_write_whose_reply_is_lost_is_not_sent_again(
    manager: PoolManager, proxy: FaultProxy, direct: redis.Redis
) -> None:
    manager.configure("proxied", proxy.url, breaker_threshold=100)
    direct.set("c", 0)
    manager.client("proxied").ping()
    proxy.drop_reply_after(1, match=b"INCR")
    with manager.request_scope("proxied") as scope:
        queued = scope.deferred.incr("c")
        with pytest.raises(redis.ConnectionError):
            scope.client.get("c")
    with pytest.raises(redis.ConnectionError):
        queued.result()
    assert direct.get("c") == b"1"


@pytest.mark.filterwarnings("ignore::UserWarning")  # redis-py marks HIMPORT experimental
def test_a_scope_batch_with_himport_set_carries_its_fieldset_prepare(
    manager: PoolManager, proxy: FaultProxy
) -> None:
    manager.configure("proxied", proxy.url, breaker_threshold=100)
    client = manager.client("proxied")
    client.ping()
    client.himport_prepare("fields", ["a", "b"])
    # The proxy loses the reply of the first request holding PREPARE: it counts whether the
    # fieldset's PREPARE went out in the scope's batch, before its HIMPORT SET.
    proxy.drop_reply_after(1, match=b"PREPARE")
    with manager.request_scope("proxied") as scope:
        scope.deferred.set("x", "1")
        queued = scope.deferred.himport_set("k", "fields", ["1", "2"])
    assert proxy.faults_triggered == 1
    assert queued.exception() is not None


def test_a_command_name_of_a_str_subclass_keeps_its_callback(manager: PoolManager) -> None:
    class Command(enum.StrEnum):
        SET = enum.auto()  # "set"
        PING = enum.auto()

    client = manager.client()
    assert client.execute_command(Command.SET, "k", "v") is True
    assert client.execute_command(Command.PING) is True


def test_a_failure_after_the_last_retry_is_raised_without_a_chain(
    server: EmbeddedServer, proxy: FaultProxy
) -> None:
    manager = PoolManager(client_name="wire")
    manager.configure("default", proxy.url, retries=1, breaker_threshold=100)
    try:
        client = manager.client()
        client.ping()
        proxy.drop_reply_after(2, match=b"GET")
        with pytest.raises(redis.ConnectionError) as raised:
            client.get("k")
        assert proxy.faults_triggered == 2  # the first attempt and one retry
        assert raised.value.__context__ is None
    finally:
        manager.close()
