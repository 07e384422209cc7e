"""The ``ferrite`` pytest plugin: fixtures that run a real server for your tests.

Fixtures:
    ferrite_server: a session-wide :class:`EmbeddedServer` (one per xdist worker).
    ferrite_url: its URL.
    ferrite_client: a ``redis.Redis`` on ``ferrite_server`` with an empty database.
    ferrite_tls_server: a session-wide TLS server; skipped when the server binary lacks
        TLS, unless TLS is required (``--ferrite-require-tls``, the ``ferrite_require_tls``
        ini option, or ``CI=true`` / ``CI=1`` in the environment), where it fails instead.
    ferrite_server_factory: starts servers with any ``EmbeddedServer`` options and closes
        them after the test.

Options: ``--ferrite-server-bin`` (overrides ``FERRITE_SERVER_BIN``), ``--ferrite-require-tls``.

Importing this module starts nothing and imports no server code; fixtures do that.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    import redis

    from ferrite_integrations.testing.server import EmbeddedServer

__all__ = [
    "ServerFactory",
    "ferrite_client",
    "ferrite_server",
    "ferrite_server_factory",
    "ferrite_tls_server",
    "ferrite_url",
    "pytest_addoption",
    "pytest_configure",
]

ServerFactory = Callable[..., "EmbeddedServer"]
"""``ferrite_server_factory``: takes ``EmbeddedServer`` keyword arguments, returns it started."""

_TRUE_VALUES = frozenset({"1", "true", "yes"})


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register the plugin's command-line and ini options."""
    group = parser.getgroup("ferrite", "ferrite-integrations embedded server")
    group.addoption(
        "--ferrite-server-bin",
        dest="ferrite_server_bin",
        default=None,
        metavar="PATH",
        help="server binary for the ferrite fixtures (overrides FERRITE_SERVER_BIN)",
    )
    group.addoption(
        "--ferrite-require-tls",
        dest="ferrite_require_tls",
        action="store_true",
        default=False,
        help="fail, instead of skip, TLS fixtures when the server binary lacks TLS",
    )
    parser.addini(
        "ferrite_require_tls",
        type="bool",
        default=False,
        help="fail, instead of skip, TLS fixtures when the server binary lacks TLS",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Reject a ``--ferrite-server-bin`` that names no executable before any test runs."""
    binary = _binary_option(config)
    if binary is not None and shutil.which(binary) is None:
        raise pytest.UsageError(
            f"--ferrite-server-bin={binary!r} is not an executable file; point it at a "
            "ferrite, redis-server or valkey-server binary"
        )


def _binary_option(config: pytest.Config) -> str | None:
    value: str | None = config.getoption("ferrite_server_bin")
    return value


def _tls_required(config: pytest.Config) -> bool:
    if config.getoption("ferrite_require_tls") or config.getini("ferrite_require_tls"):
        return True
    return os.environ.get("CI", "").strip().lower() in _TRUE_VALUES


def _tls_unavailable_reason(binary: str | None) -> str | None:
    from ferrite_integrations.testing._binary import NO_TLS_HINT, find_server_binary, supports_tls

    resolved = find_server_binary(binary)
    if not supports_tls(resolved):
        return f"{resolved} was built without TLS support; {NO_TLS_HINT}"
    if importlib.util.find_spec("trustme") is None:
        return "TLS fixtures need trustme: pip install ferrite-integrations[test]"
    return None


def _skip_or_fail_without_tls(config: pytest.Config, binary: str | None) -> None:
    reason = _tls_unavailable_reason(binary)
    if reason is None:
        return
    if _tls_required(config):
        pytest.fail(f"TLS is required here but unavailable: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def ferrite_server(pytestconfig: pytest.Config) -> Iterator[EmbeddedServer]:
    """A plain embedded server, started once per session and closed at its end."""
    from ferrite_integrations.testing.server import EmbeddedServer

    with EmbeddedServer(binary=_binary_option(pytestconfig)) as server:
        yield server


@pytest.fixture(scope="session")
def ferrite_url(ferrite_server: EmbeddedServer) -> str:
    """The URL of ``ferrite_server``."""
    return ferrite_server.url


@pytest.fixture(scope="session")
def ferrite_tls_server(pytestconfig: pytest.Config) -> Iterator[EmbeddedServer]:
    """A TLS embedded server for the session; see the module docs for skip versus fail."""
    from ferrite_integrations.testing.server import EmbeddedServer

    binary = _binary_option(pytestconfig)
    _skip_or_fail_without_tls(pytestconfig, binary)
    with EmbeddedServer(tls=True, binary=binary) as server:
        yield server


@pytest.fixture
def ferrite_client(ferrite_server: EmbeddedServer) -> Iterator[redis.Redis]:
    """A ``redis.Redis`` on ``ferrite_server`` whose database is empty when the test starts."""
    import redis

    client = redis.Redis(**ferrite_server.redis_kwargs())
    try:
        client.flushdb()
        yield client
    finally:
        client.close()


@pytest.fixture
def ferrite_server_factory(pytestconfig: pytest.Config) -> Iterator[ServerFactory]:
    """A callable that starts an ``EmbeddedServer`` with the given keyword arguments.

    Every server it made is closed when the test ends. ``binary`` defaults to
    ``--ferrite-server-bin`` when that option is given. Asking for ``tls`` or
    ``mutual_tls`` from a binary without TLS skips the test, or fails it where TLS is
    required, exactly like ``ferrite_tls_server``.
    """
    from ferrite_integrations.testing.server import EmbeddedServer

    default_binary = _binary_option(pytestconfig)
    with contextlib.ExitStack() as servers:

        def factory(**kwargs: Any) -> EmbeddedServer:
            kwargs.setdefault("binary", default_binary)
            if kwargs.get("tls") or kwargs.get("mutual_tls"):
                _skip_or_fail_without_tls(pytestconfig, kwargs["binary"])
            return servers.enter_context(EmbeddedServer(**kwargs))

        yield factory
