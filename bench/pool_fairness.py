"""50 threads sharing 10 connections, each doing GETs (checkout, GET, release) for a fixed
time: throughput and acquire-wait percentiles for FerritePool (FIFO hand-off) against
redis-py's BlockingConnectionPool, same server, in one run.

    .venv/bin/python bench/pool_fairness.py [--threads 50] [--connections 10] [--seconds 5]
"""

from __future__ import annotations

import argparse
import platform
import threading
import time
from typing import Any

import redis

from ferrite_integrations import FerritePool, PoolConfig
from ferrite_integrations.testing import EmbeddedServer


def run(pool: Any, threads: int, seconds: float) -> tuple[int, list[float]]:
    waits: list[list[float]] = [[] for _ in range(threads)]
    done = [0] * threads
    start = threading.Barrier(threads + 1)
    stop_at = [0.0]

    def worker(index: int) -> None:
        mine = waits[index]
        start.wait()
        while time.perf_counter() < stop_at[0]:
            asked = time.perf_counter()
            connection = pool.get_connection()
            mine.append(time.perf_counter() - asked)
            connection.send_command("GET", "bench:key")
            connection.read_response()
            pool.release(connection)
            done[index] += 1

    workers = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for thread in workers:
        thread.start()
    stop_at[0] = time.perf_counter() + seconds
    start.wait()
    for thread in workers:
        thread.join()
    return sum(done), sorted(wait for per_thread in waits for wait in per_thread)


def percentile(ordered: list[float], fraction: float) -> float:
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=50)
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    with EmbeddedServer() as server:
        redis.Redis(**server.redis_kwargs()).set("bench:key", "x" * 100)
        pools = {
            "redis.BlockingConnectionPool": redis.BlockingConnectionPool(
                max_connections=args.connections, timeout=60, **server.redis_kwargs()
            ),
            "FerritePool": FerritePool(
                PoolConfig.from_url(
                    server.url, max_connections=args.connections, acquire_timeout=60
                )
            ),
        }
        print(
            f"{platform.machine()}, Python {platform.python_version()}, "
            f"redis-py {redis.__version__}, server {server.version}; {args.threads} threads, "
            f"{args.connections} connections, {args.seconds:g} s each"
        )
        for name, pool in pools.items():
            count, waits = run(pool, args.threads, args.seconds)
            print(
                f"  {name:30s} {count / args.seconds:8.0f} GET/s   acquire wait "
                f"p50 {percentile(waits, 0.5) * 1e3:7.3f} ms  "
                f"p99 {percentile(waits, 0.99) * 1e3:7.2f} ms"
                f"  max {waits[-1] * 1e3:8.1f} ms"
            )
            pool.disconnect()


if __name__ == "__main__":
    main()
