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
from ferrite_integrations.manager import PoolManager, default_client_name, get_manager
from ferrite_integrations.pipeline import (
    DiscardedError,
    Handle,
    PipelineError,
    RequestScope,
    current_scope,
)
from ferrite_integrations.pipeline_async import (
    AsyncHandle,
    AsyncRequestScope,
    current_async_scope,
)
from ferrite_integrations.pool import FerritePool
from ferrite_integrations.pool_async import AsyncFerritePool
from ferrite_integrations.values import ValueCodec

__all__ = [
    "AsyncFerritePool",
    "AsyncHandle",
    "AsyncRequestScope",
    "ConfigError",
    "DiscardedError",
    "FerriteError",
    "FerritePool",
    "Handle",
    "PipelineError",
    "PoolConfig",
    "PoolManager",
    "PoolOptions",
    "PoolTimeoutError",
    "RequestScope",
    "ServerUnavailableError",
    "TLSError",
    "ValueCodec",
    "connection_kwargs",
    "current_async_scope",
    "current_scope",
    "default_client_name",
    "default_max_connections",
    "get_manager",
]

__version__ = "0.1.0.dev0"
