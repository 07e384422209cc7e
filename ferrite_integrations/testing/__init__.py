"""A real Redis-protocol server for tests and demos, and the ``ferrite`` pytest plugin.

``EmbeddedServer`` runs ferrite, redis-server or valkey-server (found by
:func:`find_server_binary`) on a free loopback port, optionally with a password, an ACL
user, TLS, mutual TLS or a unix socket, and offers the faults tests need: stop, restart,
pause, killing client connections. ``FaultProxy`` sits in front of a server to inject the
faults a real server cannot make on request (delays, hangs, refused connects, lost replies).

The names below are imported on first use, so that importing this package (which the
pytest plugin does in every test run) stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ferrite_integrations.testing._binary import find_server_binary, supports_tls
    from ferrite_integrations.testing._certs import TLSFiles
    from ferrite_integrations.testing._errors import (
        EmbeddedServerError,
        ServerBinaryNotFoundError,
    )
    from ferrite_integrations.testing.proxy import FaultProxy, FaultProxyError
    from ferrite_integrations.testing.server import EmbeddedServer

__all__ = [
    "EmbeddedServer",
    "EmbeddedServerError",
    "FaultProxy",
    "FaultProxyError",
    "ServerBinaryNotFoundError",
    "TLSFiles",
    "find_server_binary",
    "supports_tls",
]

_HOMES = {
    "EmbeddedServer": "ferrite_integrations.testing.server",
    "EmbeddedServerError": "ferrite_integrations.testing._errors",
    "FaultProxy": "ferrite_integrations.testing.proxy",
    "FaultProxyError": "ferrite_integrations.testing.proxy",
    "ServerBinaryNotFoundError": "ferrite_integrations.testing._errors",
    "TLSFiles": "ferrite_integrations.testing._certs",
    "find_server_binary": "ferrite_integrations.testing._binary",
    "supports_tls": "ferrite_integrations.testing._binary",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
