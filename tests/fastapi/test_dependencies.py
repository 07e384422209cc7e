"""The dependencies against real servers: the auto-pipelining client, the request scope
(sent before the response, also when the handler raises), dependency caching, background
tasks, sync handlers, named pools and the error without a lifespan."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any

import pytest
import redis
import redis.asyncio
from asgi_lifespan import LifespanManager
from fastapi import BackgroundTasks, Depends, FastAPI, HTTPException, WebSocket

from ferrite_integrations import AsyncRequestScope, ConfigError, PoolManager, current_async_scope
from ferrite_integrations.fastapi import (
    FerriteClient,
    RequestScope,
    ferrite_lifespan,
    get_client,
    request_scope,
)
from ferrite_integrations.testing import FaultProxy
from tests.fastapi.helpers import TestClient, call_asgi

Lenient = Annotated[AsyncRequestScope, request_scope(raise_on_error=False)]
Strict = Annotated[AsyncRequestScope, request_scope(raise_on_error=True, on_error="flush")]


@pytest.fixture
def app(proxy: FaultProxy, manager: PoolManager) -> FastAPI:
    # monitor off: its pings would blur the round-trip counts
    return FastAPI(lifespan=ferrite_lifespan(proxy.url, min_idle=1, monitor=False, manager=manager))


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as client:
        yield client


def test_the_issue_example_takes_one_round_trip(
    app: FastAPI, proxy: FaultProxy, direct: redis.Redis
) -> None:
    @app.get("/items/{item_id}")
    async def read_item(item_id: int, redis: FerriteClient, scope: RequestScope) -> dict[str, Any]:
        scope.deferred.incr(f"views:{item_id}")  # sent with the next read or after the handler
        return {
            "cached": await redis.get(f"item:{item_id}"),
            "views": await redis.get(f"views:{item_id}"),
        }

    direct.set("item:7", "seven")
    with TestClient(app) as client:
        before = proxy.requests_forwarded
        assert client.get("/items/7").json() == {"cached": "seven", "views": "1"}
        assert proxy.requests_forwarded - before == 2  # INCR + GET together, then GET
        assert client.get("/items/7").json()["views"] == "2"


@pytest.mark.parametrize("auto_pipeline", [True, False])
def test_concurrent_commands_of_a_handler_share_one_round_trip(
    app: FastAPI, proxy: FaultProxy, auto_pipeline: bool
) -> None:
    chosen = Depends(get_client(auto_pipeline=auto_pipeline))

    @app.get("/many")
    async def many(redis: Any = chosen) -> list[Any]:
        return await asyncio.gather(*(redis.incr(f"n:{i % 4}") for i in range(20)))

    with TestClient(app) as client:
        before = proxy.requests_forwarded
        assert sorted(client.get("/many").json()) == sorted([1, 2, 3, 4, 5] * 4)
        round_trips = proxy.requests_forwarded - before
    if auto_pipeline:
        assert round_trips == 1  # one pipeline on the pre-warmed connection
    else:
        assert round_trips >= 20  # one per command, plus the handshakes of new connections


def _writes_of(direct: redis.Redis) -> Any:
    return lambda: direct.mget("a", "b", "n")


def _deferring_app(app: FastAPI) -> FastAPI:
    @app.get("/writes")
    async def writes(scope: RequestScope) -> str:
        scope.deferred.set("a", "1")
        scope.deferred.set("b", "2")
        scope.deferred.incr("n")
        return "queued"  # no read: the queue is still full when the handler returns

    @app.get("/fails")
    async def fails(scope: RequestScope) -> str:
        scope.deferred.set("a", "1")
        scope.deferred.set("b", "2")
        scope.deferred.incr("n")
        raise RuntimeError("handler failed after queueing writes")

    @app.get("/missing")
    async def missing(scope: RequestScope) -> str:
        scope.deferred.set("a", "1")
        scope.deferred.set("b", "2")
        scope.deferred.incr("n")
        raise HTTPException(status_code=404, detail="no such thing")

    @app.get("/sync")
    def sync_handler(scope: RequestScope) -> str:  # runs in a worker thread
        scope.deferred.set("a", "1")
        scope.deferred.set("b", "2")
        scope.deferred.incr("n")
        return "queued from a thread"

    return app


@pytest.mark.asyncio
@pytest.mark.parametrize("path", ["/writes", "/sync"])
async def test_the_scope_is_sent_before_the_response(
    app: FastAPI, proxy: FaultProxy, direct: redis.Redis, path: str
) -> None:
    proxy.delay(0.02)  # a send after the response would now surely come too late
    async with LifespanManager(_deferring_app(app)) as running:
        result = await call_asgi(running.app, path, at_response_start=_writes_of(direct))
    assert result.status == 200
    assert result.seen_at_start == [b"1", b"2", b"1"]


@pytest.mark.asyncio
async def test_the_scope_is_sent_when_the_handler_raises(
    app: FastAPI, proxy: FaultProxy, direct: redis.Redis
) -> None:
    proxy.delay(0.02)
    async with LifespanManager(_deferring_app(app)) as running:
        with pytest.raises(RuntimeError, match="handler failed"):
            await call_asgi(running.app, "/fails", at_response_start=_writes_of(direct))
        direct.delete("a", "b", "n")
        result = await call_asgi(running.app, "/missing", at_response_start=_writes_of(direct))
    assert result.status == 404
    assert result.seen_at_start == [b"1", b"2", b"1"]


def test_every_dependency_of_a_request_gets_the_same_scope(
    app: FastAPI, proxy: FaultProxy, direct: redis.Redis
) -> None:
    seen: list[AsyncRequestScope] = []

    async def audit(scope: RequestScope) -> None:
        seen.append(scope)
        scope.deferred.lpush("audit", "visit")

    again = request_scope()  # a second Depends object for the same scope

    async def uncached(scope: AsyncRequestScope = again) -> None:
        seen.append(scope)

    not_cached = Depends(uncached, use_cache=False)

    async def counted(scope: Any = not_cached) -> AsyncIterator[None]:
        yield

    @app.get("/page", dependencies=[Depends(audit), Depends(counted, scope="function")])
    async def page(scope: RequestScope, redis: FerriteClient) -> int:
        seen.append(scope)
        scope.deferred.incr("pages")
        return int(await redis.llen("audit"))

    with TestClient(app) as client:
        before = proxy.requests_forwarded
        assert client.get("/page").json() == 1  # the LLEN saw the audit's write
        assert proxy.requests_forwarded - before == 1  # LPUSH, INCR and LLEN together
    assert len(seen) == 3
    assert seen[0] is seen[1] is seen[2]
    assert direct.get("pages") == b"1"


def test_background_tasks_run_after_the_scope_with_the_client(
    app: FastAPI, direct: redis.Redis
) -> None:
    report: dict[str, Any] = {}

    async def later(redis: redis.asyncio.Redis) -> None:
        report["scope open"] = current_async_scope() is not None
        report["request write seen"] = await redis.get("from-request")
        await redis.set("from-background", "done")

    @app.post("/jobs")
    async def jobs(scope: RequestScope, redis: FerriteClient, tasks: BackgroundTasks) -> str:
        scope.deferred.set("from-request", "queued")
        tasks.add_task(later, redis)
        return "accepted"

    with TestClient(app) as client:
        assert client.post("/jobs").json() == "accepted"
    assert report == {"scope open": False, "request write seen": b"queued"}
    assert direct.get("from-background") == b"done"


def test_a_failed_deferred_command_with_raise_on_error(app: FastAPI, direct: redis.Redis) -> None:
    @app.get("/strict")
    async def strict(
        scope: Annotated[AsyncRequestScope, request_scope(raise_on_error=True)],
    ) -> str:
        scope.deferred.set("text", "not a number")
        scope.deferred.incr("text")
        scope.deferred.set("after", "applied")
        return "ok"

    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/strict").status_code == 500
    assert direct.get("after") == b"applied"  # only the failed command failed


def test_request_scope_rejects_a_bad_on_error() -> None:
    with pytest.raises(ConfigError, match="on_error must be 'flush' or 'discard'"):
        request_scope(on_error="drop")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="pool name must be a non-empty string"):
        get_client("")


def test_a_dependency_without_a_configured_pool_says_what_to_do() -> None:
    app = FastAPI()

    @app.get("/")
    async def index(
        redis: Annotated[redis.asyncio.Redis, Depends(get_client("never-configured"))],
    ) -> None:
        pass

    with TestClient(app) as client, pytest.raises(ConfigError) as failure:
        client.get("/")
    message = str(failure.value)
    assert "No Ferrite pool 'never-configured'" in message
    assert "no ferrite_lifespan ran for this application" in message
    assert "lifespan=ferrite_lifespan(url, ...)" in message


def test_the_dependencies_work_in_websocket_routes(app: FastAPI, direct: redis.Redis) -> None:
    @app.websocket("/ws")
    async def counter(websocket: WebSocket, redis: FerriteClient, scope: RequestScope) -> None:
        await websocket.accept()
        name = await websocket.receive_text()
        scope.deferred.incr(f"greeted:{name}")
        count = int(await redis.get(f"greeted:{name}"))  # sent with the queued INCR
        await websocket.send_text(f"hello {name}, #{count}")
        await websocket.close()

    with TestClient(app) as client, client.websocket_connect("/ws") as websocket:
        websocket.send_text("ann")
        assert websocket.receive_text() == "hello ann, #1"
    assert direct.get("greeted:ann") == b"1"


def test_request_scope_fails_the_request_when_a_deferred_write_failed_by_default(
    app: FastAPI, direct: redis.Redis
) -> None:
    @app.get("/default")
    async def default(scope: RequestScope) -> str:
        scope.deferred.set("text", "not a number")
        scope.deferred.incr("text")  # fails: WRONGTYPE-like error
        return "reported as done"

    @app.get("/lenient")
    async def relaxed(scope: Lenient) -> str:
        scope.deferred.incr("text")
        return "logged only"

    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/default").status_code == 500
        assert client.get("/lenient").json() == "logged only"


@pytest.mark.parametrize(
    "second", [{"raise_on_error": False}, {"on_error": "discard"}], ids=["raise", "on_error"]
)
def test_conflicting_options_of_one_pools_scope_in_a_request_fail(
    app: FastAPI, direct: redis.Redis, second: dict[str, Any]
) -> None:
    other = request_scope(**second)

    @app.get("/conflict")
    async def conflict(first: RequestScope, scope: AsyncRequestScope = other) -> str:
        scope.deferred.set("conflict", "written")
        return "ignored an option"

    @app.get("/agree")
    async def agree(first: RequestScope, scope: Strict) -> bool:
        return first is scope

    with TestClient(app) as client:
        with pytest.raises(ConfigError) as failure:
            client.get("/conflict")
        assert client.get("/agree").json() is True
    message = str(failure.value)
    assert "pool 'default' in one request ask for different options" in message
    assert f"{next(iter(second))}=" in message
    assert direct.get("conflict") is None  # the handler never ran
