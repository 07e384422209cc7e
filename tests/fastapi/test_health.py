"""``health_router`` against real servers: 200 when up, 503 when down, back to 200 when
the server returns; never a password in the report."""

from __future__ import annotations

import pytest
from fastapi import FastAPI

from ferrite_integrations import PoolManager
from ferrite_integrations.fastapi import ferrite_lifespan, health_router
from ferrite_integrations.testing import EmbeddedServer, FaultProxy
from ferrite_integrations.testing.plugin import ServerFactory
from tests.conftest import wait_until
from tests.fastapi.helpers import TestClient


def test_up_then_down_then_up(proxy: FaultProxy, manager: PoolManager) -> None:
    lifespan = ferrite_lifespan(proxy.url, breaker_reset_timeout=0.05, manager=manager)
    app = FastAPI(lifespan=lifespan)
    app.include_router(health_router, prefix="/health")
    with TestClient(app) as client:
        up = client.get("/health/ferrite")
        assert up.status_code == 200
        assert up.json()["status"] == "up"
        assert up.json()["pools"]["default"]["address"] == f"127.0.0.1:{proxy.port}"
        proxy.cut_all()
        proxy.refuse()
        down = client.get("/health/ferrite")
        assert down.status_code == 503
        report = down.json()
        assert report["status"] == "down"
        assert report["pools"]["default"]["last_error"]
        proxy.pass_through()
        wait_until(lambda: client.get("/health/ferrite").status_code == 200)


def test_several_pools_one_down_is_degraded_and_still_200(
    server: EmbeddedServer, proxy: FaultProxy, manager: PoolManager
) -> None:
    lifespan = ferrite_lifespan(pools={"cache": server.url, "queue": proxy.url}, manager=manager)
    app = FastAPI(lifespan=lifespan)
    app.include_router(health_router, prefix="/health")
    with TestClient(app) as client:
        proxy.refuse()
        response = client.get("/health/ferrite")
    assert response.status_code == 200
    report = response.json()
    assert report["status"] == "degraded"
    assert {name: pool["status"] for name, pool in report["pools"].items()} == {
        "cache": "up",
        "queue": "down",
    }


@pytest.mark.parametrize("username", [None, "app-user"])
def test_the_report_never_shows_the_password(
    ferrite_server_factory: ServerFactory, manager: PoolManager, username: str | None
) -> None:
    server = ferrite_server_factory(password="s3cret-pass", username=username)
    url = f"redis://{username or ''}:s3cret-pass@127.0.0.1:{server.port}/0"
    app = FastAPI(lifespan=ferrite_lifespan(url, manager=manager))
    app.include_router(health_router, prefix="/health")
    with TestClient(app) as client:
        response = client.get("/health/ferrite")
    assert response.status_code == 200
    assert "s3cret-pass" not in response.text
    assert response.json()["pools"]["default"]["url"].startswith(f"redis://{username or ''}:***@")
