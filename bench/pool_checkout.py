"""Checkout + release cost: FerritePool against redis-py's ConnectionPool and
BlockingConnectionPool, same server, same connection, in one run.

    .venv/bin/python bench/pool_checkout.py [--iterations 200000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from typing import Any

import redis

from ferrite_integrations import FerritePool, PoolConfig
from ferrite_integrations.testing import EmbeddedServer


def cost(pool: Any, iterations: int) -> float:
    connection = pool.get_connection()
    connection.send_command("PING")
    connection.read_response()
    pool.release(connection)
    started = time.perf_counter()
    for _ in range(iterations):
        pool.release(pool.get_connection())
    return (time.perf_counter() - started) / iterations


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--iterations", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with EmbeddedServer() as server:
        pools = {
            "redis.ConnectionPool": redis.ConnectionPool(**server.redis_kwargs()),
            "redis.BlockingConnectionPool": redis.BlockingConnectionPool(**server.redis_kwargs()),
            "FerritePool": FerritePool(PoolConfig.from_url(server.url)),
        }
        results: dict[str, list[float]] = {name: [] for name in pools}
        for _ in range(args.rounds):
            for name, pool in pools.items():
                results[name].append(cost(pool, args.iterations))
        print(
            f"{platform.machine()}, Python {platform.python_version()}, "
            f"redis-py {redis.__version__}, server {server.version}; "
            f"{args.iterations} checkout+release x {args.rounds} rounds (median, best)"
        )
        for name, values in results.items():
            print(
                f"  {name:30s} {statistics.median(values) * 1e6:6.2f} us"
                f"   {min(values) * 1e6:6.2f} us"
            )
        for pool in pools.values():
            pool.disconnect()


if __name__ == "__main__":
    main()
