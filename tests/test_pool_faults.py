"""A pool never loses a slot, whatever interrupts a caller: cancellation, Ctrl-C, a reset,
a close while clients still hold the pool, or concurrent warm-ups."""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import threading
import time
from collections.abc import Iterator

import pytest

from ferrite_integrations import PoolManager
from ferrite_integrations.testing import EmbeddedServer
from ferrite_integrations.testing.plugin import ServerFactory

NAME = "faults-test"


@pytest.fixture
def manager() -> Iterator[PoolManager]:
    manager = PoolManager(client_name=NAME)
    yield manager
    manager.close()


def counts(stats: dict[str, int]) -> tuple[int, int, int]:
    return stats["in_use"], stats["idle"], stats["waiting"]


def test_cancelling_a_borrow_that_is_closing_an_expired_connection_keeps_the_slot(
    ferrite_server: EmbeddedServer, manager: PoolManager
) -> None:
    manager.configure(
        "default", ferrite_server.url, max_connections=1, max_lifetime=0.1, acquire_timeout=0.5
    )

    async def main() -> None:
        pool = manager.async_pool()
        await pool.release(await pool.get_connection())
        await asyncio.sleep(0.15)  # the idle connection is past its lifetime
        task = asyncio.create_task(pool.get_connection())
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert counts(pool.stats()) == (0, 0, 0)
        await pool.release(await pool.get_connection())

    asyncio.run(main())


def test_cancelling_warm_gives_every_reserved_slot_back(
    ferrite_server_factory: ServerFactory, manager: PoolManager
) -> None:
    server = ferrite_server_factory()
    manager.configure(
        "default", server.url, max_connections=3, min_idle=3, socket_connect_timeout=2.0
    )

    async def main() -> None:
        server.pause()
        try:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(manager.awarm(), 0.2)
        finally:
            server.resume()
        stats = manager.async_pool().stats()
        assert (stats["in_use"], stats["total"]) == (0, 0)
        assert await manager.async_client().ping() is True

    asyncio.run(main())


def test_ctrl_c_while_waiting_does_not_swallow_the_next_connection(
    ferrite_server: EmbeddedServer, manager: PoolManager
) -> None:
    manager.configure("default", ferrite_server.url, max_connections=1, acquire_timeout=5)
    pool = manager.pool()
    held = pool.get_connection()
    main = threading.main_thread().ident
    assert main is not None
    assert threading.get_ident() == main
    timer = threading.Timer(0.2, lambda: signal.pthread_kill(main, signal.SIGINT))
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        pool.get_connection()
    timer.join()
    pool.release(held)
    assert counts(pool.stats()) == (0, 1, 0)
    pool.release(pool.get_connection())


def test_reset_in_the_same_process_closes_connections_and_keeps_the_pool_usable(
    ferrite_server: EmbeddedServer, manager: PoolManager
) -> None:
    manager.configure("default", ferrite_server.url, min_idle=2)
    manager.warm()
    pool = manager.pool()
    pool.reset()
    assert ferrite_server.connected_clients(NAME) == 0
    assert manager.client().ping() is True
    assert pool.stats()["closed"]["fork"] == 0

    async def main() -> None:
        await manager.awarm()
        async_pool = manager.async_pool()
        async_pool.reset()
        assert await manager.async_client().ping() is True
        await manager.aclose()

    asyncio.run(main())
    assert ferrite_server.connected_clients(NAME) == 0


def test_close_reaches_clients_taken_before_it(
    ferrite_server: EmbeddedServer, manager: PoolManager
) -> None:
    manager.configure("default", ferrite_server.url)
    client = manager.client()
    client.ping()
    manager.close()
    assert ferrite_server.connected_clients(NAME) == 0
    client.ping()  # reconnects through the same, still registered pool
    manager.close()
    assert ferrite_server.connected_clients(NAME) == 0


def test_aclose_with_another_loops_pools_open_does_not_fail(
    ferrite_server: EmbeddedServer, manager: PoolManager
) -> None:
    manager.configure("default", ferrite_server.url)

    async def ping() -> None:
        await manager.async_client().ping()

    with asyncio.Runner() as runner:
        runner.run(ping())
        asyncio.run(manager.aclose())  # another loop, while the runner's is idle
    assert ferrite_server.connected_clients(NAME) == 0


def test_concurrent_warm_ups_open_min_idle_once(
    ferrite_server: EmbeddedServer, manager: PoolManager
) -> None:
    manager.configure("default", ferrite_server.url, min_idle=3, max_connections=20)
    threads = [threading.Thread(target=manager.warm) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert manager.pool().stats()["idle"] == 3
    assert ferrite_server.connected_clients(NAME) == 3


def _wait_for_child(pid: int, timeout: float) -> int:
    """The child's wait status; a child that hangs (a raw fork() can deadlock on a lock
    another thread held) is killed, and the test fails instead of hanging."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    raise AssertionError(f"the forked child {pid} hung and was killed")


def test_a_child_forked_without_pythons_fork_hooks_still_gets_its_own_connections(
    ferrite_server: EmbeddedServer, manager: PoolManager
) -> None:
    # uWSGI's prefork calls fork() without running Python's after-fork hooks unless told to
    # (--py-call-osafterfork): the pool must notice the new process by itself.
    libc = ctypes.CDLL(None, use_errno=True)
    manager.configure("default", ferrite_server.url, min_idle=1)
    manager.warm()
    pool = manager.pool("default")
    inherited = pool._available_connections[0]
    read, write = os.pipe()
    child = libc.fork()
    if child == 0:  # pragma: no cover - runs in the child
        status = 1
        try:
            connection = pool.get_connection()
            fresh = connection is not inherited and pool.stats()["closed"]["fork"] == 1
            pool.release(connection)
            os.write(write, b"fresh" if fresh else b"inherited")
            status = 0
        finally:
            os._exit(status)
    os.close(write)
    status = _wait_for_child(child, timeout=10.0)
    reply = os.read(read, 100)
    os.close(read)
    assert os.waitstatus_to_exitcode(status) == 0
    assert reply == b"fresh"
    assert manager.client().ping()  # the parent's connection was never touched


@pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")
def test_a_forked_child_reports_only_its_own_connections(
    ferrite_server: EmbeddedServer, manager: PoolManager
) -> None:
    manager.configure("default", ferrite_server.url, min_idle=3)
    manager.warm()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        stats = manager.stats("default")["sync"]
        os._exit(0 if stats is not None and stats["total"] == 0 else 1)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert manager.stats("default")["sync"]["idle"] == 3
