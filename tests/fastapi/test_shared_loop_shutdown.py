"""Apps with pools of their own on one event loop: an app that stops while another still
runs on the loop closes the idle connections of the pools it used alone, at once, even
while the loop's monitor is topping them up; the other app's pools and the loop's monitor
keep running."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from ferrite_integrations import PoolManager
from ferrite_integrations.fastapi import ferrite_lifespan
from ferrite_integrations.testing import EmbeddedServer, FaultProxy
from tests.conftest import await_until

FAST = {"health_check_interval": 0.05, "breaker_reset_timeout": 0.05}


def _app(manager: PoolManager, alias: str, url: str, **options: Any) -> FastAPI:
    pools = {alias: {"url": url, **FAST, **options}}
    return FastAPI(lifespan=ferrite_lifespan(pools=pools, manager=manager))


def _two_apps(
    manager: PoolManager, client_name: str, url_a: str, url_b: str
) -> tuple[str, str, FastAPI, FastAPI]:
    """App A (pool "a", min_idle 2 at ``url_a``) and app B (pool "b", min_idle 1 at
    ``url_b``), with the client names their connections carry."""
    mine, theirs = f"{client_name}-a", f"{client_name}-b"
    app_a = _app(manager, "a", url_a, min_idle=2, client_name=mine)
    app_b = _app(manager, "b", url_b, min_idle=1, client_name=theirs)
    return mine, theirs, app_a, app_b


async def _stays_closed(server: EmbeddedServer, name: str) -> None:
    # closed on the client side; the server may answer CLIENT LIST before it reads the FIN
    await await_until(lambda: server.connected_clients(name) == 0)
    await asyncio.sleep(0.3)  # several monitor intervals
    assert server.connected_clients(name) == 0


@pytest.mark.asyncio
async def test_an_app_stopping_on_a_shared_loop_closes_the_pools_it_used_alone(
    server: EmbeddedServer, manager: PoolManager, client_name: str
) -> None:
    mine, theirs, app_a, app_b = _two_apps(manager, client_name, server.url, server.url)
    async with LifespanManager(app_b):
        async with LifespanManager(app_a):
            assert server.connected_clients(mine) == 2
        assert manager.aliases() == ["b"]
        await _stays_closed(server, mine)
        assert server.connected_clients(theirs) == 1
        server.kill_clients()
        await await_until(lambda: server.connected_clients(theirs) == 1)  # the monitor runs on
        async with LifespanManager(app_a):  # A again on the same loop: a fresh pool
            assert server.connected_clients(mine) == 2
        await _stays_closed(server, mine)
    await await_until(lambda: server.connected_clients(theirs) == 0)


@pytest.mark.asyncio
async def test_an_app_stopping_while_the_monitor_tops_its_pool_up(
    server: EmbeddedServer, proxy: FaultProxy, manager: PoolManager, client_name: str
) -> None:
    mine, theirs, app_a, app_b = _two_apps(manager, client_name, proxy.url, server.url)
    async with LifespanManager(app_b):
        async with LifespanManager(app_a):
            proxy.delay(0.03)
            accepted = proxy.connections_accepted
            server.kill_clients()
            # the monitor's probe, then the first connection its top-up opens
            await await_until(lambda: proxy.connections_accepted >= accepted + 2)
        await _stays_closed(server, mine)
        await await_until(lambda: server.connected_clients(theirs) == 1)  # re-warmed: it runs
