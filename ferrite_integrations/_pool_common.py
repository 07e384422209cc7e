"""What the sync and the async pool share beyond their bookkeeping: how connections are
made (with the breaker and the retry policy attached), and how the pool describes itself."""

from __future__ import annotations

from typing import Any

from ferrite_integrations._pool_state import PoolState, report_leak
from ferrite_integrations.breaker import CircuitBreaker, breaker_for_config
from ferrite_integrations.config import PoolConfig
from ferrite_integrations.connection import connection_kwargs
from ferrite_integrations.retry import AsyncCommandRetry, CommandRetry

__all__ = ["PoolCommon"]


class PoolCommon:
    """Mixed into ``FerritePool`` and ``AsyncFerritePool`` ahead of redis-py's pool class."""

    config: PoolConfig
    name: str
    breaker: CircuitBreaker
    connection_class: Any
    connection_kwargs: dict[str, Any]
    _state: PoolState
    _retry: CommandRetry | AsyncCommandRetry
    _probe_retry: Any

    def _prepare(
        self,
        config: PoolConfig,
        name: str,
        client_name: str | None,
        breaker: CircuitBreaker | None,
        *,
        use_asyncio: bool,
    ) -> dict[str, Any]:
        """Set the pool's identity and policies; return redis-py's pool arguments."""
        self.config = config
        self.name = name
        self.breaker = breaker or breaker_for_config(config)
        retry_class = AsyncCommandRetry if use_asyncio else CommandRetry
        self._retry = retry_class(config.retries, retry_on_timeout=config.retry_on_timeout)
        kwargs = connection_kwargs(config, use_asyncio=use_asyncio)
        if kwargs["client_name"] is None:  # the manager's name: set where the ACL allows
            kwargs["default_client_name"] = client_name
        return {"max_connections": config.max_connections, **kwargs}

    def _new(self) -> Any:
        """A new, unconnected connection of this pool."""
        connection = self.connection_class(**self.connection_kwargs)
        connection.ferrite_breaker = self.breaker
        connection.retry = self._retry.bind(connection)
        return connection

    def _new_probe(self, timeout: float) -> Any:
        """A short-lived connection outside the pool's accounting, for a bounded health
        ping: no retries, ``timeout`` for the connect and the reply."""
        kwargs = dict(self.connection_kwargs)
        kwargs["socket_timeout"] = timeout
        kwargs["socket_connect_timeout"] = min(timeout, self.config.socket_connect_timeout)
        connection = self.connection_class(**kwargs)
        connection.ferrite_breaker = self.breaker
        connection.retry = self._retry.__class__(0)
        return connection

    def make_connection(self) -> Any:
        """A new connection object outside the pool's accounting (redis-py's hook)."""
        return self._new()

    def _report_leaks(self, overdue: list[Any], now: float) -> None:
        threshold = self.config.leak_detection_threshold
        if threshold is not None:
            for connection in overdue:
                report_leak(self.name, connection, now, threshold)

    def __repr__(self) -> str:
        in_use, idle, waiting, maximum = self._state.counts()
        return (
            f"<{type(self).__name__} {self.name!r} {self.config.redacted_url} "
            f"in use {in_use} / idle {idle} / waiting {waiting} / max {maximum}>"
        )
