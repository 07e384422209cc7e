"""A request's cache traffic with and without a request scope, on plain loopback and
through a loopback proxy that adds about 1 ms per round trip (0.5 ms each way: a network
hop). Two request shapes: 5 writes + 5 reads (each read follows a write), and 10 writes.

    .venv/bin/python bench/request_scope.py [--requests 300]
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable

import redis

from ferrite_integrations import PoolManager
from ferrite_integrations.testing import EmbeddedServer, FaultProxy


def plain_mixed(client: redis.Redis, n: int) -> None:
    for i in range(5):
        client.set(f"bench:{n}:{i}", i)
        client.get(f"bench:{n}:{i}")


def plain_writes(client: redis.Redis, n: int) -> None:
    for i in range(10):
        client.set(f"bench:{n}:{i}", i)


def scoped_mixed(manager: PoolManager, n: int) -> None:
    with manager.request_scope() as scope:
        for i in range(5):
            scope.deferred.set(f"bench:{n}:{i}", i)
        for i in range(5):
            scope.client.get(f"bench:{n}:{i}")


def scoped_writes(manager: PoolManager, n: int) -> None:
    with manager.request_scope() as scope:
        for i in range(10):
            scope.deferred.set(f"bench:{n}:{i}", i)


def rate(request: Callable[[int], None], count: int) -> float:
    request(-1)
    started = time.perf_counter()
    for n in range(count):
        request(n)
    return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    with EmbeddedServer() as server, FaultProxy(server.host, server.port) as proxy:
        print(
            f"{platform.machine()}, Python {platform.python_version()}, redis-py "
            f"{redis.__version__}, server {server.version}; {args.requests} requests each"
        )
        for label, url, delay in (
            ("loopback", server.url, 0.0),
            ("+1 ms hop", proxy.url, 0.0005),
        ):
            proxy.delay(delay) if delay else proxy.pass_through()
            manager = PoolManager(client_name="bench")
            manager.configure("default", url, min_idle=1)
            manager.warm()
            plain = redis.Redis.from_url(url)
            for shape, plain_call, scoped_call in (
                ("5 writes + 5 reads", plain_mixed, scoped_mixed),
                ("10 writes", plain_writes, scoped_writes),
            ):
                base = rate(lambda n, f=plain_call, c=plain: f(c, n), args.requests)
                ours = rate(lambda n, f=scoped_call, m=manager: f(m, n), args.requests)
                print(
                    f"  {label:10s} {shape:18s} plain redis-py {base:8.0f} req/s   "
                    f"request scope {ours:8.0f} req/s   {ours / base:5.2f}x"
                )
            plain.close()
            manager.close()


if __name__ == "__main__":
    main()
