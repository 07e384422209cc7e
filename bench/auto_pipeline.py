"""100 concurrent asyncio tasks doing GET/SET: the auto-pipelining client against a plain
`redis.asyncio` client, on plain loopback and through a loopback proxy adding about 1 ms
per round trip; operations per second and connections the server sees.

    .venv/bin/python bench/auto_pipeline.py [--tasks 100] [--seconds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import time
from typing import Any

import redis
import redis.asyncio

from ferrite_integrations import PoolManager
from ferrite_integrations.testing import EmbeddedServer, FaultProxy


async def load(client: Any, tasks: int, seconds: float) -> int:
    done = 0
    stop_at = time.perf_counter() + seconds

    async def worker(index: int) -> None:
        nonlocal done
        while time.perf_counter() < stop_at:
            await client.set(f"bench:{index}", index)
            await client.get(f"bench:{index}")
            done += 2

    await asyncio.gather(*(worker(index) for index in range(tasks)))
    return done


async def measure(url: str, server: EmbeddedServer, tasks: int, seconds: float) -> None:
    plain = redis.asyncio.Redis.from_url(url, client_name="bench-plain")
    plain_ops = await load(plain, tasks, seconds)
    plain_connections = server.connected_clients("bench-plain")
    await plain.aclose()
    manager = PoolManager(client_name="bench-auto")
    manager.configure("default", url)
    ours = manager.async_client(auto_pipeline=True)
    our_ops = await load(ours, tasks, seconds)
    our_connections = server.connected_clients("bench-auto")
    await manager.aclose()
    print(
        f"    plain redis.asyncio {plain_ops / seconds:8.0f} ops/s  {plain_connections:3d} conns"
        f"   auto-pipeline {our_ops / seconds:8.0f} ops/s  {our_connections:3d} conns"
        f"   {our_ops / plain_ops:5.2f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    with EmbeddedServer() as server, FaultProxy(server.host, server.port) as proxy:
        print(
            f"{platform.machine()}, Python {platform.python_version()}, redis-py "
            f"{redis.__version__}, server {server.version}; {args.tasks} tasks, "
            f"{args.seconds:g} s each"
        )
        print("  loopback")
        asyncio.run(measure(server.url, server, args.tasks, args.seconds))
        proxy.delay(0.0005)
        print("  +1 ms hop")
        asyncio.run(measure(proxy.url, server, args.tasks, args.seconds))


if __name__ == "__main__":
    main()
