"""The health endpoint (opt-in, JSON, 200/503) and ``flask ferrite ...`` through Flask's
CliRunner, with the server up and down."""

from __future__ import annotations

import json

import pytest
from flask import Flask

from ferrite_integrations.flask import Ferrite
from ferrite_integrations.flask.cli import ferrite_cli
from ferrite_integrations.testing import EmbeddedServer
from ferrite_integrations.testing.plugin import ServerFactory
from tests.flask.conftest import DEAD_URL, AppFactory


def test_health_endpoint_is_off_unless_configured(create_app: AppFactory) -> None:
    assert create_app().test_client().get("/health/ferrite").status_code == 404


def test_health_endpoint_up_then_down(
    ferrite: Ferrite, ferrite_server_factory: ServerFactory, client_name: str
) -> None:
    server = ferrite_server_factory(password="s3cret-pass")
    app = Flask(__name__)
    app.config.update(
        FERRITE_URL=server.url,
        FERRITE_CLIENT_NAME=client_name,
        FERRITE_MONITOR=False,
        FERRITE_HEALTH_URL="/health/ferrite",
        FERRITE_POOLS={"sessions": f"redis://:s3cret-pass@127.0.0.1:{server.port}/1"},
    )
    ferrite.init_app(app)
    client = app.test_client()

    response = client.get("/health/ferrite")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    report = response.get_json()
    assert report["status"] == "up"
    assert set(report["pools"]) == {"default", "sessions"}
    assert report["pools"]["default"]["latency_ms"] >= 0
    assert "s3cret-pass" not in response.text

    server.stop()
    response = client.get("/health/ferrite")
    assert response.status_code == 503
    report = response.get_json()
    assert report["status"] == "down"
    assert report["pools"]["default"]["status"] == "down"
    assert report["pools"]["default"]["last_error"]


def test_health_endpoint_of_a_second_extension(
    create_app: AppFactory, server: EmbeddedServer
) -> None:
    other = Ferrite(config_prefix="OTHER")
    app = create_app(OTHER_URL=server.url, OTHER_MONITOR=False, OTHER_HEALTH_URL="/health/other")
    other.init_app(app)
    assert app.test_client().get("/health/other").get_json()["status"] == "up"
    assert "other_health" in app.view_functions


def test_cli_status_ping_info_stats(create_app: AppFactory, client_name: str) -> None:
    app = create_app(FERRITE_MIN_IDLE=1)
    runner = app.test_cli_runner()

    result = runner.invoke(ferrite_cli, ["status"])
    assert result.exit_code == 0, result.output
    label, status, report = result.output.strip().split(" ", 2)
    assert (label, status) == ("default:", "up")
    assert json.loads(report)["breaker"] == "closed"

    result = runner.invoke(ferrite_cli, ["ping"])
    assert result.exit_code == 0
    assert result.output.startswith("default: PONG in ")

    result = runner.invoke(ferrite_cli, ["info"])
    assert result.exit_code == 0
    clients = json.loads(result.output.split(": ", 1)[1])
    assert clients["connected_clients"] >= 1

    result = runner.invoke(ferrite_cli, ["stats"])
    assert result.exit_code == 0
    stats = json.loads(result.output.split(": ", 1)[1])
    assert (
        stats["pool"]["max"]
        == app.extensions["ferrite"]["FERRITE"].configs["default"].max_connections
    )


def test_cli_stats_is_this_process_view_with_real_numbers(
    create_app: AppFactory, ferrite_server_factory: ServerFactory
) -> None:
    server = ferrite_server_factory(password="pw-s3cret")
    app = create_app(
        FERRITE_URL=f"redis://:pw-s3cret@127.0.0.1:{server.port}/0", FERRITE_MAX_CONNECTIONS=7
    )
    result = app.test_cli_runner().invoke(ferrite_cli, ["stats"])
    assert result.exit_code == 0, result.output
    assert "pw-s3cret" not in result.output
    stats = json.loads(result.output.split(": ", 1)[1])
    assert stats["view"].startswith("this CLI process")
    assert stats["options"]["max_connections"] == 7
    assert stats["server"]["connected_clients"] >= 1  # before: every counter was null
    assert stats["pool"]["max"] == 7


def test_cli_reports_a_server_that_is_down_with_exit_code_1(
    create_app: AppFactory, server: EmbeddedServer
) -> None:
    app = create_app(FERRITE_POOLS={"sessions": f"redis://127.0.0.1:{server.port}/1"})
    runner = app.test_cli_runner()
    assert runner.invoke(ferrite_cli, ["status", "--pool", "sessions"]).exit_code == 0
    server.stop()

    result = runner.invoke(ferrite_cli, ["status"])
    assert result.exit_code == 1
    assert "default: down" in result.output
    assert "sessions: down" in result.output

    result = runner.invoke(ferrite_cli, ["ping", "--pool", "default"])
    assert result.exit_code == 1
    assert f"default: no PONG from 127.0.0.1:{server.port}" in result.output
    assert "Traceback" not in result.output


def test_cli_errors_say_what_to_do(create_app: AppFactory) -> None:
    app = create_app()
    result = app.test_cli_runner().invoke(ferrite_cli, ["status", "--pool", "nope"])
    assert result.exit_code == 1
    assert "No Ferrite pool named 'nope'. Pools: ['default']" in result.output

    bare = Flask("bare")
    result = bare.test_cli_runner().invoke(ferrite_cli, ["ping"])
    assert result.exit_code == 1
    assert "call ferrite.init_app(app)" in result.output


@pytest.mark.parametrize("command", ["status", "ping", "info", "stats"])
def test_cli_labels_pools_of_other_prefixes(
    create_app: AppFactory, server: EmbeddedServer, command: str
) -> None:
    app = create_app(OTHER_URL=server.url, OTHER_MONITOR=False)
    Ferrite(config_prefix="OTHER").init_app(app)
    result = app.test_cli_runner().invoke(ferrite_cli, [command])
    assert result.exit_code == 0, result.output
    assert [line.split(":")[0] for line in result.output.splitlines()] == ["default", "OTHER"]


def test_health_endpoint_is_503_when_any_pool_is_down(create_app: AppFactory) -> None:
    app = create_app(
        FERRITE_HEALTH_URL="/health/ferrite",
        FERRITE_POOLS={
            "jobs": {"url": DEAD_URL, "socket_connect_timeout": 0.05, "health_timeout": 0.1}
        },
    )
    response = app.test_client().get("/health/ferrite")
    report = response.get_json()
    assert report["pools"]["default"]["status"] == "up"
    assert report["pools"]["jobs"]["status"] == "down"
    assert report["status"] == "degraded"
    assert response.status_code == 503  # before: 200, as if the app could do its work
    result = app.test_cli_runner().invoke(ferrite_cli, ["status"])
    assert result.exit_code == 1  # the same rule
