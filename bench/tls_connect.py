"""Cost of opening TLS connections: one shared SSLContext (ferrite-integrations) against
redis-py's SSLConnection, which builds a context and re-reads the certificate files on
every connect. Both sides open, handshake (HELLO, CLIENT SETINFO) and close N connections
to the same embedded mutual-TLS server in one run.

    .venv/bin/python bench/tls_connect.py [--connections 300] [--rounds 3]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable

import redis

from ferrite_integrations import PoolConfig, connection_kwargs
from ferrite_integrations.testing import EmbeddedServer


def connect_many(make_pool: Callable[[], redis.ConnectionPool], count: int) -> float:
    pool = make_pool()
    started = time.perf_counter()
    for _ in range(count):
        connection = pool.connection_class(**pool.connection_kwargs)
        connection.connect()
        connection.disconnect()
    elapsed = time.perf_counter() - started
    pool.disconnect()
    return elapsed / count


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--connections", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with EmbeddedServer(mutual_tls=True) as server:
        files = server.tls_files
        tls = {
            "ssl_ca_certs": files.ca_file,
            "ssl_certfile": files.client_cert_file,
            "ssl_keyfile": files.client_key_file,
        }
        config = PoolConfig.from_url(f"rediss://127.0.0.1:{server.port}/0", **tls)
        ours = lambda: redis.ConnectionPool(**connection_kwargs(config))  # noqa: E731
        theirs = lambda: redis.ConnectionPool(  # noqa: E731
            connection_class=redis.SSLConnection, host="127.0.0.1", port=server.port, **tls
        )
        results: dict[str, list[float]] = {"redis-py SSLConnection": [], "shared context": []}
        for _ in range(args.rounds):
            results["redis-py SSLConnection"].append(connect_many(theirs, args.connections))
            results["shared context"].append(connect_many(ours, args.connections))
        print(
            f"{platform.node()} {platform.processor() or platform.machine()}, "
            f"Python {platform.python_version()}, redis-py {redis.__version__}, "
            f"server {server.version}; {args.connections} connects x {args.rounds} rounds"
        )
        for name, values in results.items():
            best = min(values) * 1e6
            print(
                f"  {name:24s} median {statistics.median(values) * 1e6:8.0f} us/connect"
                f"   best {best:8.0f} us/connect"
            )


if __name__ == "__main__":
    main()
