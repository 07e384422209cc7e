"""FerriteCache against django-redis and Django's own RedisCache, same server, one run:
per-call get/set/get_many, a request of 5 writes + 5 reads (through PipelineMiddleware for
FerriteCache), and aget/aset. Needs `pip install django-redis`.

    .venv/bin/python bench/django_cache.py [--calls 500] [--rounds 15]
        [--pin apart|together|none] [--columns get,set,...] [--busy-poll SECONDS]

Every column runs in many short rounds; in each round every backend runs back to back,
starting with a different one each time. The ops/s are medians over the rounds; the ratio
to django-redis is taken within each round (so a burst of noise on the machine falls on
both sides of it) and reported as the median with its quartiles. The server and this process
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


def per_second(call: Callable[[int], Any], count: int) -> tuple[float, float]:
    """Operations per second, and the process's CPU time per operation in us."""
    call(-1)
    started, cpu = time.perf_counter(), time.process_time()
    for n in range(count):
        call(n)
    return count / (time.perf_counter() - started), (time.process_time() - cpu) / count * 1e6


def pin(server_pid: int | None, how: str) -> None:
    cpus = sorted(os.sched_getaffinity(0))
    if server_pid is None or how == "none" or len(cpus) < 2:
        return
    server_cpu = cpus[1] if how == "apart" else cpus[0]
    os.sched_setaffinity(server_pid, {server_cpu})
    os.sched_setaffinity(0, {cpus[0]})
    print(f"pinned: this process on CPU {cpus[0]}, the server on CPU {server_cpu}")


def describe_machine(server_version: str) -> None:
    print(
        f"{platform.machine()}, Python {platform.python_version()}, Django "
        f"{django.get_version()}, redis-py {redis.__version__}, server {server_version}"
    )
    idle = idle_setting()
    if idle:
        print(idle)


def idle_setting() -> str:
    """How this machine's idle CPUs wait, when it says: on a VM whose idle vCPUs halt at
    once (haltpoll with guest_halt_poll_ns=0), every wake-up between CPUs costs tens of us
    and both backends pay it on every round trip."""
    files = {
        "cpuidle": "/sys/devices/system/cpu/cpuidle/current_governor_ro",
        "guest_halt_poll_ns": "/sys/module/haltpoll/parameters/guest_halt_poll_ns",
    }
    found = []
    for name, path in files.items():
        try:
            with open(path) as setting:
                found.append(f"{name}={setting.read().strip()}")
        except OSError:
            continue
    return ", ".join(found)


def ferrite_options(backend: str, busy_poll: float) -> dict[str, Any]:
    """The ``OPTIONS`` entry of one backend: only FerriteCache takes ``busy_poll``."""
    if backend != "FerriteCache" or not busy_poll:
        return {}
    return {"OPTIONS": {"busy_poll": busy_poll}}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=500, help="operations per round")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--pin", choices=["apart", "together", "none"], default="apart")
    parser.add_argument("--columns", help="comma-separated subset, e.g. get,set")
    parser.add_argument(
        "--busy-poll",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="FerriteCache's busy_poll option (django-redis has no such option)",
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    with EmbeddedServer() as server:
        pin(server.pid, args.pin)
        settings.configure(
            CACHES={
                name: {
                    "BACKEND": backend,
                    "LOCATION": server.url,
                    "KEY_PREFIX": name.replace(" ", "-"),
                    **ferrite_options(name, args.busy_poll),
                }
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
        describe_machine(server.version)
        if args.busy_poll:
            print(f"FerriteCache with busy_poll={args.busy_poll:g} s")

        def workloads(name: str) -> dict[str, Callable[[int], tuple[float, float]]]:
            """Column -> run ``count`` operations, return (operations per second, CPU us
            per operation)."""
            cache = caches[name]
            cache.set("k", "v" * 100)
            cache.set_many({f"m{i}": i for i in range(10)})
            keys = [f"m{i}" for i in range(10)]

            def view(request: Any) -> HttpResponse:
                for i in range(5):
                    cache.set(f"r{i}", i)
                for i in range(5):
                    cache.get(f"r{i}")
                return HttpResponse("ok")

            handler = PipelineMiddleware(view) if name == "FerriteCache" else view

            async def aload(count: int) -> tuple[float, float]:
                await cache.aset("a", 0)
                started, cpu = time.perf_counter(), time.process_time()
                for n in range(count):
                    await cache.aset("a", n)
                    await cache.aget("a")
                elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
                return 2 * count / elapsed, cpu / (2 * count) * 1e6

            workload: dict[str, Callable[[int], tuple[float, float]]] = {
                "get": lambda count: per_second(lambda n: cache.get("k"), count),
                "set": lambda count: per_second(lambda n: cache.set("k", "v" * 100), count),
                "get_many(10)": lambda count: per_second(lambda n: cache.get_many(keys), count),
                "request 5w+5r": lambda count: per_second(lambda n: handler(request), count // 5),
                "aget/aset": lambda count: asyncio.run(aload(count // 2)),
            }
            return workload

        runs = {name: workloads(name) for name in BACKENDS}
        only = args.columns.split(",") if args.columns else list(runs["FerriteCache"])
        columns = [column for column in runs["FerriteCache"] if column in only]
        names = list(BACKENDS)
        rates: dict[str, dict[str, list[float]]] = {
            name: {c: [] for c in columns} for name in names
        }
        cpu: dict[str, dict[str, list[float]]] = {name: {c: [] for c in columns} for name in names}
        ratios: dict[str, list[float]] = {column: [] for column in columns}
        cpu_ratios: dict[str, list[float]] = {column: [] for column in columns}
        for column in columns:
            for round_number in range(args.rounds):
                # Each round runs every backend back to back, starting with a different one
                # each time; the ratio is taken within the round, so a burst of noise on the
                # machine falls on both sides of it.
                shift = round_number % len(names)
                for name in names[shift:] + names[:shift]:
                    rate, cpu_per_op = runs[name][column](args.calls)
                    rates[name][column].append(rate)
                    cpu[name][column].append(cpu_per_op)
                ratios[column].append(
                    rates["FerriteCache"][column][-1] / rates["django-redis"][column][-1]
                )
                cpu_ratios[column].append(
                    cpu["django-redis"][column][-1] / cpu["FerriteCache"][column][-1]
                )
        _report(columns, names, (rates, ratios), (cpu, cpu_ratios))


Figures = tuple[dict[str, dict[str, list[float]]], dict[str, list[float]]]


def _report(columns: list[str], names: list[str], speed: Figures, load: Figures) -> None:
    """Print ops/s and client CPU per operation, each with its ratio to django-redis."""
    _table(("ops/s (median)", "vs django-redis"), columns, names, speed, "16.0f")
    print(f"  {'  (quartiles)':18s}" + "".join(f"{_quartiles(speed[1][c]):>16s}" for c in columns))
    # CPU time of this process per operation (all its threads): the client's own cost,
    # kernel included, without the time it sleeps waiting for the server.
    _table(("client CPU us/op", "django-redis / ours"), columns, names, load, "16.1f")


def _table(
    titles: tuple[str, str], columns: list[str], names: list[str], figures: Figures, form: str
) -> None:
    (title, ratio_title), (values, ratios) = titles, figures
    print(f"  {title:18s}" + "".join(f"{column:>16s}" for column in columns))
    for name in names:
        print(
            f"  {name:18s}"
            + "".join(f"{statistics.median(values[name][c]):{form}}" for c in columns)
        )
    print(
        f"  {ratio_title:18s}" + "".join(f"{statistics.median(ratios[c]):15.2f}x" for c in columns)
    )


def _quartiles(values: list[float]) -> str:
    low, _, high = statistics.quantiles(values, n=4) if len(values) > 1 else (values * 3)
    return f"{low:.2f}-{high:.2f}"


if __name__ == "__main__":
    main()
