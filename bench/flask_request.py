"""A Flask view doing 5 cache writes + 5 reads, requests/s, one run, same server:

- ferrite.pipeline: writes deferred through ``ferrite.pipeline``, reads through
  ``ferrite.client`` (the first read carries the five writes: 5 round trips, not 10)
- ferrite.client: the same calls made directly on the shared pool (10 round trips)
- FerriteCache: Flask-Caching's API on our backend (``cache.set``/``cache.get``)
- Flask-Caching RedisCache: ``CACHE_TYPE = "RedisCache"``
- flask-redis style: one module-level ``redis.Redis.from_url(...)`` client

Requests go through Flask's test client (the whole WSGI stack, no HTTP socket), one thread,
against an embedded server on loopback. Rounds alternate between the variants; the best
round of each is reported.

    .venv/bin/python bench/flask_request.py [--requests 2000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable
from typing import Any

import flask_caching
import redis
from flask import Flask

from ferrite_integrations.flask import Ferrite
from ferrite_integrations.testing import EmbeddedServer

KEYS = [f"bench:{i}" for i in range(5)]


def write_then_read(writer: Any, reader: Any) -> str:
    """The benchmarked view: five SETs through ``writer``, then five GETs through ``reader``."""
    for n, key in enumerate(KEYS):
        writer.set(key, n)
    return ",".join(str(reader.get(key)) for key in KEYS)


def ferrite_app(url: str, pipelined: bool) -> Flask:
    app = Flask("ferrite")
    app.config.update(FERRITE_URL=url, FERRITE_MIN_IDLE=1, FERRITE_MONITOR=False)
    ferrite = Ferrite()
    ferrite.init_app(app)

    @app.get("/")
    def view() -> str:
        return write_then_read(ferrite.pipeline if pipelined else ferrite.client, ferrite.client)

    return app


def flask_caching_app(url: str, cache_type: str) -> Flask:
    app = Flask("flask-caching")
    settings: dict[str, Any] = {
        "CACHE_TYPE": cache_type,
        "CACHE_REDIS_URL": url,
        "CACHE_FERRITE_URL": url,
    }
    if cache_type != "RedisCache":
        settings["CACHE_OPTIONS"] = {"min_idle": 1, "monitor": False}
    cache = flask_caching.Cache(app, config=settings)

    @app.get("/")
    def view() -> str:
        return write_then_read(cache, cache)

    return app


def plain_client_app(url: str) -> Flask:
    app = Flask("flask-redis-style")
    client = redis.Redis.from_url(url)  # what flask-redis keeps on its extension

    @app.get("/")
    def view() -> str:
        return write_then_read(client, client)

    return app


def requests_per_second(app: Flask, count: int) -> float:
    client = app.test_client()
    client.get("/")  # connect and warm outside the measurement
    started = time.perf_counter()
    for _ in range(count):
        response = client.get("/")
        if response.status_code != 200:
            raise RuntimeError(response.text)
    return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with EmbeddedServer() as server:
        variants: dict[str, Callable[[], Flask]] = {
            "ferrite.pipeline": lambda: ferrite_app(server.url, pipelined=True),
            "ferrite.client": lambda: ferrite_app(server.url, pipelined=False),
            "FerriteCache (Flask-Caching)": lambda: flask_caching_app(
                server.url, "ferrite_integrations.flask.FerriteCache"
            ),
            "Flask-Caching RedisCache": lambda: flask_caching_app(server.url, "RedisCache"),
            "flask-redis style client": lambda: plain_client_app(server.url),
        }
        apps = {name: build() for name, build in variants.items()}
        print(
            f"{platform.machine()}, Python {platform.python_version()}, Flask "
            f"{_version('flask')}, "
            f"Flask-Caching {_version('flask-caching')}, redis-py {redis.__version__}, "
            f"hiredis {_hiredis()}, server {server.version}; {args.requests} requests x "
            f"{args.rounds} rounds"
        )
        best: dict[str, float] = dict.fromkeys(apps, 0.0)
        for _ in range(args.rounds):
            for name, app in apps.items():
                best[name] = max(best[name], requests_per_second(app, args.requests))
        anchor = best["Flask-Caching RedisCache"]
        print(f"{'view: 5 writes + 5 reads':32} {'requests/s':>10} {'vs RedisCache':>14}")
        for name, rate in best.items():
            print(f"{name:32} {rate:10,.0f} {rate / anchor:13.2f}x")


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


def _hiredis() -> Any:
    try:
        import hiredis

        return hiredis.__version__
    except ImportError:
        return "no"


if __name__ == "__main__":
    main()
