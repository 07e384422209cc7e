"""``busy_poll``: a sync connection polls for its reply before it sleeps in the kernel.
What a user sees: the thread no longer goes to sleep on each round trip, replies, errors
and timeouts are the same as without it, and async connections never poll."""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import threading
from collections.abc import Iterator

import pytest
import redis

from ferrite_integrations import PoolManager
from ferrite_integrations.config import PoolConfig
from ferrite_integrations.connection import connection_kwargs
from ferrite_integrations.testing import EmbeddedServer, FaultProxy
from ferrite_integrations.testing.plugin import ServerFactory

NAME = "busy-poll-test"
ROUND_TRIPS = 200


@pytest.fixture
def manager() -> Iterator[PoolManager]:
    manager = PoolManager(client_name=NAME)
    yield manager
    manager.close()


def _sleeps_during(client: redis.Redis, round_trips: int) -> int:
    """How many times this thread slept (voluntary context switches) over ``round_trips``
    GETs."""
    before = resource.getrusage(resource.RUSAGE_THREAD).ru_nvcsw
    for _ in range(round_trips):
        assert client.get("k") == b"v"
    return resource.getrusage(resource.RUSAGE_THREAD).ru_nvcsw - before


@pytest.fixture
def apart(server: EmbeddedServer) -> Iterator[None]:
    """This thread and the server on different CPUs: each reply then comes while this
    thread waits for it. On one CPU the server only runs once the thread is off it, with
    or without polling, so there is nothing to tell apart."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2 or server.pid is None:
        pytest.skip("needs two CPUs: on one, a thread never waits for a reply in the kernel")
    os.sched_setaffinity(server.pid, {cpus[1]})
    os.sched_setaffinity(0, {cpus[0]})  # this thread only
    try:
        yield
    finally:
        os.sched_setaffinity(0, set(cpus))


@pytest.mark.usefixtures("apart")
def test_a_thread_that_busy_polls_no_longer_sleeps_on_each_round_trip(
    server: EmbeddedServer, manager: PoolManager
) -> None:
    manager.configure("polling", server.url, busy_poll=0.001)
    manager.configure("sleeping", server.url, max_connections=3)
    polling, sleeping = manager.client("polling"), manager.client("sleeping")
    polling.set("k", "v")
    assert _sleeps_during(sleeping, ROUND_TRIPS) > ROUND_TRIPS // 2
    # The fewest of three runs: a burst of load elsewhere on the machine can delay replies
    # past the poll window for a while; without polling, every run sleeps on most GETs.
    assert min(_sleeps_during(polling, ROUND_TRIPS) for _ in range(3)) < ROUND_TRIPS // 4


class _Interrupted(BaseException):
    """What a signal handler raises: Ctrl-C, a task runner's soft time limit."""


def _interrupt(signum: int, frame: object) -> None:
    raise _Interrupted


def test_a_read_interrupted_while_it_polls_leaves_no_reply_for_the_next_command(
    server: EmbeddedServer, manager: PoolManager
) -> None:
    manager.configure("default", server.url, busy_poll=0.001, socket_timeout=1.0, max_connections=1)
    client = manager.client()
    client.set("a", "A")
    client.set("b", "B")
    server.pause()
    # SIGALRM is pytest-timeout's: its handler and the time left on its alarm are put back.
    previous = signal.signal(signal.SIGALRM, _interrupt)
    alarm = signal.setitimer(signal.ITIMER_REAL, 0.0003)  # 0.3 ms in: while it polls
    try:
        with pytest.raises(_Interrupted):
            client.get("a")
    finally:
        signal.setitimer(signal.ITIMER_REAL, *alarm)
        signal.signal(signal.SIGALRM, previous)
        # The reply to GET a arrives only after the next command has gone out.
        resume = threading.Timer(0.1, server.resume)
        resume.start()
    try:
        assert client.get("b") == b"B"
    finally:
        resume.join()


@pytest.mark.parametrize("transport", ["tls", "unix"])
def test_replies_pipelines_and_health_checks_are_unchanged(
    ferrite_tls_server: EmbeddedServer,
    ferrite_server_factory: ServerFactory,
    manager: PoolManager,
    transport: str,
) -> None:
    url = (
        ferrite_tls_server.url
        if transport == "tls"
        else ferrite_server_factory(unix_socket=True).unix_url
    )
    manager.configure("default", url, busy_poll=0.0005, health_check_interval=0.001)
    client = manager.client()
    for index in range(50):
        client.set(f"k{index}", index)
    with client.pipeline() as pipe:
        pipe.get("k1").incr("k2").lrange("nothing", 0, -1)
        assert pipe.execute() == [b"1", 3, []]
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        client.lpush("k1", "x")
    assert client.get("k49") == b"49"
    assert manager.stats("default")["sync"]["created"] == 1


def test_a_hung_server_still_times_out_and_the_pool_recovers(
    server: EmbeddedServer, manager: PoolManager
) -> None:
    manager.configure("default", server.url, busy_poll=0.001, socket_timeout=0.2, retries=0)
    client = manager.client()
    client.set("k", "before")
    server.pause()
    try:
        with pytest.raises(redis.TimeoutError, match="Timeout reading from"):
            client.get("k")
    finally:
        server.resume()
    assert client.get("k") == b"before"


def test_a_connection_lost_while_it_polls_fails_as_without_polling(
    proxy: FaultProxy, direct: redis.Redis, manager: PoolManager
) -> None:
    manager.configure("default", proxy.url, busy_poll=0.001)
    client = manager.client()
    client.set("k", "v")
    proxy.drop_reply_after(1, match=b"GET")
    assert client.get("k") == b"v"  # a read that lost its reply is sent again
    proxy.drop_reply_after(1, match=b"INCR")
    with pytest.raises(redis.ConnectionError):
        client.incr("n")  # a write that reached the server is not sent twice
    assert direct.get("n") == b"1"
    assert proxy.faults_triggered == 2


def test_pub_sub_messages_arrive_on_a_polling_connection(
    server: EmbeddedServer, manager: PoolManager
) -> None:
    manager.configure("default", server.url, busy_poll=0.001)
    client = manager.client()
    with client.pubsub() as pubsub:
        pubsub.subscribe("news")
        assert pubsub.get_message(timeout=1.0)["type"] == "subscribe"  # type: ignore[index]
        client.publish("news", "hello")
        message = pubsub.get_message(timeout=1.0)
    assert message is not None
    assert message["data"] == b"hello"


def test_only_sync_connections_poll(ferrite_server_factory: ServerFactory) -> None:
    server = ferrite_server_factory()
    config = PoolConfig.from_url(f"{server.url}?busy_poll=0.0002")
    assert config.busy_poll == 0.0002
    assert connection_kwargs(config)["busy_poll"] == 0.0002
    assert "busy_poll" not in connection_kwargs(config, use_asyncio=True)
    assert "busy_poll" not in connection_kwargs(PoolConfig())
    manager = PoolManager(client_name=NAME)

    async def both() -> bytes | None:
        async_client = manager.async_client()
        await async_client.set("k", "async")
        value: bytes | None = await async_client.get("k")
        await manager.aclose()
        return value

    try:
        manager.configure("default", server.url, busy_poll=0.0002)
        assert asyncio.run(both()) == b"async"
        assert manager.client().get("k") == b"async"
    finally:
        manager.close()
