"""Shared fixtures of the project's own suite (the user-facing fixtures live in the
``ferrite_integrations.testing.plugin`` pytest plugin, active here through its entry point)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest
import redis
import trustme
from cryptography.hazmat.primitives import serialization

from ferrite_integrations import PoolManager
from ferrite_integrations.testing import EmbeddedServer, FaultProxy
from ferrite_integrations.testing.plugin import ServerFactory

pytest_plugins = ["pytester"]


T = TypeVar("T")


@dataclass(frozen=True)
class CertFiles:
    """PEM files signed by a throwaway CA, plus files that are wrong on purpose."""

    ca: Path
    other_ca: Path
    client_cert: Path
    client_key: Path
    client_combined: Path
    encrypted_key: Path
    key_password: str
    not_pem: Path
    directory: Path


@pytest.fixture(scope="session")
def cert_files(tmp_path_factory: pytest.TempPathFactory) -> CertFiles:
    directory = tmp_path_factory.mktemp("certs")
    ca, other = trustme.CA(), trustme.CA()
    client = ca.issue_cert("client@example")
    paths = {
        name: directory / f"{name}.pem"
        for name in ("ca", "other_ca", "client_cert", "client_key", "combined", "enc", "bad")
    }
    ca.cert_pem.write_to_path(str(paths["ca"]))
    other.cert_pem.write_to_path(str(paths["other_ca"]))
    client.cert_chain_pems[0].write_to_path(str(paths["client_cert"]))
    client.private_key_pem.write_to_path(str(paths["client_key"]))
    paths["combined"].write_bytes(
        client.private_key_pem.bytes() + client.cert_chain_pems[0].bytes()
    )
    key = serialization.load_pem_private_key(client.private_key_pem.bytes(), None)
    paths["enc"].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"key-secret"),
        )
    )
    paths["bad"].write_text("this is not a certificate\n")
    return CertFiles(
        ca=paths["ca"],
        other_ca=paths["other_ca"],
        client_cert=paths["client_cert"],
        client_key=paths["client_key"],
        client_combined=paths["combined"],
        encrypted_key=paths["enc"],
        key_password="key-secret",
        not_pem=paths["bad"],
        directory=directory,
    )


@pytest.fixture
def server(ferrite_server_factory: ServerFactory) -> EmbeddedServer:
    """A server of this test's own (faults on it touch no other test)."""
    return ferrite_server_factory()


@pytest.fixture
def proxy(server: EmbeddedServer) -> Iterator[FaultProxy]:
    """A fault-injecting proxy in front of ``server``."""
    with FaultProxy(server.host, server.port) as proxy:
        yield proxy


@pytest.fixture
def direct(server: EmbeddedServer) -> Iterator[redis.Redis]:
    """A plain redis-py client on ``server``, past any proxy: what the server really holds."""
    client = redis.Redis(**server.redis_kwargs())
    yield client
    client.close()


def wait_until(condition: Callable[[], object], timeout: float = 5.0) -> None:
    """Poll ``condition`` every 10 ms until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


async def await_until(condition: Callable[[], object], timeout: float = 5.0) -> None:
    """``wait_until`` for a coroutine: the event loop keeps running while it polls."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


def run_then_close(manager: PoolManager, body: Callable[[], Awaitable[T]]) -> T:
    """Run ``body()`` on a fresh event loop, then close that loop's pools on it."""

    async def main() -> T:
        try:
            return await body()
        finally:
            await manager.aclose()

    return asyncio.run(main())


def proxied_manager(proxy: FaultProxy, client_name: str) -> Iterator[PoolManager]:
    """A manager whose ``default`` alias goes through ``proxy``, with a breaker that stays
    closed through the faults a test injects; closed when the test ends."""
    manager = PoolManager(client_name=client_name)
    manager.configure("default", proxy.url, breaker_threshold=1000, socket_timeout=5.0)
    yield manager
    manager.close()
