"""A real uvicorn process (one worker, then two), started here on a free loopback port
and hit by concurrent requests: the server never sees more than workers x max_connections
connections of the app, and each response's writes are on the server when it arrives."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis
import redis.asyncio

from ferrite_integrations.testing import EmbeddedServer, FaultProxy
from ferrite_integrations.testing._net import free_port
from tests.conftest import wait_until

ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT = 30.0

Launcher = Callable[..., str]


def _stop(process: subprocess.Popen[bytes]) -> None:
    """End the uvicorn process this test started (by its PID only); its supervisor ends
    its own workers on SIGTERM."""
    if process.poll() is not None:
        return
    os.kill(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=15)


@pytest.fixture
def launch(server: EmbeddedServer, client_name: str, tmp_path: Path) -> Iterator[Launcher]:
    processes: list[subprocess.Popen[bytes]] = []

    def start(
        *, workers: int = 1, max_connections: int = 4, min_idle: int = 1, url: str | None = None
    ) -> str:
        port = free_port()
        env = {
            **os.environ,
            "FERRITE_URL": url or server.url,
            "TEST_MAX_CONNECTIONS": str(max_connections),
            "TEST_MIN_IDLE": str(min_idle),
            "TEST_CLIENT_NAME": client_name,
        }
        log = tmp_path / f"uvicorn-{port}.log"
        command = [sys.executable, "-m", "uvicorn", "tests.fastapi.uvicorn_app:create_app"]
        command += ["--factory", "--host", "127.0.0.1", "--port", str(port)]
        command += ["--workers", str(workers), "--no-access-log", "--log-level", "warning"]
        with log.open("wb") as output:  # the child keeps its own copy of the descriptor
            process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=output, stderr=output)
        processes.append(process)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(f"uvicorn exited with {process.returncode}:\n{_read(log)}")
            try:
                if httpx.get(f"{base}/health/ferrite", timeout=1).status_code == 200:
                    return base
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"uvicorn did not answer in {READY_TIMEOUT} s:\n{_read(log)}")
            time.sleep(0.02)

    try:
        yield start
    finally:
        for process in processes:
            _stop(process)


def _read(path: Path) -> str:
    return path.read_text(errors="replace")[-3000:]


class _Sampler:
    """Counts the app's connections on the server, every few ms, in a thread."""

    def __init__(self, server: EmbeddedServer, name: str) -> None:
        self.server, self.name = server, name
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(self.server.connected_clients(self.name))
            self._stop.wait(0.003)

    def __enter__(self) -> _Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


async def _hammer(base: str, server: EmbeddedServer, requests: int) -> list[int]:
    """Send ``requests`` requests, 100 at a time; for each response, read its write from
    the server directly at once. Returns the numbers whose write was missing."""
    missing: list[int] = []
    pool = redis.asyncio.BlockingConnectionPool(host=server.host, port=server.port, timeout=30)
    direct = redis.asyncio.Redis(connection_pool=pool)
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    async with direct, httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:

        async def one(number: int) -> None:
            response = await client.get(f"/work/{number}")
            assert response.status_code == 200, response.text
            assert response.json()["echo"] == number
            if await direct.get(f"done:{number}") != str(number).encode():
                missing.append(number)

        await asyncio.gather(*(one(number) for number in range(requests)))
    await pool.disconnect()
    return missing


def test_one_worker_under_concurrent_requests_stays_within_max_connections(
    launch: Launcher, server: EmbeddedServer, client_name: str
) -> None:
    base = launch(workers=1, max_connections=4, min_idle=2)
    assert server.connected_clients(client_name) == 2  # pre-warmed at startup
    with _Sampler(server, client_name) as sampler:
        missing = asyncio.run(_hammer(base, server, requests=300))
    assert missing == []
    assert max(sampler.samples) <= 4
    assert max(sampler.samples) >= 3  # the plain client really pushed the pool up
    with redis.Redis(**server.redis_kwargs()) as direct:
        assert direct.get("hits") == str(300 * 5).encode()


@pytest.mark.asyncio
async def test_a_client_reading_right_after_the_response_sees_the_writes(
    launch: Launcher, proxy: FaultProxy, direct: redis.Redis
) -> None:
    base = launch(url=proxy.url)
    proxy.delay(0.02)  # the app's commands now take 20 ms more; the test reads directly
    async with httpx.AsyncClient(base_url=base) as client:
        for number in range(10):
            assert (await client.post(f"/deferred/{number}")).json() == number
            assert direct.get(f"deferred:{number}") == str(number).encode()


def test_each_worker_has_its_own_pools(
    launch: Launcher, server: EmbeddedServer, client_name: str
) -> None:
    base = launch(workers=2, max_connections=3, min_idle=2)
    # every worker ran the lifespan after it started: workers x min_idle warm connections
    wait_until(lambda: server.connected_clients(client_name) == 4, timeout=15)
    with _Sampler(server, client_name) as sampler:
        missing = asyncio.run(_hammer(base, server, requests=300))
    assert missing == []
    assert max(sampler.samples) <= 2 * 3  # connections <= workers x max_connections
