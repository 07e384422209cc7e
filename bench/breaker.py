"""Failing fast: per-call latency against a stopped server with the circuit breaker open,
against redis-py 8's default client on the same refused port; then the time from the
server's restart to the first successful call (monitor every 50 ms; probes are spaced by
the breaker's reset timeout, 2 s by default, doubling while they fail, up to 10 s).

    .venv/bin/python bench/breaker.py [--calls 2000]
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import statistics
import time

import redis

from ferrite_integrations import PoolManager, ServerUnavailableError
from ferrite_integrations.testing import EmbeddedServer


def per_call(call: object, count: int) -> list[float]:
    timings = []
    for _ in range(count):
        started = time.perf_counter()
        with contextlib.suppress(redis.ConnectionError):
            call()  # type: ignore[operator]
        timings.append(time.perf_counter() - started)
    return timings


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    with EmbeddedServer() as server:
        manager = PoolManager(client_name="bench")
        manager.configure("default", server.url, health_check_interval=0.05)
        ours = manager.client()
        ours.ping()
        plain = redis.Redis(host=server.host, port=server.port)  # redis-py 8 defaults
        plain.ping()
        server.stop()
        while True:  # fail until the breaker opens
            try:
                ours.get("k")
            except ServerUnavailableError:
                break
            except redis.ConnectionError:
                continue
        open_timings = per_call(lambda: ours.get("k"), args.calls)
        plain_timings = per_call(lambda: plain.get("k"), 5)
        print(
            f"{platform.machine()}, Python {platform.python_version()}, redis-py "
            f"{redis.__version__}, server {server.version}"
        )
        print(
            f"  breaker open      median {statistics.median(open_timings) * 1e6:8.1f} us   "
            f"max {max(open_timings) * 1e6:8.1f} us   ({args.calls} calls)"
        )
        print(
            f"  redis-py default  median {statistics.median(plain_timings) * 1e6:8.0f} us   "
            f"max {max(plain_timings) * 1e6:8.0f} us   (5 calls, refused port)"
        )
        manager.start_monitor()
        time.sleep(1.0)  # the outage goes on a little, with the monitor probing
        server.start()
        restarted = time.perf_counter()
        while True:
            try:
                ours.get("k")
                break
            except ServerUnavailableError:
                time.sleep(0.001)
        print(
            f"  restart -> first successful call: {(time.perf_counter() - restarted) * 1e3:.0f} ms"
        )
        manager.close()
        plain.close()


if __name__ == "__main__":
    main()
