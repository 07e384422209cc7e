"""FerriteCache against django-redis and Django's own RedisCache, same server, one run:
per-call get/set/get_many, a request of 5 writes + 5 reads (through PipelineMiddleware for
FerriteCache), and aget/aset. Needs `pip install django-redis`.

    .venv/bin/python bench/django_cache.py [--calls 3000] [--rounds 5] [--pin apart|together|none]

The backends take turns, round after round, and each figure is the median of the rounds,
so a burst of noise on the machine does not favour one of them. The server and this process
are pinned to different CPUs (when there are two): left to the scheduler, a loopback round
trip takes 33 or 75 us depending on whether both land on one core, which swamps the
difference between backends.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import django
import redis
from django.conf import settings

from ferrite_integrations.testing import EmbeddedServer

BACKENDS = {
    "FerriteCache": "ferrite_integrations.django.FerriteCache",
    "django-redis": "django_redis.cache.RedisCache",
    "Django RedisCache": "django.core.cache.backends.redis.RedisCache",
}


def per_second(call: Callable[[int], Any], count: int) -> float:
    call(-1)
    started = time.perf_counter()
    for n in range(count):
        call(n)
    return count / (time.perf_counter() - started)


def pin(server_pid: int | None, how: str) -> None:
    cpus = sorted(os.sched_getaffinity(0))
    if server_pid is None or how == "none" or len(cpus) < 2:
        return
    server_cpu = cpus[1] if how == "apart" else cpus[0]
    os.sched_setaffinity(server_pid, {server_cpu})
    os.sched_setaffinity(0, {cpus[0]})
    print(f"pinned: this process on CPU {cpus[0]}, the server on CPU {server_cpu}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pin", choices=["apart", "together", "none"], default="apart")
    args = parser.parse_args()
    with EmbeddedServer() as server:
        pin(server.pid, args.pin)
        settings.configure(
            CACHES={
                name: {"BACKEND": backend, "LOCATION": server.url, "KEY_PREFIX": name}
                for name, backend in BACKENDS.items()
            },
            SECRET_KEY="bench",
        )
        django.setup()
        from django.core.cache import caches
        from django.http import HttpResponse
        from django.test import RequestFactory

        from ferrite_integrations.django import PipelineMiddleware

        request = RequestFactory().get("/")
        print(
            f"{platform.machine()}, Python {platform.python_version()}, Django "
            f"{django.get_version()}, redis-py {redis.__version__}, server {server.version}"
        )

        def measure(name: str) -> dict[str, float]:
            cache = caches[name]
            cache.set("k", "v" * 100)
            cache.set_many({f"m{i}": i for i in range(10)})

            def view(request: Any, cache: Any = cache) -> HttpResponse:
                for i in range(5):
                    cache.set(f"r{i}", i)
                for i in range(5):
                    cache.get(f"r{i}")
                return HttpResponse("ok")

            handler = PipelineMiddleware(view) if name == "FerriteCache" else view

            async def aload(cache: Any = cache) -> float:
                started = time.perf_counter()
                for n in range(args.calls):
                    await cache.aset("a", n)
                    await cache.aget("a")
                return 2 * args.calls / (time.perf_counter() - started)

            return {
                "get": per_second(lambda n, c=cache: c.get("k"), args.calls),
                "set": per_second(lambda n, c=cache: c.set("k", "v" * 100), args.calls),
                "get_many(10)": per_second(
                    lambda n, c=cache: c.get_many([f"m{i}" for i in range(10)]), args.calls
                ),
                "request 5w+5r": per_second(lambda n, h=handler: h(request), args.calls // 5),
                "aget/aset": asyncio.run(aload()),
            }

        samples: dict[str, dict[str, list[float]]] = {name: {} for name in BACKENDS}
        for _ in range(args.rounds):
            for name in BACKENDS:
                for column, value in measure(name).items():
                    samples[name].setdefault(column, []).append(value)
        rows = {
            name: {column: statistics.median(values) for column, values in row.items()}
            for name, row in samples.items()
        }
        columns = list(next(iter(rows.values())))
        print(f"  {'ops/s':18s}" + "".join(f"{column:>16s}" for column in columns))
        for name, row in rows.items():
            print(f"  {name:18s}" + "".join(f"{row[column]:16.0f}" for column in columns))
        ours, theirs = rows["FerriteCache"], rows["django-redis"]
        print(
            f"  {'vs django-redis':18s}" + "".join(f"{ours[c] / theirs[c]:15.2f}x" for c in columns)
        )


if __name__ == "__main__":
    main()
