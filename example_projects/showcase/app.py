"""The showcase: one ASGI app serving the FastAPI example at ``/``, the Flask example at
``/flask/`` and the Django site at ``/django/`` (both through a WSGI adapter), all on the
process-wide pool manager. The page at ``/`` shows every pool's stats and health, and runs
the same view with and without request pipelining.

Round trips in the comparison are counted on the wire: its pool reaches the server through
a counting loopback proxy (``ferrite_integrations.testing.FaultProxy``), which can also add
a simulated network hop.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from a2wsgi import WSGIMiddleware
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse

from ferrite_integrations import PoolConfig, get_manager
from ferrite_integrations.testing import FaultProxy

EXAMPLES = Path(__file__).resolve().parent.parent
COMPARE_ALIAS = "showcase-compare"
COMPARE_RUNS = 20
PAGE = (Path(__file__).with_name("page.html")).read_text(encoding="utf-8")

Send = Callable[..., Awaitable[Any]]


def build(url: str) -> FastAPI:
    """The showcase app for the server at ``url``.

    Args:
        url: the server's URL; the three examples and the comparison all use it.
    """
    os.environ["FERRITE_URL"] = url  # the Flask and Django examples read it at start-up
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_site.settings")
    for path in (str(EXAMPLES.parent), str(EXAMPLES / "django_site")):
        if path not in sys.path:
            sys.path.insert(0, path)

    from django_site.wsgi import application as django_application

    from example_projects.fastapi_app.main import create_app as create_fastapi_app
    from example_projects.flask_app.app import create_app as create_flask_app

    app = create_fastapi_app(url)
    add_comparison(app, url)
    app.add_api_route("/", _page, methods=["GET"], response_class=HTMLResponse)
    app.add_api_route("/showcase/stats", _stats, methods=["GET"])
    app.mount("/flask", WSGIMiddleware(create_flask_app()))  # type: ignore[arg-type]
    app.mount("/django", WSGIMiddleware(django_application))  # type: ignore[arg-type]
    return app


def add_comparison(app: FastAPI, url: str) -> None:
    """Add ``POST /showcase/compare`` to ``app``, with its counting proxy in front of ``url``
    (opened and closed around the app's own lifespan)."""
    inner = app.router.lifespan_context
    address = PoolConfig.from_url(url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        with FaultProxy(address.host, address.port) as proxy:
            manager = get_manager()
            target = url.replace(f"{address.host}:{address.port}", f"{proxy.host}:{proxy.port}")
            # monitor=False: no health pings through the proxy to blur its count
            manager.configure(COMPARE_ALIAS, target, client_name="showcase-compare", monitor=False)
            try:
                async with inner(app) as state:
                    # one comparison at a time: they share the proxy's counter and delay
                    yield {**(state or {}), "proxy": proxy, "compare_lock": asyncio.Lock()}
            finally:
                manager.forget(COMPARE_ALIAS)

    app.router.lifespan_context = lifespan
    app.add_api_route("/showcase/compare", _compare, methods=["POST"])


async def _page() -> str:
    return PAGE


async def _stats() -> dict[str, Any]:
    manager = get_manager()
    health = await manager.ahealth()
    pools = []
    for alias, stats in manager.stats().items():
        pools.append(
            {
                "alias": alias,
                "url": stats["url"],
                "shared_with": stats["shared_with"],
                "health": health["pools"].get(alias, {}),
                "sync": _counts(stats["sync"]),
                "async": [_counts(pool) for pool in stats["async"]],
            }
        )
    return {"status": health["status"], "pools": pools}


def _counts(stats: dict[str, Any] | None) -> dict[str, Any] | None:
    if stats is None:
        return None
    counts = {key: stats[key] for key in ("in_use", "idle", "waiting", "max", "created")}
    counts["pipelined_round_trips"] = stats["pipelining"]["round_trips"]
    counts["pipelined_commands"] = stats["pipelining"]["commands"]
    return counts


async def _compare(request: Request, hop_ms: float = 0.0) -> dict[str, Any]:
    """Run the same view ``COMPARE_RUNS`` times without and with request pipelining."""
    if not 0 <= hop_ms <= 20:
        raise HTTPException(422, "hop_ms must be between 0 and 20")
    lock: asyncio.Lock = request.state.compare_lock
    async with lock:  # a second click waits for the first comparison to end
        return await _compare_now(request.state.proxy, hop_ms)


async def _compare_now(proxy: FaultProxy, hop_ms: float) -> dict[str, Any]:
    manager = get_manager()
    if hop_ms:
        proxy.delay(hop_ms / 2000)  # per chunk, each way: a round trip gains hop_ms
    else:
        proxy.pass_through()
    try:
        client = manager.async_client(COMPARE_ALIAS, auto_pipeline=False)
        await client.ping()  # a connection is ready before the clock starts

        async def plain() -> list[Any]:
            return await _product_view(client.execute_command, client.execute_command)

        async def pipelined() -> list[Any]:
            async with manager.arequest_scope(COMPARE_ALIAS) as scope:

                async def defer(*args: Any) -> None:
                    scope.deferred.execute_command(*args)

                return await _product_view(defer, scope.client.execute_command)

        return {
            "runs": COMPARE_RUNS,
            "hop_ms": hop_ms,
            "without": await _measure(plain, proxy),
            "with": await _measure(pipelined, proxy),
        }
    finally:
        proxy.pass_through()


async def _measure(view: Callable[[], Awaitable[list[Any]]], proxy: FaultProxy) -> dict[str, Any]:
    before = proxy.requests_forwarded
    started = time.perf_counter()
    for _ in range(COMPARE_RUNS):
        result = await view()
    elapsed = time.perf_counter() - started
    return {
        "round_trips_per_view": (proxy.requests_forwarded - before) / COMPARE_RUNS,
        "ms_per_view": round(elapsed * 1000 / COMPARE_RUNS, 3),
        "last_result": [value.decode() if isinstance(value, bytes) else value for value in result],
    }


async def _product_view(write: Send, read: Send) -> list[Any]:
    """One product page: 4 reads the page shows, 6 writes it only records."""
    product = await read("HGET", "showcase:product:1", "name")
    await write("HSET", "showcase:product:1", "name", "ferrite mug")
    await write("INCR", "showcase:views:1")
    await write("LPUSH", "showcase:recent", "1")
    await write("LTRIM", "showcase:recent", "0", "9")
    views = await read("GET", "showcase:views:1")
    await write("ZINCRBY", "showcase:popular", "1", "1")
    await write("SET", "showcase:last-view", str(time.time()), "EX", "3600")
    recent = await read("LLEN", "showcase:recent")
    popular = await read("ZSCORE", "showcase:popular", "1")
    return [product, views, recent, popular]
