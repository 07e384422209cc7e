"""``PoolManager.forget``: an alias whose owner is gone leaves the manager, and its pool
with it once no other alias shares the configuration (the monitor stops reopening it)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from ferrite_integrations import ConfigError, PoolManager
from ferrite_integrations.testing import EmbeddedServer
from tests.conftest import wait_until

NAME = "forget-test"


@pytest.fixture
def manager() -> Iterator[PoolManager]:
    manager = PoolManager(client_name=NAME)
    yield manager
    manager.close()


def test_forget_retires_the_pool_and_the_monitor_no_longer_reopens_it(
    server: EmbeddedServer, manager: PoolManager
) -> None:
    manager.configure("gone", server.url, min_idle=2, health_check_interval=0.02)
    manager.start_monitor()
    wait_until(lambda: server.connected_clients(NAME) == 2)
    assert manager.forget("gone") is True
    assert manager.aliases() == []
    wait_until(lambda: server.connected_clients(NAME) == 0)
    time.sleep(0.15)  # several monitor intervals
    assert server.connected_clients(NAME) == 0
    with pytest.raises(ConfigError, match="No pool alias 'gone'"):
        manager.config("gone")


def test_a_pool_shared_with_another_alias_stays(
    server: EmbeddedServer, manager: PoolManager
) -> None:
    manager.configure("one", server.url, min_idle=1)
    manager.configure("two", server.url, min_idle=1)
    manager.warm()
    pool = manager.pool("two")
    assert manager.forget("one") is False
    assert manager.aliases() == ["two"]
    assert manager.pool("two") is pool
    assert server.connected_clients(NAME) == 1
    assert manager.client("two").ping()


def test_forget_an_unknown_alias_is_a_no_op_and_rebinding_gives_a_fresh_pool(
    server: EmbeddedServer, manager: PoolManager
) -> None:
    assert manager.forget("never") is False
    manager.configure("again", server.url)
    old = manager.pool("again")
    client = manager.client("again")
    manager.forget("again")
    manager.configure("again", server.url)
    assert manager.pool("again") is not old
    assert client.ping()  # a client obtained earlier keeps working
    assert manager.client("again").ping()
