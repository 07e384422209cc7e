"""Flask apps built the way users build them (an app factory and one module-level
extension), on real embedded servers. Each test's pools get a client name of their own, so
the connections the server sees can be counted per test."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest

pytest.importorskip("flask")

from flask import Flask

from ferrite_integrations.flask import Ferrite
from ferrite_integrations.testing import EmbeddedServer

AppFactory = Callable[..., Flask]


@pytest.fixture
def client_name() -> str:
    """A ``CLIENT SETNAME`` of this test's own: ``server.connected_clients(name)``."""
    return f"flask-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def ferrite() -> Ferrite:
    """The module-level ``ferrite = Ferrite()`` of a user's project."""
    return Ferrite()


@pytest.fixture
def create_app(ferrite: Ferrite, server: EmbeddedServer, client_name: str) -> AppFactory:
    """An app factory: ``create_app(FERRITE_X=...)``. The URL defaults to this test's own
    server (``server``; ``direct`` reads it); the monitor is off (its pings would show up
    in connection counts)."""

    def create_app(extension: Ferrite | None = None, **config: Any) -> Flask:
        app = Flask(f"app_{uuid.uuid4().hex[:6]}")
        app.config.update(
            TESTING=True,
            FERRITE_URL=server.url,
            FERRITE_CLIENT_NAME=client_name,
            FERRITE_MONITOR=False,
        )
        app.config.update(config)
        (extension or ferrite).init_app(app)
        return app

    return create_app


@pytest.fixture(autouse=True)
def _no_fallback_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing in these tests may reach a server by falling back on the environment or on
    localhost:6379: the fallback is a port where nothing listens."""
    monkeypatch.setenv("FERRITE_URL", DEAD_URL)


DEAD_URL = "redis://127.0.0.1:1/0"
