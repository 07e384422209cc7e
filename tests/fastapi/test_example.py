"""The example app (example_projects/fastapi_app) on a real server."""

from __future__ import annotations

import redis

from example_projects.fastapi_app import create_app
from ferrite_integrations import PoolManager
from ferrite_integrations.testing import FaultProxy
from tests.conftest import wait_until
from tests.fastapi.helpers import TestClient


def test_the_example_app(proxy: FaultProxy, manager: PoolManager, direct: redis.Redis) -> None:
    app = create_app(proxy.url, manager=manager, monitor=False)
    with TestClient(app) as client:
        assert client.put("/items/1", json={"name": "lamp", "price": 12.5}).json() == {
            "item_id": 1,
            "stored": True,
        }
        assert direct.ttl("item:1") > 3500  # written before the response arrived
        client.put("/items/2", json={"name": "desk", "price": 80})
        before = proxy.requests_forwarded
        first = client.get("/items/2").json()
        assert proxy.requests_forwarded - before == 1  # INCR, ZINCRBY and GET together
        assert first == {"item_id": 2, "name": "desk", "price": 80.0, "views": 1}
        assert client.get("/items/2").json()["views"] == 2
        assert client.get("/items/1").json()["views"] == 1
        assert client.get("/items").json() == [
            {"item_id": 2, "views": 2},
            {"item_id": 1, "views": 1},
        ]
        assert client.get("/items/9").status_code == 404
        assert client.put("/items/3", json={"name": "", "price": -1}).status_code == 422
        assert client.get("/health/ferrite").json()["status"] == "up"
        pool = client.get("/pool").json()
        assert pool["url"] == f"redis://127.0.0.1:{proxy.port}/0"
        [loop_pool] = pool["async"]
        assert (loop_pool["max"], loop_pool["idle"] + loop_pool["in_use"]) == (20, 2)
        assert loop_pool["pipelining"]["commands"] >= 3
    paths = set(app.openapi()["paths"])
    assert "/health/ferrite" in paths
    assert not any(path.startswith(("/flask", "/django")) for path in paths)


def test_a_write_that_fails_is_not_reported_as_stored(
    proxy: FaultProxy, manager: PoolManager, direct: redis.Redis
) -> None:
    app = create_app(proxy.url, manager=manager, monitor=False, socket_connect_timeout=0.5)
    with TestClient(app) as client:
        proxy.refuse()  # the server is gone: open connections cut, new ones refused
        response = client.put("/items/5", json={"name": "vase", "price": 30})
        assert response.status_code == 503
        assert "stored" not in response.json()
        assert client.get("/items/5").status_code == 503
        proxy.pass_through()
        wait_until(lambda: client.put("/items/5", json={"name": "vase", "price": 30}).is_success)
    assert direct.exists("item:5")
