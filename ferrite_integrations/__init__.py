"""ferrite-integrations: one shared, production-grade connection-pool manager for Ferrite
(and any Redis-protocol server) in Django, Flask and FastAPI applications.

This module is the public core API; it imports no web framework.
"""

from ferrite_integrations.config import PoolConfig, PoolOptions, default_max_connections
from ferrite_integrations.connection import connection_kwargs
from ferrite_integrations.errors import (
    ConfigError,
    FerriteError,
    PoolTimeoutError,
    ServerUnavailableError,
    TLSError,
)

__all__ = [
    "ConfigError",
    "FerriteError",
    "PoolConfig",
    "PoolOptions",
    "PoolTimeoutError",
    "ServerUnavailableError",
    "TLSError",
    "connection_kwargs",
    "default_max_connections",
]

__version__ = "0.1.0.dev0"
