"""Faults against real servers, sync and async alike: a stopped, hung or restarted server,
killed connections, and replies lost after the command reached the server (through the
harness's FaultProxy). What the application sees must be fast, truthful, self-healing, and
never a write applied twice."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from ferrite_integrations import PoolManager, ServerUnavailableError
from ferrite_integrations.retry import command_name, is_safe_to_repeat
from ferrite_integrations.testing import EmbeddedServer, FaultProxy
from ferrite_integrations.testing.plugin import ServerFactory
from tests.conftest import wait_until
from tests.drivers import DRIVERS, Driver

NAME = "resilience-test"
FAST = {
    "socket_timeout": 0.3,
    "socket_connect_timeout": 0.3,
    "breaker_threshold": 3,
    "breaker_reset_timeout": 0.2,
    "health_timeout": 0.3,
}


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


# -- the circuit breaker --------------------------------------------------------------------


def test_stopped_server_opens_the_breaker_and_calls_then_fail_without_connecting(
    server: EmbeddedServer, proxy: FaultProxy, manager: PoolManager, driver: Driver
) -> None:
    manager.configure("default", proxy.url, **FAST)
    assert driver.command("default", "PING") is True
    server.stop()
    with pytest.raises(redis.ConnectionError) as first:
        driver.command("default", "GET", "k")
    assert not isinstance(first.value, ServerUnavailableError)  # it tried, and failed
    time.sleep(0.1)  # let the proxy's accept thread count the last attempt
    attempts = proxy.connections_accepted
    started = time.monotonic()
    for _ in range(20):
        with pytest.raises(ServerUnavailableError) as caught:
            driver.command("default", "GET", "k")
    assert time.monotonic() - started < 0.5  # 20 calls, no connect attempt, no timeout
    assert proxy.connections_accepted == attempts
    message = str(caught.value)
    assert f"127.0.0.1:{proxy.port}" in message
    assert "consecutive connection failures" in message
    assert "last error" in message
    assert isinstance(caught.value, redis.ConnectionError)

    server.start()  # same port: the application recovers without a restart
    wait_until(lambda: _succeeds(driver))
    assert driver.command("default", "SET", "k", "back") is True


def _succeeds(driver: Driver) -> bool:
    try:
        return bool(driver.command("default", "PING"))
    except redis.ConnectionError:
        return False


def test_a_failed_probe_opens_the_breaker_again(
    server: EmbeddedServer, proxy: FaultProxy, manager: PoolManager, driver: Driver
) -> None:
    manager.configure("default", proxy.url, **FAST)
    server.stop()
    for _ in range(2):
        with pytest.raises(redis.ConnectionError):
            driver.command("default", "PING")
    time.sleep(0.25)  # reset timeout over: the next call is the probe, and it fails
    attempts = proxy.connections_accepted
    with pytest.raises(redis.ConnectionError):
        driver.command("default", "PING")
    assert proxy.connections_accepted > attempts
    with pytest.raises(ServerUnavailableError, match=r"next probe is allowed in 0\.[3-4]"):
        driver.command("default", "PING")  # open again, for twice as long


def test_hung_server_times_out_opens_the_breaker_and_recovers_when_resumed(
    server: EmbeddedServer, manager: PoolManager, driver: Driver
) -> None:
    manager.configure("default", server.url, **FAST)
    assert driver.command("default", "PING") is True
    server.pause()
    try:
        with pytest.raises(redis.TimeoutError):
            driver.command("default", "GET", "k")
        outcomes = []
        for _ in range(4):
            with pytest.raises((redis.ConnectionError, redis.TimeoutError)) as caught:
                driver.command("default", "GET", "k")
            outcomes.append(type(caught.value))
        assert outcomes[-1] is ServerUnavailableError  # failing fast, not waiting any more
        started = time.monotonic()
        with pytest.raises(ServerUnavailableError):
            driver.command("default", "GET", "k")
        assert time.monotonic() - started < 0.1
        report = driver.health("default")
        assert report["status"] == "down"
        assert report["pools"]["default"]["breaker"] == "open"
    finally:
        server.resume()
    wait_until(lambda: driver.health("default")["status"] == "up")
    assert driver.command("default", "PING") is True


def test_breaker_is_shared_by_every_pool_that_talks_to_the_server(
    server: EmbeddedServer, proxy: FaultProxy, manager: PoolManager, driver: Driver
) -> None:
    manager.configure("a", proxy.url, **FAST)
    manager.configure("b", proxy.url, client_name="other", **FAST)
    assert driver.pool("a") is not driver.pool("b")
    server.stop()
    with pytest.raises(redis.ConnectionError):
        driver.command("a", "PING")
    with pytest.raises(ServerUnavailableError):
        driver.command("b", "PING")


# -- retries -------------------------------------------------------------------------------


def test_lost_reply_to_incr_is_not_resent_and_the_counter_moves_exactly_once(
    server: EmbeddedServer,
    proxy: FaultProxy,
    manager: PoolManager,
    driver: Driver,
    direct: redis.Redis,
) -> None:
    manager.configure("default", proxy.url, **FAST)
    assert driver.command("default", "SET", "counter", 0) is True
    proxy.drop_reply_after(1, match=b"INCR")
    with pytest.raises(redis.ConnectionError):
        driver.command("default", "INCR", "counter")
    assert proxy.faults_triggered == 1
    assert direct.get("counter") == b"1"
    assert driver.command("default", "INCR", "counter") == 2


def test_lost_reply_to_get_is_retried_and_succeeds(
    server: EmbeddedServer,
    proxy: FaultProxy,
    manager: PoolManager,
    driver: Driver,
    direct: redis.Redis,
) -> None:
    manager.configure("default", proxy.url, **FAST)
    direct.set("k", "value")
    assert driver.command("default", "PING") is True
    proxy.drop_reply_after(1, match=b"GET")
    assert driver.command("default", "GET", "k") == b"value"
    assert proxy.faults_triggered == 1


def test_pipelines_are_retried_only_when_every_command_is_read_only(
    server: EmbeddedServer,
    proxy: FaultProxy,
    manager: PoolManager,
    driver: Driver,
    direct: redis.Redis,
) -> None:
    manager.configure("default", proxy.url, **FAST)
    direct.mset({"a": "1", "b": "2"})
    assert driver.command("default", "PING") is True
    proxy.drop_reply_after(1, match=b"MGET")
    assert driver.pipeline("default", [("GET", "a"), ("MGET", "a", "b")]) == [
        b"1",
        [b"1", b"2"],
    ]
    proxy.drop_reply_after(1, match=b"LPUSH")
    with pytest.raises(redis.ConnectionError):
        driver.pipeline("default", [("GET", "a"), ("LPUSH", "list", "x")])
    assert direct.llen("list") == 1


def test_killed_connections_are_replaced_before_any_command_is_sent(
    server: EmbeddedServer, manager: PoolManager, driver: Driver, direct: redis.Redis
) -> None:
    manager.configure("default", server.url, min_idle=3, **FAST)
    driver.warm()
    server.kill_clients()
    assert driver.command("default", "INCR", "once") == 1
    assert direct.get("once") == b"1"


def test_connect_refused_is_retried_with_backoff_then_reported(
    server: EmbeddedServer, manager: PoolManager, driver: Driver
) -> None:
    manager.configure("default", server.url, retries=2, **{**FAST, "breaker_threshold": 10})
    server.stop()
    with pytest.raises(redis.ConnectionError, match=r"refused|Connect call failed"):
        driver.command("default", "PING")
    assert driver.pool("default").breaker.snapshot().consecutive_failures == 3


@pytest.mark.parametrize(
    ("names", "safe"),
    [
        (["GET"], True),
        (["MGET"], True),
        (["EXISTS", "TTL", "PING", "SCAN"], True),
        (["MULTI", "GET", "EXEC"], True),
        (["INCR"], False),
        (["LPUSH"], False),
        (["SET"], False),
        (["GET", "INCR"], False),
        (["MULTI", "INCR", "EXEC"], False),
        (["CLIENT LIST"], True),
        (["CLIENT KILL"], False),
        (["CONFIG SET"], False),
        ([], False),
    ],
)
def test_the_safe_to_repeat_table(names: list[str], safe: bool) -> None:
    assert is_safe_to_repeat(names) is safe


def test_command_names_are_read_from_packed_arguments() -> None:
    assert command_name((b"get", b"k")) == "GET"
    assert command_name(("client", "list")) == "CLIENT LIST"
    assert command_name(("SET", "k", "v", "NX")) == "SET"


# -- health, degraded mode, monitor ---------------------------------------------------------


def test_health_report_up_and_down_and_never_a_password(
    ferrite_server_factory: ServerFactory, manager: PoolManager, driver: Driver
) -> None:
    server = ferrite_server_factory(password="hunter2-secret")
    manager.configure("default", server.url, max_connections=7, **FAST)
    manager.configure("cache", server.url, max_connections=7, **FAST)
    report = driver.health()
    assert report["status"] == "up"
    pool = report["pools"]["default"]
    assert pool["status"] == "up"
    assert pool["breaker"] == "closed"
    assert pool["latency_ms"] is not None
    assert pool["latency_ms"] < 300
    assert pool["last_error"] is None
    assert (pool["max"], pool["address"]) == (7, f"127.0.0.1:{server.port}")
    assert set(report["pools"]) == {"default", "cache"}
    server.stop()
    report = driver.health("default")
    assert report["status"] == "down"
    assert report["pools"]["default"]["latency_ms"] is None
    assert report["pools"]["default"]["last_error"]
    assert "hunter2-secret" not in repr(report)
    assert "hunter2-secret" not in repr(driver.stats("default"))


def test_health_is_live_not_cached(
    server: EmbeddedServer, manager: PoolManager, driver: Driver
) -> None:
    manager.configure("default", server.url, **FAST)
    assert driver.health()["status"] == "up"
    server.stop()
    assert driver.health()["status"] == "down"
    server.start()
    wait_until(lambda: driver.health()["status"] == "up")


def test_mixed_pools_report_degraded(
    server: EmbeddedServer, manager: PoolManager, driver: Driver
) -> None:
    manager.configure("default", server.url, **FAST)
    manager.configure("elsewhere", "redis://127.0.0.1:1/0", **FAST)
    report = driver.health()
    assert report["status"] == "degraded"
    assert report["pools"]["default"]["status"] == "up"
    assert report["pools"]["elsewhere"]["status"] == "down"


def test_degraded_mode_returns_the_default_counts_and_logs_once_per_interval(
    server: EmbeddedServer,
    manager: PoolManager,
    driver: Driver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    manager.configure("default", server.url, health_check_interval=60, **FAST)
    assert driver.tolerant("default", "SET", "k", "v") is True
    server.stop()
    with caplog.at_level(logging.WARNING, logger="ferrite_integrations.health"):
        results = [driver.tolerant("default", "GET", "k", default="miss") for _ in range(10)]
    assert results == ["miss"] * 10
    logged = [r for r in caplog.records if "treated as misses" in r.getMessage()]
    assert len(logged) == 1
    assert manager.stats("default")["suppressed_errors"] == 10


def test_monitor_restores_min_idle_and_closes_the_breaker_after_recovery(
    server: EmbeddedServer, manager: PoolManager, driver: Driver
) -> None:
    manager.configure("default", server.url, min_idle=2, health_check_interval=0.05, **FAST)
    driver.warm()
    driver.start_monitor()
    server.kill_clients()
    wait_until(lambda: server.connected_clients(NAME) == 2)
    server.stop()
    wait_until(lambda: driver.pool("default").breaker.state != "closed")
    server.start()
    wait_until(lambda: driver.pool("default").breaker.state == "closed")
    wait_until(lambda: server.connected_clients(NAME) == 2)
    assert driver.stats()["pings"] > 0


def test_monitor_stops_with_close(server: EmbeddedServer, manager: PoolManager) -> None:
    manager.configure("default", server.url, min_idle=1, health_check_interval=0.05)
    manager.start_monitor()
    manager.start_monitor()  # idempotent
    wait_until(lambda: server.connected_clients(NAME) == 1)
    manager.close()
    time.sleep(0.2)
    assert server.connected_clients(NAME) == 0  # nothing reopened them


def test_concurrent_health_checks_share_one_ping_per_server(
    server: EmbeddedServer, proxy: FaultProxy, manager: PoolManager, direct: redis.Redis
) -> None:
    import threading

    manager.configure("default", proxy.url, **FAST)
    manager.client().ping()
    watcher = direct
    before = int(watcher.info("commandstats").get("cmdstat_ping", {}).get("calls", 0))
    proxy.delay(0.05)
    reports: list[dict[str, Any]] = []
    threads = [threading.Thread(target=lambda: reports.append(manager.health())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    after = int(watcher.info("commandstats").get("cmdstat_ping", {}).get("calls", 0))
    assert [report["status"] for report in reports] == ["up"] * 8
    assert after - before <= 2  # one flight, or two if a thread arrived after it landed


def test_a_wrong_password_does_not_open_the_shared_breaker(
    ferrite_server_factory: ServerFactory, manager: PoolManager, driver: Driver
) -> None:
    server = ferrite_server_factory(password="right")
    manager.configure("good", server.url, **FAST)
    manager.configure("stale", f"redis://:wrong@127.0.0.1:{server.port}/0", **FAST)
    for _ in range(5):
        with pytest.raises(redis.AuthenticationError):
            driver.command("stale", "PING")
    assert driver.command("good", "PING") is True
    assert driver.pool("good").breaker.state == "closed"
    with pytest.raises(redis.AuthenticationError):  # a configuration error stays loud
        driver.tolerant("stale", "GET", "k")


def test_the_monitor_survives_a_pool_that_cannot_be_maintained(
    server: EmbeddedServer, manager: PoolManager, driver: Driver
) -> None:
    manager.configure("broken", f"redis://127.0.0.1:{server.port}/99", min_idle=1, **FAST)
    manager.configure("default", server.url, min_idle=2, health_check_interval=0.05, **FAST)
    driver.start_monitor()
    wait_until(lambda: server.connected_clients(NAME) == 2)  # "broken" fails every round


def test_health_answers_within_health_timeout_even_on_a_slow_network(
    proxy: FaultProxy, manager: PoolManager, driver: Driver
) -> None:
    manager.configure("default", proxy.url, **{**FAST, "health_timeout": 0.3})
    proxy.delay(0.1)  # every round trip of a fresh probe connection's handshake pays this
    started = time.monotonic()
    report = driver.health()
    assert time.monotonic() - started < 0.6
    assert report["status"] in ("up", "down")


def test_health_of_several_hung_servers_takes_one_health_timeout_not_their_sum(
    ferrite_server_factory: ServerFactory, manager: PoolManager, driver: Driver
) -> None:
    servers = [ferrite_server_factory() for _ in range(3)]
    options = {**FAST, "health_timeout": 0.5}
    for index, server in enumerate(servers):
        manager.configure(f"pool{index}", server.url, **options)
        manager.configure(f"pool{index}-db1", server.url[:-1] + "1", **options)
        server.pause()
    try:
        started = time.monotonic()
        report = driver.health()
        elapsed = time.monotonic() - started
    finally:
        for server in servers:
            server.resume()
    assert report["status"] == "down"
    assert len(report["pools"]) == 6
    assert elapsed < 1.2  # one after another, the six pools would take 3 s


def test_async_monitor_stops_at_shutdown_whenever_the_shutdown_lands(
    server: EmbeddedServer,
) -> None:
    import asyncio

    async def start_and_stop(manager: PoolManager, pause: float) -> None:
        manager.configure("default", server.url, min_idle=1, health_check_interval=0.01)
        manager.start_async_monitor()
        await asyncio.sleep(pause)
        await asyncio.wait_for(manager.aclose(), 8)

    for run in range(40):
        asyncio.run(start_and_stop(PoolManager(client_name=NAME), 0.002 * (run % 10)))


def test_a_cancelled_health_check_does_not_cancel_the_others_sharing_its_ping(
    proxy: FaultProxy, manager: PoolManager
) -> None:
    import asyncio

    manager.configure("default", proxy.url, **{**FAST, "health_timeout": 1.0})
    proxy.delay(0.05)

    async def main() -> list[str]:
        leader = asyncio.create_task(manager.ahealth())
        await asyncio.sleep(0.01)
        follower = asyncio.create_task(manager.ahealth())
        await asyncio.sleep(0.01)
        leader.cancel()
        report = await follower
        return [report["status"]]

    assert asyncio.run(main()) == ["up"]


def test_pubsub_reconnects_after_the_server_drops_it(
    server: EmbeddedServer, manager: PoolManager
) -> None:
    manager.configure("default", server.url, **FAST)
    client = manager.client()
    pubsub = client.pubsub()
    pubsub.subscribe("news")
    assert pubsub.get_message(timeout=1)["type"] == "subscribe"
    server.kill_clients()
    message = None
    deadline = time.monotonic() + 5
    while message is None or message.get("type") != "message":
        assert time.monotonic() < deadline
        with_publish = pubsub.get_message(timeout=0.2)
        if with_publish is not None and with_publish["type"] == "subscribe":
            client.publish("news", "hello")
        message = with_publish or message
    assert message["data"] == b"hello"
    pubsub.close()
