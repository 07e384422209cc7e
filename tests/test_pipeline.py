"""Sync request scopes against a real server; round trips are counted on the wire (requests
the FaultProxy forwards), not only by the scope's own bookkeeping."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import pytest
import redis

from ferrite_integrations import PoolManager
from ferrite_integrations.pipeline import DiscardedError, PipelineError, current_scope
from ferrite_integrations.testing import FaultProxy


@pytest.fixture
def manager(proxy: FaultProxy) -> Iterator[PoolManager]:
    manager = PoolManager(client_name="pipeline-test")
    manager.configure("default", proxy.url, min_idle=1, breaker_threshold=100)
    manager.warm()
    yield manager
    manager.close()


def round_trips(proxy: FaultProxy, before: int) -> int:
    return proxy.requests_forwarded - before


def test_ten_deferred_writes_take_one_round_trip(
    manager: PoolManager, proxy: FaultProxy, direct: redis.Redis
) -> None:
    before = proxy.requests_forwarded
    with manager.request_scope() as scope:
        handles = [scope.deferred.set(f"k{i}", i) for i in range(10)]
        assert round_trips(proxy, before) == 0
        assert scope.queued == 10
    assert round_trips(proxy, before) == 1
    assert [handle.result() for handle in handles] == [True] * 10
    assert direct.mget([f"k{i}" for i in range(10)]) == [str(i).encode() for i in range(10)]
    assert (scope.round_trips, scope.commands_sent) == (1, 10)
    pipelining = manager.stats("default")["sync"]["pipelining"]
    assert (pipelining["round_trips"], pipelining["commands"]) == (1, 10)


def test_five_writes_then_five_reads_take_at_most_six_round_trips_and_reads_see_writes(
    manager: PoolManager, proxy: FaultProxy
) -> None:
    before = proxy.requests_forwarded
    with manager.request_scope() as scope:
        for i in range(5):
            scope.deferred.set(f"k{i}", f"v{i}")
        values = [scope.client.get(f"k{i}") for i in range(5)]
    assert values == [f"v{i}".encode() for i in range(5)]
    assert round_trips(proxy, before) <= 6
    assert round_trips(proxy, before) == 5  # the first read carries the five writes


def test_a_read_after_a_deferred_write_sees_it_in_the_same_round_trip(
    manager: PoolManager, proxy: FaultProxy
) -> None:
    with manager.request_scope() as scope:
        scope.deferred.set("k", "v", ex=300)
        hits = scope.deferred.incr("hits")
        before = proxy.requests_forwarded
        assert scope.client.get("k") == b"v"
        assert round_trips(proxy, before) == 1
        assert hits.done
        assert hits.result() == 1
        assert scope.client.ttl("k") > 0


def test_the_managers_client_also_sends_the_queue_first(manager: PoolManager) -> None:
    with manager.request_scope() as scope:
        scope.deferred.set("k", "from-scope")
        assert manager.client().get("k") == b"from-scope"
        assert current_scope("default") is scope


def test_handle_result_flushes_a_queued_command(manager: PoolManager) -> None:
    with manager.request_scope() as scope:
        handle = scope.deferred.incr("counter")
        assert not handle.done
        assert handle.result() == 1
        assert scope.queued == 0


def test_an_error_in_the_middle_is_reported_and_the_others_are_applied(
    manager: PoolManager, direct: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    direct.set("text", "not a number")
    with (
        caplog.at_level(logging.WARNING, logger="ferrite_integrations.pipeline"),
        manager.request_scope() as scope,
    ):
        first = scope.deferred.set("a", 1)
        bad = scope.deferred.incr("text")
        last = scope.deferred.set("b", 2)
    assert first.result() is True
    assert last.result() is True
    assert isinstance(bad.exception(), redis.ResponseError)
    with pytest.raises(redis.ResponseError):
        bad.result()
    assert direct.mget(["a", "b"]) == [b"1", b"2"]
    logged = [r.getMessage() for r in caplog.records]
    assert len(logged) == 1
    assert manager.stats("default")["sync"]["pipelining"]["failed_deferred"] == 1
    assert "INCRBY" in logged[0]
    assert "not a number" not in logged[0]  # never values


def test_raise_on_error_raises_a_pipeline_error_listing_the_failures(
    manager: PoolManager, direct: redis.Redis
) -> None:
    direct.set("text", "x")

    def request() -> None:
        with manager.request_scope(raise_on_error=True) as scope:
            scope.deferred.incr("text")
            scope.deferred.set("ok", 1)
            scope.deferred.lpush("text", "y")

    with pytest.raises(PipelineError) as caught:
        request()
    assert [name for name, _ in caught.value.failures] == ["INCRBY", "LPUSH"]
    assert direct.get("ok") == b"1"


def test_a_scope_left_by_an_exception_still_flushes(
    manager: PoolManager, direct: redis.Redis
) -> None:
    def view() -> None:
        with manager.request_scope() as scope:
            scope.deferred.set("written", "yes")
            raise RuntimeError("view failed")

    with pytest.raises(RuntimeError):
        view()
    assert direct.get("written") == b"yes"


def test_discard_on_error_drops_the_queue_and_says_so(
    manager: PoolManager, direct: redis.Redis
) -> None:
    handles = []

    def view() -> None:
        with manager.request_scope(on_error="discard") as scope:
            handles.append(scope.deferred.set("written", "yes"))
            raise RuntimeError("view failed")

    with pytest.raises(RuntimeError):
        view()
    handle = handles[0]
    assert direct.get("written") is None
    with pytest.raises(DiscardedError):
        handle.result()


def test_commands_that_cannot_wait_run_at_once_after_the_queue(
    manager: PoolManager, direct: redis.Redis
) -> None:
    with manager.request_scope() as scope:
        scope.deferred.rpush("jobs", "a")
        popped = scope.deferred.blpop(["jobs"], timeout=1)
        assert popped.done
        assert tuple(popped.result()) == (b"jobs", b"a")
        scope.deferred.set("s1", 1)
        cursor = scope.deferred.scan(0, match="s*")
        assert cursor.done
        assert b"s1" in cursor.result()[1]
        scope.deferred.set("locked-by", "me")
        with scope.deferred.lock("resource", timeout=5):
            assert direct.get("locked-by") == b"me"


def test_nested_scopes_join_the_outer_one(manager: PoolManager, proxy: FaultProxy) -> None:
    before = proxy.requests_forwarded
    with manager.request_scope() as outer:
        outer.deferred.set("a", 1)
        with manager.request_scope() as inner:
            assert inner is outer
            inner.deferred.set("b", 2)
        assert outer.queued == 2  # the inner exit did not flush
    assert round_trips(proxy, before) == 1


def test_concurrent_scopes_in_threads_stay_apart(manager: PoolManager, direct: redis.Redis) -> None:
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def request(number: int) -> None:
        try:
            start.wait()
            with manager.request_scope() as scope:
                for i in range(20):
                    scope.deferred.set(f"t{number}:{i}", number)
                assert scope.client.get(f"t{number}:19") == str(number).encode()
                assert current_scope() is scope
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=request, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert direct.dbsize() == 160


def test_a_long_scope_does_not_pin_a_connection(manager: PoolManager) -> None:
    with manager.request_scope() as scope:
        scope.deferred.set("a", 1)
        scope.client.get("a")
        assert manager.stats("default")["sync"]["in_use"] == 0


def test_server_dying_mid_flush_reports_nothing_as_success(
    manager: PoolManager, proxy: FaultProxy, direct: redis.Redis
) -> None:
    with manager.request_scope() as scope:
        handles = [scope.deferred.incr("counter") for _ in range(5)]
        proxy.drop_reply_after(1, match=b"INCRBY")
    applied = int(direct.get("counter") or 0)
    for handle in handles:
        assert isinstance(handle.exception(), redis.ConnectionError)
    assert applied in (0, 5)  # the batch went out whole; no handle claims success
    with manager.request_scope() as scope:
        assert scope.client.incr("counter") == applied + 1  # and it was not resent


def test_outside_a_scope_deferred_commands_would_not_wait(manager: PoolManager) -> None:
    scope = manager.request_scope()
    handle = scope.deferred.set("k", 1)  # not entered: runs at once
    assert handle.done
    assert handle.result() is True
    assert current_scope() is None


def test_a_scope_knows_the_aliases_bound_to_its_pool_at_the_time_it_opens(
    manager: PoolManager, proxy: FaultProxy, direct: redis.Redis
) -> None:
    with manager.request_scope():
        assert current_scope("sessions") is None
    manager.configure("sessions", proxy.url, min_idle=1, breaker_threshold=100)  # same pool
    with manager.request_scope() as scope:
        assert current_scope("sessions") is scope
        scope.deferred.set("k", "v")
    assert direct.get("k") == b"v"
    manager.forget("sessions")
    with manager.request_scope():
        assert current_scope("sessions") is None
    manager.configure("default", proxy.url, replace=True, breaker_threshold=999)  # another pool
    with manager.request_scope() as scope:
        assert scope.pool is manager.pool("default")
        assert scope.pool.config.breaker_threshold == 999
