"""Several apps in one process, on one pool manager: an app's shutdown closes only what its
lifespan opened (its aliases, its event loop's pools and monitor), and leaves the manager
ready for the next app, whatever its server."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any

import httpx
import pytest
import redis.asyncio
from asgi_lifespan import LifespanManager
from fastapi import Depends, FastAPI

from example_projects.fastapi_app import create_app
from ferrite_integrations import ConfigError, PoolManager
from ferrite_integrations.fastapi import FerriteClient, ferrite_lifespan, get_client
from ferrite_integrations.testing import EmbeddedServer
from ferrite_integrations.testing.plugin import ServerFactory
from tests.conftest import await_until, wait_until
from tests.fastapi.helpers import TestClient

Plain = Annotated[redis.asyncio.Redis, Depends(get_client(auto_pipeline=False))]


def _blocking_app(lifespan: Any) -> FastAPI:
    app = FastAPI(lifespan=lifespan)

    @app.get("/blpop")
    async def blpop(redis: Plain) -> dict[str, Any]:
        try:
            return {"popped": await redis.blpop(["never-pushed"], timeout=1)}
        except Exception as error:
            return {"error": f"{type(error).__name__}: {error}"}

    return app


def _blocked(server: EmbeddedServer) -> bool:
    return any(entry.get("cmd") == "blpop" for entry in server.client_list())


def test_one_apps_shutdown_leaves_other_apps_and_the_sync_pools_running(
    server: EmbeddedServer, manager: PoolManager, client_name: str
) -> None:
    sync_name = f"{client_name}-sync"  # a Flask or Django pool of the same process
    # (its configuration, the first used, sets the server's breaker: quick to close again)
    fast = {"health_check_interval": 0.05, "breaker_reset_timeout": 0.05}
    manager.configure("flask", server.url, min_idle=1, client_name=sync_name, **fast)
    manager.start_monitor()
    wait_until(lambda: server.connected_clients(sync_name) == 1)
    lifespan = ferrite_lifespan(
        server.url, min_idle=2, client_name=client_name, manager=manager, **fast
    )
    with TestClient(_blocking_app(lifespan)) as a, ThreadPoolExecutor(1) as background:
        with TestClient(FastAPI(lifespan=lifespan)):  # app B, on an event loop of its own
            assert server.connected_clients(client_name) >= 4  # min_idle on each loop
            pending = background.submit(a.get, "/blpop")
            wait_until(lambda: _blocked(server))
        # B has shut down while A's BLPOP was waiting on A's pool
        assert pending.result(timeout=5).json() == {"popped": None}
        assert manager.aliases() == ["default", "flask"]  # A still holds its alias
        server.kill_clients()
        # A's monitor and the sync monitor still run: both re-open their min_idle
        wait_until(lambda: server.connected_clients(client_name) >= 2)
        wait_until(lambda: server.connected_clients(sync_name) >= 1)
        assert a.get("/blpop").json() == {"popped": None}
    assert manager.aliases() == ["flask"]  # the last app out unconfigured "default"
    wait_until(lambda: server.connected_clients(client_name) == 0)
    assert server.connected_clients(sync_name) >= 1


def test_apps_for_different_servers_run_one_after_the_other(
    ferrite_server_factory: ServerFactory, manager: PoolManager
) -> None:
    # the documented testing pattern: a server per test, create_app(server.url)
    for _ in range(2):
        server = ferrite_server_factory()
        with TestClient(create_app(server.url, manager=manager, min_idle=1)) as client:
            assert client.put("/items/1", json={"name": "lamp", "price": 1}).status_code == 200
            assert client.get("/pool").json()["url"] == f"redis://127.0.0.1:{server.port}/0"
        assert manager.aliases() == []


def test_apps_for_different_servers_on_the_process_wide_manager(
    ferrite_server_factory: ServerFactory,
) -> None:
    for _ in range(2):
        server = ferrite_server_factory()
        app = FastAPI(lifespan=ferrite_lifespan(server.url, client_name="fastapi-tests"))

        @app.get("/port")
        async def port(redis: FerriteClient) -> int:
            return int((await redis.config_get("port"))["port"])

        with TestClient(app) as client:
            assert client.get("/port").json() == server.port


def test_a_conflicting_app_running_at_the_same_time_is_told_to_use_its_own_manager(
    ferrite_server_factory: ServerFactory, manager: PoolManager
) -> None:
    first, second = ferrite_server_factory(), ferrite_server_factory()
    with TestClient(FastAPI(lifespan=ferrite_lifespan(first.url, manager=manager))):
        other = FastAPI(lifespan=ferrite_lifespan(second.url, manager=manager))
        with pytest.raises(ConfigError) as failure, TestClient(other):
            pytest.fail("two configurations of one alias in one manager")
        message = str(failure.value)
        assert "another application whose lifespan is still running" in message
        assert "manager=PoolManager()" in message
        assert manager.aliases() == ["default"]  # the failed start took nothing away
        separate = FastAPI(lifespan=ferrite_lifespan(second.url, manager=PoolManager()))
        with TestClient(separate):
            pass
    assert manager.aliases() == []


def test_an_alias_configured_by_other_code_is_used_and_left_configured(
    server: EmbeddedServer, manager: PoolManager
) -> None:
    manager.configure("default", server.url)
    with TestClient(FastAPI(lifespan=ferrite_lifespan(server.url, manager=manager))):
        pass
    assert manager.aliases() == ["default"]


@pytest.mark.asyncio
async def test_two_apps_on_one_event_loop(
    server: EmbeddedServer, manager: PoolManager, client_name: str
) -> None:
    lifespan = ferrite_lifespan(
        server.url, min_idle=1, client_name=client_name, health_check_interval=0.05, manager=manager
    )
    async with LifespanManager(_blocking_app(lifespan)) as running:
        async with LifespanManager(_blocking_app(lifespan)):
            pass
        # the loop's pools and monitor stay: the first app still runs on this loop
        assert manager.aliases() == ["default"]
        assert server.connected_clients(client_name) == 1
        server.kill_clients()
        await await_until(lambda: server.connected_clients(client_name) == 1)  # re-warmed
        transport = httpx.ASGITransport(app=running.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            assert (await client.get("/blpop")).json() == {"popped": None}
    assert manager.aliases() == []
    # closed on the client side; the server may answer CLIENT LIST before it reads the FIN
    await await_until(lambda: server.connected_clients(client_name) == 0)
