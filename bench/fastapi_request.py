"""A FastAPI endpoint doing 10 cache commands (5 SET, 5 GET) served by a real uvicorn
process, under concurrent load on loopback: a plain ``redis.asyncio`` client made in a
hand-written lifespan, against ``ferrite_lifespan`` with the auto-pipelining
``FerriteClient`` (same handler code), and with ``RequestScope`` deferring the writes.
Reports requests per second and the most connections the server saw from the app.

Load generator: the hand-written asyncio HTTP/1.1 keep-alive client below (``--clients``
connections, each sending its next request when the previous response is in), run in this
process; uvicorn runs one worker with its default (h11, asyncio) stack.

    .venv/bin/python bench/fastapi_request.py [--clients 64] [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import redis
import redis.asyncio
from fastapi import FastAPI, Request

from ferrite_integrations.fastapi import FerriteClient, RequestScope, ferrite_lifespan
from ferrite_integrations.testing import EmbeddedServer
from ferrite_integrations.testing._net import free_port

VARIANTS = ("plain", "ferrite", "ferrite+scope")
KEYS = 1000


# -- the application (uvicorn imports this module: bench/fastapi_request.py) ----------------


async def _five_writes_five_reads(client: Any, n: int) -> int:
    """The benchmarked request: five SETs, then five GETs of the same keys."""
    for i in range(5):
        await client.set(f"bench:{n % KEYS}:{i}", i)
    total = 0
    for i in range(5):
        total += int(await client.get(f"bench:{n % KEYS}:{i}") or 0)
    return total


def _plain_app() -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        client = redis.asyncio.Redis.from_url(
            os.environ["FERRITE_URL"], client_name=os.environ["BENCH_CLIENT_NAME"]
        )
        yield {"redis": client}
        await client.aclose()

    app = FastAPI(lifespan=lifespan)

    @app.get("/work/{n}")
    async def work(n: int, request: Request) -> int:
        return await _five_writes_five_reads(request.state.redis, n)

    return app


def _ferrite_app(scoped: bool) -> FastAPI:
    lifespan = ferrite_lifespan(
        os.environ["FERRITE_URL"], client_name=os.environ["BENCH_CLIENT_NAME"], min_idle=1
    )
    app = FastAPI(lifespan=lifespan)

    if scoped:

        @app.get("/work/{n}")
        async def work_scoped(n: int, client: FerriteClient, scope: RequestScope) -> int:
            for i in range(5):
                scope.deferred.set(f"bench:{n % KEYS}:{i}", i)
            total = 0
            for i in range(5):  # the first GET carries the five SETs
                total += int(await client.get(f"bench:{n % KEYS}:{i}") or 0)
            return total

    else:

        @app.get("/work/{n}")
        async def work(n: int, client: FerriteClient) -> int:
            return await _five_writes_five_reads(client, n)

    return app


def create_app() -> FastAPI:
    variant = os.environ["BENCH_VARIANT"]
    return _plain_app() if variant == "plain" else _ferrite_app(variant == "ferrite+scope")


# -- the load generator ------------------------------------------------------------------


async def _read_response(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    body = await reader.readexactly(length)
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"unexpected response: {head[:60]!r} {body[:200]!r}")
    return body


async def _client(port: int, start: int, stop_at: float, step: int) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    done, n = 0, start
    try:
        while time.perf_counter() < stop_at:
            writer.write(f"GET /work/{n} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
            await _read_response(reader)
            done, n = done + 1, n + step
    finally:
        writer.close()
        await writer.wait_closed()
    return done


async def _load(port: int, clients: int, seconds: float) -> int:
    stop_at = time.perf_counter() + seconds
    counts = await asyncio.gather(*(_client(port, i, stop_at, clients) for i in range(clients)))
    return sum(counts)


class _PeakConnections:
    def __init__(self, server: EmbeddedServer, name: str) -> None:
        self.server, self.name, self.peak = server, name, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self.server.connected_clients(self.name))

    def __enter__(self) -> _PeakConnections:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _start_uvicorn(variant: str, url: str, name: str, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "BENCH_VARIANT": variant, "FERRITE_URL": url, "BENCH_CLIENT_NAME": name}
    command = [sys.executable, "-m", "uvicorn", "fastapi_request:create_app", "--factory"]
    command += ["--app-dir", str(Path(__file__).parent), "--host", "127.0.0.1"]
    command += ["--port", str(port), "--no-access-log", "--log-level", "warning"]
    process = subprocess.Popen(command, env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"uvicorn exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return process
        time.sleep(0.05)
    _stop(process)
    raise SystemExit("uvicorn did not start in 30 s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()


def measure(server: EmbeddedServer, variant: str, clients: int, seconds: float) -> float:
    name = f"bench-{variant.replace('+', '-')}"
    port = free_port()
    process = _start_uvicorn(variant, server.url, name, port)
    try:
        asyncio.run(_load(port, clients, 1.0))  # warm-up
        with _PeakConnections(server, name) as peak:
            done = asyncio.run(_load(port, clients, seconds))
    finally:
        _stop(process)
    rate = done / seconds
    print(f"  {variant:14s} {rate:8.0f} req/s  {peak.peak:4d} server connections (peak)")
    return rate


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=64, help="concurrent HTTP connections")
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    with EmbeddedServer() as server:
        print(
            f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
            f"redis-py {redis.__version__}, server {server.version}; uvicorn 1 worker, "
            f"{args.clients} keep-alive clients, {args.seconds:g} s per variant; "
            "GET /work/n = 5 SET + 5 GET"
        )
        rates = {
            variant: measure(server, variant, args.clients, args.seconds) for variant in VARIANTS
        }
    for variant in VARIANTS[1:]:
        print(f"  {variant} / plain: {rates[variant] / rates['plain']:.2f}x")


if __name__ == "__main__":
    main()
