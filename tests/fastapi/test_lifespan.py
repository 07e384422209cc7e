"""``ferrite_lifespan`` against real servers: pre-warming, shutdown, strict and lenient
startup, composition with the application's own lifespan, named pools, bad input."""

from __future__ import annotations

import contextlib
import logging
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import redis
from asgi_lifespan import LifespanManager
from fastapi import Depends, FastAPI, Request
from starlette.applications import Starlette
from starlette.routing import Route

from ferrite_integrations import AsyncRequestScope, ConfigError, PoolManager, ServerUnavailableError
from ferrite_integrations.fastapi import (
    FerriteClient,
    ferrite_lifespan,
    get_client,
    health_endpoint,
    health_router,
    request_scope,
)
from ferrite_integrations.testing import EmbeddedServer, FaultProxy
from tests.conftest import wait_until
from tests.fastapi.helpers import TestClient


def _state_app(lifespan: Any) -> FastAPI:
    app = FastAPI(lifespan=lifespan)

    @app.get("/state")
    async def state(request: Request, redis: FerriteClient) -> dict[str, Any]:
        await redis.set("touched", "yes")
        return {
            "manager": type(request.state.ferrite).__name__,
            "db": getattr(request.state, "db", None),
            "touched": await redis.get("touched"),
        }

    return app


def test_startup_prewarms_and_shutdown_closes_with_testclient(
    server: EmbeddedServer, manager: PoolManager, client_name: str
) -> None:
    app = _state_app(
        ferrite_lifespan(server.url, min_idle=3, client_name=client_name, manager=manager)
    )
    with TestClient(app) as client:
        assert server.connected_clients(client_name) == 3  # opened before the first request
        assert client.get("/state").json() == {
            "manager": "PoolManager",
            "db": None,
            "touched": "yes",
        }
        assert server.connected_clients(client_name) == 3  # the request used a warm one
    wait_until(lambda: server.connected_clients(client_name) == 0)
    with TestClient(app) as client:  # a second run (new event loop) starts afresh
        assert server.connected_clients(client_name) == 3
        assert client.get("/state").status_code == 200
    wait_until(lambda: server.connected_clients(client_name) == 0)


@pytest.mark.asyncio
async def test_startup_and_shutdown_with_httpx_and_a_lifespan_manager(
    server: EmbeddedServer, manager: PoolManager, client_name: str
) -> None:
    app = _state_app(
        ferrite_lifespan(server.url, min_idle=2, client_name=client_name, manager=manager)
    )
    async with LifespanManager(app) as running:
        assert server.connected_clients(client_name) == 2
        transport = httpx.ASGITransport(app=running.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            response = await client.get("/state")
        assert response.json()["touched"] == "yes"
    # closed before the shutdown returned: only the server's reading of the FIN may lag
    wait_until(lambda: server.connected_clients(client_name) == 0, timeout=0.5)


def test_strict_startup_fails_naming_the_server_without_its_password(
    proxy: FaultProxy, manager: PoolManager
) -> None:
    proxy.refuse()
    url = f"redis://:hunter2-secret@127.0.0.1:{proxy.port}/0"
    app = FastAPI(lifespan=ferrite_lifespan(url, min_idle=2, manager=manager))
    started = time.monotonic()
    with pytest.raises(ServerUnavailableError) as failure, TestClient(app):
        pytest.fail("the app started although its server is unreachable")
    message = str(failure.value)
    assert f"pool 'default' cannot reach its server at 127.0.0.1:{proxy.port}" in message
    assert f"redis://:***@127.0.0.1:{proxy.port}/0" in message
    assert "strict=False" in message
    assert "hunter2" not in message
    assert time.monotonic() - started < 5  # bounded by the health timeout, not a hang


def test_strict_startup_fails_when_one_of_several_pools_is_unreachable(
    server: EmbeddedServer, proxy: FaultProxy, manager: PoolManager
) -> None:
    proxy.refuse()
    pools = {"cache": server.url, "sessions": proxy.url}
    app = FastAPI(lifespan=ferrite_lifespan(pools=pools, manager=manager))
    expected = "pool 'sessions' cannot reach"
    with pytest.raises(ServerUnavailableError, match=expected) as failure, TestClient(app):
        pass
    assert "'cache'" not in str(failure.value)


def test_lenient_startup_runs_degraded_and_recovers(
    server: EmbeddedServer,
    proxy: FaultProxy,
    manager: PoolManager,
    client_name: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    proxy.refuse()
    lifespan = ferrite_lifespan(
        proxy.url,
        strict=False,
        min_idle=2,
        client_name=client_name,
        health_check_interval=0.05,
        breaker_reset_timeout=0.05,
        socket_connect_timeout=0.5,
        manager=manager,
    )
    app = _state_app(lifespan)
    app.include_router(health_router, prefix="/health")
    with (
        caplog.at_level(logging.WARNING, "ferrite_integrations.fastapi"),
        TestClient(app, raise_server_exceptions=False) as client,
    ):
        assert f"cannot reach its server at 127.0.0.1:{proxy.port}" in caplog.text
        assert client.get("/health/ferrite").status_code == 503
        assert client.get("/state").status_code == 500  # fails, and fast
        proxy.pass_through()
        wait_until(lambda: client.get("/health/ferrite").status_code == 200)
        # the monitor re-opened the min_idle connections without any request
        wait_until(lambda: server.connected_clients(client_name) >= 2)
        assert client.get("/state").json()["touched"] == "yes"


def test_composed_lifespan_runs_inside_and_merges_its_state(
    server: EmbeddedServer, manager: PoolManager, direct: redis.Redis, client_name: str
) -> None:
    events: list[str] = []

    @contextlib.asynccontextmanager
    async def own_lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        client = manager.async_client()  # the pools are ready before the app's own startup
        await client.set("booted", "1")
        events.append(f"start with {server.connected_clients(client_name)} connections")
        yield {"db": "ready"}
        await client.set("stopping", "1")  # and still open during its shutdown
        events.append("stop")

    lifespan = ferrite_lifespan(
        server.url, lifespan=own_lifespan, min_idle=2, client_name=client_name, manager=manager
    )
    app = _state_app(lifespan)
    with TestClient(app) as client:
        assert client.get("/state").json() == {
            "manager": "PoolManager",
            "db": "ready",
            "touched": "yes",
        }
    assert events == ["start with 2 connections", "stop"]
    assert direct.mget("booted", "stopping") == [b"1", b"1"]
    wait_until(lambda: server.connected_clients(client_name) == 0)


def test_composed_lifespan_may_be_a_plain_async_generator_function(
    server: EmbeddedServer, manager: PoolManager
) -> None:
    async def own_lifespan(app: Any) -> AsyncIterator[dict[str, Any]]:
        yield {"db": "from-a-generator"}

    app = _state_app(ferrite_lifespan(server.url, lifespan=own_lifespan, manager=manager))
    with TestClient(app) as client:
        assert client.get("/state").json()["db"] == "from-a-generator"


def test_composed_lifespan_may_not_take_the_ferrite_state_key(
    server: EmbeddedServer, manager: PoolManager, client_name: str
) -> None:
    @contextlib.asynccontextmanager
    async def own_lifespan(app: Any) -> AsyncIterator[dict[str, Any]]:
        yield {"ferrite": "mine"}

    lifespan = ferrite_lifespan(
        server.url, lifespan=own_lifespan, min_idle=1, client_name=client_name, manager=manager
    )
    with (
        pytest.raises(ConfigError, match="state key 'ferrite'"),
        TestClient(FastAPI(lifespan=lifespan)),
    ):
        pass
    wait_until(lambda: server.connected_clients(client_name) == 0)  # nothing left open


def test_named_pools(server: EmbeddedServer, manager: PoolManager) -> None:
    base = f"redis://127.0.0.1:{server.port}"
    lifespan = ferrite_lifespan(
        pools={"cache": {"url": f"{base}/1", "max_connections": 4}, "sessions": f"{base}/2"},
        manager=manager,
    )
    app = FastAPI(lifespan=lifespan)
    Cache = Depends(get_client("cache"))
    Sessions = request_scope("sessions")

    @app.post("/login/{user}")
    async def login(
        user: str,
        cache: Any = Cache,
        scope: AsyncRequestScope = Sessions,
    ) -> dict[str, Any]:
        scope.deferred.set(f"session:{user}", "open")
        await cache.incr("logins")
        return {"logins": int(await cache.get("logins"))}

    @app.get("/default")
    async def default(redis: FerriteClient) -> None:
        await redis.ping()

    with TestClient(app) as client:
        assert client.post("/login/ann").json() == {"logins": 1}
        with pytest.raises(ConfigError, match="No Ferrite pool 'default'"):
            client.get("/default")
        assert manager.config("cache").max_connections == 4
    assert manager.aliases() == []  # unconfigured at shutdown
    db1 = redis.Redis(host=server.host, port=server.port, db=1)
    db2 = redis.Redis(host=server.host, port=server.port, db=2)
    assert (db1.get("logins"), db2.get("session:ann"), db2.get("logins")) == (b"1", b"open", None)
    db1.close()
    db2.close()


def _sync_generator(app: Any) -> Iterator[dict[str, Any]]:
    yield {}


@contextlib.contextmanager
def _sync_context_manager(app: Any) -> Iterator[dict[str, Any]]:
    yield {}


async def _returns_state(app: Any) -> dict[str, Any]:
    return {}


@contextlib.asynccontextmanager
async def _takes_no_app() -> AsyncIterator[dict[str, Any]]:
    yield {}


async def _generator_takes_no_app() -> AsyncIterator[dict[str, Any]]:
    yield {}


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"lifespan": _sync_generator}, "is a sync generator function"),
        ({"lifespan": _sync_context_manager}, "is a @contextlib.contextmanager"),
        ({"lifespan": _returns_state}, "is an async function that returns"),
        ({"lifespan": _takes_no_app}, "does not take the application as its one argument"),
        ({"lifespan": _generator_takes_no_app}, "does not take the application"),
        ({"max_conections": 3}, "Did you mean 'max_connections'"),
        ({"pools": {"cache": 5}}, "pools['cache'] must be a URL string or a dict"),
        ({"pools": {"cache": {"min_idle": -1}}}, "pools['cache']: "),
        ({"pools": []}, "pools must be a dict"),
        ({"pools": {}}, "pools is empty"),
        ({"url": "redis://h/0", "pools": {"default": "redis://h/1"}}, "given twice"),
        ({"strict": "yes"}, "strict must be True or False"),
        ({"lifespan": 42}, "lifespan must be the application's own lifespan"),
        ({"url": "http://127.0.0.1/"}, "scheme"),
    ],
)
def test_bad_input_is_a_config_error_when_the_app_is_built(
    kwargs: dict[str, Any], expected: str
) -> None:
    with pytest.raises(ConfigError) as failure:
        ferrite_lifespan(**kwargs)
    assert expected in str(failure.value)


def test_a_wrong_lifespan_names_the_fix() -> None:
    with pytest.raises(ConfigError) as failure:
        ferrite_lifespan(lifespan=_sync_context_manager)
    message = str(failure.value)
    assert "lifespan=_sync_context_manager is a @contextlib.contextmanager" in message
    assert "@contextlib.asynccontextmanager" in message


def test_a_lifespan_that_returns_no_context_manager_fails_startup_clearly(
    server: EmbeddedServer, manager: PoolManager
) -> None:
    lifespan = ferrite_lifespan(server.url, lifespan=lambda app: {"db": 1}, manager=manager)
    with (
        pytest.raises(ConfigError, match=r"must return an async context manager.*returned dict"),
        TestClient(FastAPI(lifespan=lifespan)),
    ):
        pass
    assert manager.aliases() == []


def test_plain_starlette_app(server: EmbeddedServer, manager: PoolManager) -> None:
    app = Starlette(
        routes=[Route("/health/ferrite", health_endpoint)],
        lifespan=ferrite_lifespan(server.url, manager=manager),
    )
    with TestClient(app) as client:
        response = client.get("/health/ferrite")
    assert response.status_code == 200
    assert response.json()["pools"]["default"]["address"] == f"127.0.0.1:{server.port}"


def test_the_lifespan_needs_only_starlette() -> None:
    code = (
        "import sys; from ferrite_integrations.fastapi import ferrite_lifespan, "
        "health_endpoint; ferrite_lifespan('redis://127.0.0.1:1/0'); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'fastapi'))"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30
    )
    assert output.stdout.strip() == "[]"
