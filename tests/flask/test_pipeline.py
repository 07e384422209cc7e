"""``ferrite.pipeline``: the request scope opened on first use and sent at the end of the
request, even when the view raised; reads through ``ferrite.client`` see its writes;
round trips counted by a proxy in front of the server."""

from __future__ import annotations

import asyncio
import logging

import pytest
import redis
from flask import Flask

from ferrite_integrations import current_scope, get_manager
from ferrite_integrations.flask import Ferrite
from ferrite_integrations.testing import EmbeddedServer, FaultProxy
from tests.conftest import wait_until
from tests.flask.conftest import AppFactory


@pytest.fixture
def proxied(
    create_app: AppFactory, ferrite: Ferrite, proxy: FaultProxy
) -> tuple[Flask, FaultProxy]:
    """An app whose pool talks to the server through ``proxy``, connected and warmed (the
    connection's handshake is not counted below)."""
    app = create_app(FERRITE_URL=proxy.url, FERRITE_MIN_IDLE=1, FERRITE_HEALTH_CHECK_INTERVAL=0)
    ferrite.warm(app)
    return app, proxy


def test_writes_are_sent_at_the_end_of_a_request_in_one_round_trip(
    proxied: tuple[Flask, FaultProxy], ferrite: Ferrite, direct: redis.Redis
) -> None:
    app, proxy = proxied

    @app.get("/")
    def index() -> str:
        for i in range(5):
            ferrite.pipeline.set(f"k{i}", i)
        ferrite.pipeline.set("last", "index")
        return "queued" if direct.get("last") is None else "already sent"

    before = proxy.requests_forwarded
    assert app.test_client().get("/").text == "queued"
    assert proxy.requests_forwarded - before == 1
    assert direct.mget([f"k{i}" for i in range(5)]) == [b"0", b"1", b"2", b"3", b"4"]
    assert direct.get("last") == b"index"


def test_reads_see_the_requests_writes_with_fewer_round_trips(
    proxied: tuple[Flask, FaultProxy], ferrite: Ferrite
) -> None:
    app, proxy = proxied

    @app.get("/")
    def index() -> str:
        for i in range(5):
            ferrite.pipeline.set(f"r{i}", i * 10)
        values = [ferrite.client.get(f"r{i}") for i in range(5)]
        return ",".join(value.decode() for value in values)

    before = proxy.requests_forwarded
    assert app.test_client().get("/").text == "0,10,20,30,40"
    assert proxy.requests_forwarded - before == 5  # the first read carries the 5 writes


def test_nothing_is_lost_when_the_view_raises(
    proxied: tuple[Flask, FaultProxy], ferrite: Ferrite, direct: redis.Redis
) -> None:
    app, _ = proxied

    @app.get("/")
    def index() -> str:
        ferrite.pipeline.set("written-before-the-error", "yes")
        raise RuntimeError("view failed")

    app.config["TESTING"] = False  # a real 500 response, as in production
    assert app.test_client().get("/").status_code == 500
    assert direct.get("written-before-the-error") == b"yes"


def test_a_request_that_does_not_use_the_pipeline_costs_no_round_trip(
    proxied: tuple[Flask, FaultProxy],
) -> None:
    app, proxy = proxied

    @app.get("/")
    def index() -> str:
        return "nothing to send"

    before = proxy.requests_forwarded
    app.test_client().get("/")
    assert proxy.requests_forwarded == before
    assert current_scope() is None


def test_failed_deferred_commands_are_logged_and_counted(
    proxied: tuple[Flask, FaultProxy],
    ferrite: Ferrite,
    direct: redis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    app, _ = proxied
    direct.set("text", "not a number")

    @app.get("/")
    def index() -> str:
        ferrite.pipeline.incr("text")
        ferrite.pipeline.set("after", "still sent")
        return "ok"

    with caplog.at_level(logging.WARNING, logger="ferrite_integrations"):
        assert app.test_client().get("/").status_code == 200
    assert "Deferred INCRBY failed: ResponseError" in caplog.text
    assert direct.get("after") == b"still sent"
    alias = ferrite.state(app).aliases["default"]
    assert get_manager().stats(alias)["sync"]["pipelining"]["failed_deferred"] == 1


def test_a_server_gone_at_the_end_of_the_request_is_logged_not_raised(
    proxied: tuple[Flask, FaultProxy], ferrite: Ferrite, caplog: pytest.LogCaptureFixture
) -> None:
    app, proxy = proxied

    @app.get("/")
    def index() -> str:
        ferrite.pipeline.set("lost", "value")
        proxy.refuse()  # the server is unreachable when the request ends
        return "ok"

    with caplog.at_level(logging.WARNING, logger="ferrite_integrations"):
        assert app.test_client().get("/").text == "ok"
    assert "Deferred SET failed" in caplog.text


def test_scopes_of_two_extensions_close_whatever_order_they_opened_in(
    create_app: AppFactory, ferrite: Ferrite, server: EmbeddedServer, direct: redis.Redis
) -> None:
    other = Ferrite(config_prefix="OTHER")
    app = create_app(OTHER_URL=f"redis://127.0.0.1:{server.port}/5", OTHER_MONITOR=False)
    other.init_app(app)

    @app.get("/<int:n>")
    def index(n: int) -> str:
        first, second = (other, ferrite) if n % 2 else (ferrite, other)
        first.pipeline.set("n", n)
        second.pipeline.set("n", n)
        return "ok"

    client = app.test_client()
    for n in range(4):
        client.get(f"/{n}")
        assert current_scope() is None  # no finished scope left behind
    assert direct.get("n") == b"3"
    assert redis.Redis(**{**server.redis_kwargs(), "db": 5}).get("n") == b"3"


def test_the_pipeline_of_an_app_context_is_sent_when_it_ends(
    create_app: AppFactory, ferrite: Ferrite, direct: redis.Redis
) -> None:
    app = create_app()
    with app.app_context():  # a script or CLI command
        ferrite.pipeline.set("from-a-script", 1)
        assert direct.get("from-a-script") is None
    assert direct.get("from-a-script") == b"1"


def test_named_pool_pipelines(
    create_app: AppFactory, ferrite: Ferrite, server: EmbeddedServer
) -> None:
    app = create_app(FERRITE_POOLS={"jobs": f"redis://127.0.0.1:{server.port}/6"})

    @app.get("/")
    def index() -> str:
        handle = ferrite.get_pipeline("jobs").rpush("queue", "job-1")
        return str(handle.result())  # asking for the result sends the queue

    assert app.test_client().get("/").text == "1"
    assert redis.Redis(**{**server.redis_kwargs(), "db": 6}).lrange("queue", 0, -1) == [b"job-1"]


def test_async_views_use_the_async_client_and_leave_no_connection_behind(
    create_app: AppFactory, ferrite: Ferrite, server: EmbeddedServer, client_name: str
) -> None:
    app = create_app()

    @app.get("/")
    async def index() -> str:
        await ferrite.async_client.incr("async-hits")
        value = await ferrite.async_client.get("async-hits")
        return value.decode()

    @app.get("/pipeline")
    async def uses_pipeline() -> str:
        ferrite.pipeline.set("never", 1)
        return "unreachable"

    client = app.test_client()
    assert [client.get("/").text for _ in range(5)] == ["1", "2", "3", "4", "5"]
    # each async view runs on an event loop of its own; its pool closes with the loop
    wait_until(lambda: server.connected_clients(client_name) == 0)
    with pytest.raises(RuntimeError, match=r"ferrite\.async_client"):
        client.get("/pipeline")
    assert asyncio.run(_exists(server)) == 0


async def _exists(server: EmbeddedServer) -> int:
    client = redis.asyncio.Redis(**server.redis_kwargs())
    try:
        return int(await client.exists("never"))
    finally:
        await client.aclose()
