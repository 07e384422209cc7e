"""The shared pools, sync and async alike, against real servers; connections are counted
on the server with CLIENT LIST (by client name, never counting the harness's own)."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import select
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from ferrite_integrations import ConfigError, PoolManager, PoolTimeoutError
from ferrite_integrations.testing import EmbeddedServer, FaultProxy
from ferrite_integrations.testing.plugin import ServerFactory
from tests.conftest import run_then_close, wait_until
from tests.drivers import DRIVERS, Driver

NAME = "pool-test"


@pytest.fixture
def manager() -> Iterator[PoolManager]:
    manager = PoolManager(client_name=NAME)
    yield manager
    manager.close()


@pytest.fixture(params=sorted(DRIVERS))
def driver(request: pytest.FixtureRequest, manager: PoolManager) -> Iterator[Driver]:
    driver = DRIVERS[request.param](manager)
    yield driver
    driver.shutdown()


def on_server(server: EmbeddedServer) -> int:
    return server.connected_clients(NAME)


# -- sharing --------------------------------------------------------------------------


def test_equal_configurations_share_one_pool(
    server: EmbeddedServer, manager: PoolManager, driver: Driver
) -> None:
    manager.configure("default", server.url, max_connections=5)
    manager.configure("sessions", f"redis://127.0.0.1:{server.port}/0", max_connections=5)
    assert driver.pool("default") is driver.pool("sessions")
    driver.command("default", "SET", "k", "v")
    assert driver.command("sessions", "GET", "k") == b"v"
    assert on_server(server) == 1
    assert manager.stats("default")["shared_with"] == ["sessions"]


@pytest.mark.parametrize(
    "different",
    [
        {"socket_timeout": 4.0},
        {"max_connections": 6},
        {"decode_responses": True},
        {"client_name": "other"},
    ],
)
def test_any_differing_option_gives_a_separate_pool(
    server: EmbeddedServer, manager: PoolManager, driver: Driver, different: dict[str, Any]
) -> None:
    manager.configure("a", server.url, max_connections=5)
    manager.configure("b", server.url, **{"max_connections": 5, **different})
    assert driver.pool("a") is not driver.pool("b")


def test_32_threads_asking_at_once_get_one_pool(
    server: EmbeddedServer, manager: PoolManager
) -> None:
    manager.configure("default", server.url)
    start = threading.Barrier(32)
    found: list[Any] = []

    def ask() -> None:
        start.wait()
        found.append(manager.pool("default"))

    threads = [threading.Thread(target=ask) for _ in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(found) == 32
    assert len({id(pool) for pool in found}) == 1


def test_configure_rules(server: EmbeddedServer, manager: PoolManager) -> None:
    first = manager.configure("default", server.url, max_connections=5)
    assert manager.configure("default", server.url, max_connections=5) == first
    with pytest.raises(ConfigError, match="already configured") as caught:
        manager.configure("default", server.url, max_connections=6)
    assert "replace=True" in str(caught.value)
    replaced = manager.configure("default", server.url, max_connections=6, replace=True)
    assert manager.config("default") == replaced
    with pytest.raises(ConfigError, match=r"No pool alias 'missing'.*\['default'\]"):
        manager.pool("missing")


# -- sizes and lifecycle -------------------------------------------------------------------


def test_warm_opens_min_idle_connections_visible_on_the_server(
    server: EmbeddedServer, manager: PoolManager, driver: Driver
) -> None:
    manager.configure("default", server.url, max_connections=5, min_idle=3)
    assert on_server(server) == 0
    assert driver.warm() == {"default": 3}
    assert on_server(server) == 3
    assert driver.warm() == {"default": 0}
    stats = driver.stats()
    assert (stats["idle"], stats["in_use"], stats["created"]) == (3, 0, 3)


def test_idle_connections_beyond_min_idle_are_closed_after_idle_timeout(
    server: EmbeddedServer, manager: PoolManager, driver: Driver
) -> None:
    manager.configure("default", server.url, max_connections=5, min_idle=1, idle_timeout=0.2)
    held = [driver.borrow() for _ in range(4)]
    for connection in held:
        driver.release(connection)
    assert on_server(server) == 4
    time.sleep(0.25)
    driver.maintain()
    assert on_server(server) == 1
    assert driver.stats()["closed"]["idle"] == 3


def test_max_lifetime_retires_old_connections(
    server: EmbeddedServer, manager: PoolManager, driver: Driver
) -> None:
    manager.configure("default", server.url, max_connections=5, max_lifetime=0.2)
    first_id = driver.command("default", "CLIENT", "ID")
    assert driver.command("default", "CLIENT", "ID") == first_id
    time.sleep(0.25)
    second_id = driver.command("default", "CLIENT", "ID")
    assert second_id != first_id
    assert on_server(server) == 1
    assert driver.stats()["closed"]["lifetime"] == 1


def test_lifetimes_are_jittered(server: EmbeddedServer, manager: PoolManager) -> None:
    manager.configure("default", server.url, max_connections=20, max_lifetime=100.0)
    pool = manager.pool("default")
    held = [pool.get_connection() for _ in range(20)]
    expiries = {c.ferrite_lease.expires - c.ferrite_lease.created for c in held}
    for connection in held:
        pool.release(connection)
    assert len(expiries) > 1
    assert all(97.5 <= lifetime <= 100.0 for lifetime in expiries)


def test_a_connection_killed_on_the_server_is_replaced_on_borrow(
    server: EmbeddedServer, manager: PoolManager, driver: Driver
) -> None:
    manager.configure("default", server.url, max_connections=5, min_idle=2)
    driver.warm()
    driver.command("default", "SET", "k", "before")
    assert server.kill_clients() == 2
    assert driver.command("default", "GET", "k") == b"before"
    assert driver.stats()["closed"]["broken"] == 1


def wait_for_the_kernels_eof(connection: Any) -> None:
    """Block, without letting the event loop run, until the kernel holds what the server
    sent on an async connection: a check must then see it on its own, as on a borrow."""
    sock = connection._writer.transport.get_extra_info("socket")
    wait_until(lambda: select.select([sock], [], [], 0)[0])


def test_the_borrow_check_watches_the_socket_of_the_latest_connect(
    server: EmbeddedServer, manager: PoolManager
) -> None:
    manager.configure("default", server.url, max_connections=1)
    pool = manager.pool("default")
    connection = pool.get_connection()
    try:
        assert connection.looks_clean()
        connection.disconnect()
        # A pipe takes the closed socket's descriptor number, so a check still polling
        # that number would watch the pipe (never readable) instead of the new socket.
        read_end, write_end = os.pipe()
        try:
            connection.connect()
            assert connection.looks_clean()
            assert server.kill_clients() == 1
            wait_until(lambda: not connection.looks_clean())
        finally:
            os.close(read_end)
            os.close(write_end)
    finally:
        pool.release(connection)


def test_the_async_borrow_check_watches_the_socket_of_the_latest_connect(
    server: EmbeddedServer, manager: PoolManager
) -> None:
    manager.configure("default", server.url, max_connections=1)

    async def body() -> None:
        pool = manager.async_pool("default")
        connection = await pool.get_connection()
        try:
            assert await connection.looks_clean()
            await connection.disconnect()
            read_end, write_end = os.pipe()  # see the sync test above
            try:
                await connection.connect()
                assert await connection.looks_clean()
                assert server.kill_clients() == 1
                wait_for_the_kernels_eof(connection)
                assert not await connection.looks_clean()
            finally:
                os.close(read_end)
                os.close(write_end)
        finally:
            await pool.release(connection)

    run_then_close(manager, body)


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_an_async_write_after_the_server_closed_the_idle_connection_is_not_lost(
    ferrite_server_factory: ServerFactory, manager: PoolManager, tls: bool
) -> None:
    # A busy loop has not read the EOF yet when the next command borrows the connection:
    # the borrow check must still see it, or the SET fails after it was sent.
    server = ferrite_server_factory(tls=tls)
    manager.configure("default", server.url, max_connections=1)

    async def body() -> None:
        client = manager.async_client("default")
        await client.set("k", "start")
        for round_number in range(10):
            assert server.kill_clients() == 1
            wait_until(lambda: on_server(server) == 0)  # blocks the loop, as busy work does
            await client.set("k", round_number)
            assert await client.get("k") == str(round_number).encode()
        assert manager.stats("default")["async"][0]["closed"]["broken"] == 10

    run_then_close(manager, body)


def test_an_async_write_after_a_reset_of_the_idle_connection_is_not_lost(
    proxy: FaultProxy, manager: PoolManager
) -> None:
    # A load balancer or NAT that forgot the connection answers with RST: the loop closes
    # the transport, and nothing is left for the reader's own check to see.
    manager.configure("default", proxy.url, max_connections=4)

    async def body() -> None:
        client = manager.async_client("default")
        for round_number in range(10):
            await asyncio.gather(*(client.set(f"k{n}", "start") for n in range(4)))
            proxy.cut_all(reset=True)  # returns once the resets were sent
            writes = (client.set(f"k{n}", round_number) for n in range(4))
            await asyncio.gather(*writes)
            assert await client.get("k3") == str(round_number).encode()
        stats = manager.stats("default")["async"][0]
        assert stats["closed"]["broken"] >= 10
        assert manager.health("default")["status"] == "up"

    run_then_close(manager, body)


@pytest.mark.parametrize("checker", ["ping", "maintain"])
def test_a_pool_check_cancelled_while_it_checks_an_idle_connection_frees_its_slot(
    server: EmbeddedServer, manager: PoolManager, checker: str
) -> None:
    manager.configure("default", server.url, max_connections=3, acquire_timeout=0.5)

    async def body() -> dict[str, Any]:
        pool = manager.async_pool("default")
        connections = [await pool.get_connection() for _ in range(3)]
        for connection in connections:
            await pool.release(connection)
        assert server.kill_clients() == 3
        for connection in connections:  # the check has loop turns to wait
            wait_for_the_kernels_eof(connection)
        check = pool.ping(1.0) if checker == "ping" else pool.maintain()
        task = asyncio.ensure_future(check)
        await asyncio.sleep(0)  # the check took an idle connection and waits a loop turn
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # every slot is free again (maintain had taken all three, and checked only one)
        borrowed = [await pool.get_connection() for _ in range(3)]
        for connection in borrowed:
            await pool.release(connection)
        stats: dict[str, Any] = pool.stats()
        return stats

    stats = run_then_close(manager, body)
    assert (stats["in_use"], stats["waiting"], stats["timeouts"]) == (0, 0, 0)


def test_idle_connection_is_validated_after_health_check_interval(
    server: EmbeddedServer, manager: PoolManager, driver: Driver
) -> None:
    manager.configure("default", server.url, health_check_interval=0.1)
    watcher = redis.Redis(**server.redis_kwargs())

    def pings() -> int:
        stats = watcher.info("commandstats").get("cmdstat_ping", {})
        return int(stats.get("calls", 0))

    driver.command("default", "SET", "k", "v")
    before = pings()
    driver.command("default", "GET", "k")
    assert pings() == before
    time.sleep(0.15)
    driver.command("default", "GET", "k")
    assert pings() == before + 1
    watcher.close()


# -- waiting ------------------------------------------------------------------------------


def test_exhausted_pool_times_out_with_counts(
    server: EmbeddedServer, manager: PoolManager, driver: Driver
) -> None:
    manager.configure("default", server.url, max_connections=2, acquire_timeout=0.2)
    held = [driver.borrow(), driver.borrow()]
    started = time.monotonic()
    with pytest.raises(PoolTimeoutError) as caught:
        driver.borrow()
    waited = time.monotonic() - started
    assert 0.18 <= waited < 2.0
    message = str(caught.value)
    assert re.search(
        r"Timeout waiting for connection from pool 'default' after 0\.2 s "
        r"\(2 in use, 0 idle, 1 waiting, max 2; longest held 0\.\d s\)",
        message,
    ), message
    assert isinstance(caught.value, redis.ConnectionError)
    stats = driver.stats()
    assert (stats["timeouts"], stats["waiting"]) == (1, 0)
    for connection in held:
        driver.release(connection)
    assert driver.stats()["idle"] == 2


def test_released_connections_go_to_the_longest_waiter_first(
    server: EmbeddedServer, manager: PoolManager, driver: Driver
) -> None:
    manager.configure("default", server.url, max_connections=1, acquire_timeout=5.0)
    holder = driver.borrow()
    waiters = []
    for position in range(1, 6):
        waiters.append(driver.borrow_soon())
        wait_until(lambda position=position: driver.stats()["waiting"] == position)
    served = []
    connection = holder
    for index, waiter in enumerate(waiters):
        driver.release(connection)
        connection = waiter.result(timeout=5)
        served.append(index)
        assert all(not later.done() for later in waiters[index + 1 :])
    driver.release(connection)
    assert served == [0, 1, 2, 3, 4]
    assert on_server(server) == 1


def test_waiting_callers_are_served_when_connections_return(
    server: EmbeddedServer, manager: PoolManager, driver: Driver
) -> None:
    manager.configure("default", server.url, max_connections=3, acquire_timeout=5.0)
    futures = [driver.borrow_soon() for _ in range(12)]
    served = 0
    pending = list(futures)
    while pending:
        done = [future for future in pending if future.done()]
        for future in done:
            driver.release(future.result())
            pending.remove(future)
            served += 1
        time.sleep(0.001)
    assert served == 12
    stats = driver.stats()
    assert stats["total"] <= 3
    assert stats["acquire_wait"]["count"] == 12
    assert on_server(server) <= 3


# -- leaks, identity, stats ---------------------------------------------------------------


def test_a_connection_held_too_long_is_reported_once_with_its_stack(
    server: EmbeddedServer,
    manager: PoolManager,
    driver: Driver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    manager.configure("default", server.url, leak_detection_threshold=0.05)
    connection = driver.borrow()
    time.sleep(0.08)
    with caplog.at_level(logging.WARNING, logger="ferrite_integrations.pool"):
        driver.maintain()
        driver.maintain()
    warnings = [r for r in caplog.records if "has been held for" in r.getMessage()]
    assert len(warnings) == 1
    assert "leak_detection_threshold=0.05" in warnings[0].getMessage()
    assert "drivers.py" in warnings[0].getMessage()  # where the test driver borrowed it
    driver.release(connection)
    assert driver.stats()["leaks_reported"] == 1


def test_connections_carry_the_process_name_by_default(server: EmbeddedServer) -> None:
    manager = PoolManager()
    manager.configure("default", server.url)
    manager.client().ping()
    names = {client["name"] for client in server.client_list()}
    assert names == {manager.client_name}
    assert manager.client_name
    assert " " not in manager.client_name
    manager.close()


def test_repr_and_stats_show_the_counts(
    server: EmbeddedServer, manager: PoolManager, driver: Driver
) -> None:
    manager.configure("default", server.url, max_connections=4, password=None)
    held = driver.borrow()
    pool = driver.pool()
    assert re.search(
        r"'default' redis://127\.0\.0\.1:\d+/0 in use 1 / idle 0 / waiting 0 / max 4", repr(pool)
    )
    stats = driver.stats()
    assert stats["address"] == f"127.0.0.1:{server.port}"
    assert set(stats) >= {
        "in_use", "idle", "total", "max", "waiting", "created", "closed",
        "acquire_wait", "timeouts", "health_check_failures",
    }  # fmt: skip
    assert set(stats["acquire_wait"]) == {"count", "p50", "p99", "max"}
    driver.release(held)


def test_close_leaves_no_connection_on_the_server(
    server: EmbeddedServer, manager: PoolManager, driver: Driver
) -> None:
    manager.configure("default", server.url, max_connections=5, min_idle=2)
    driver.warm()
    held = driver.borrow()
    driver.command("default", "PING")
    driver.release(held)
    assert on_server(server) >= 2
    driver.close_manager()
    wait_until(lambda: on_server(server) == 0)
    driver.close_manager()  # idempotent
    assert driver.command("default", "PING") is True  # pools are made again on demand


def test_password_never_appears_in_repr_or_stats(
    ferrite_server_factory: ServerFactory, manager: PoolManager, driver: Driver
) -> None:
    server = ferrite_server_factory(password="hunter2-secret")
    manager.configure("default", server.url)
    driver.command("default", "PING")
    assert "hunter2-secret" not in repr(driver.pool())
    assert "hunter2-secret" not in repr(manager.stats())
    assert "hunter2-secret" not in repr(manager)


def test_a_hung_server_fails_the_validation_ping_and_says_so(
    server: EmbeddedServer, manager: PoolManager, driver: Driver
) -> None:
    manager.configure(
        "default",
        server.url,
        health_check_interval=0.05,
        socket_timeout=0.2,
        socket_connect_timeout=0.2,
        retries=0,
        breaker_threshold=100,  # this test is about the check on borrow, not the breaker
    )
    driver.command("default", "PING")
    time.sleep(0.08)
    server.pause()
    try:
        with pytest.raises(redis.RedisError):
            driver.command("default", "PING")
    finally:
        server.resume()
    assert driver.stats()["health_check_failures"] == 1
    assert driver.command("default", "PING") is True
