"""The example app: built by its factory from FERRITE_URL, served directly and mounted
under /flask/ in an ASGI app through a WSGI adapter."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import ModuleType

import pytest
import redis

from ferrite_integrations.testing import EmbeddedServer

EXAMPLES = Path(__file__).resolve().parents[2] / "example_projects"


@pytest.fixture
def example(monkeypatch: pytest.MonkeyPatch, server: EmbeddedServer) -> ModuleType:
    monkeypatch.setenv("FERRITE_URL", server.url)
    monkeypatch.syspath_prepend(str(EXAMPLES))
    import flask_app

    return flask_app


def test_pages_counter_pipeline_and_health(example: ModuleType, direct: redis.Redis) -> None:
    app = example.create_app({"FERRITE_MONITOR": False})
    client = app.test_client()
    assert "1 visits so far." in client.get("/").text
    assert "2 visits so far." in client.get("/").text
    assert "Before this: /" in client.get("/last").text
    assert direct.get("example:last") == b"/last"
    health = client.get("/health/ferrite")
    assert health.status_code == 200
    assert health.get_json()["status"] == "up"


def test_links_follow_the_mount_point(example: ModuleType) -> None:
    app = example.create_app({"FERRITE_MONITOR": False})
    page = app.test_client().get("/", base_url="http://localhost/flask/").text
    assert 'href="/flask/last"' in page
    assert 'href="/flask/health/ferrite"' in page


def test_mounted_under_flask_in_an_asgi_app(example: ModuleType, direct: redis.Redis) -> None:
    httpx = pytest.importorskip("httpx")
    a2wsgi = pytest.importorskip("a2wsgi")
    routing = pytest.importorskip("starlette.routing")
    applications = pytest.importorskip("starlette.applications")
    flask_app = example.create_app({"FERRITE_MONITOR": False})
    asgi = applications.Starlette(
        routes=[routing.Mount("/flask", app=a2wsgi.WSGIMiddleware(flask_app))]
    )

    async def visit() -> tuple[str, int]:
        transport = httpx.ASGITransport(app=asgi)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            page = (await client.get("/flask/")).text
            health = await client.get("/flask/health/ferrite")
            return page, health.status_code

    page, status = asyncio.run(visit())
    assert "1 visits so far." in page
    assert 'href="/flask/last"' in page
    assert status == 200
    assert direct.get("example:last") == b"/flask/"
