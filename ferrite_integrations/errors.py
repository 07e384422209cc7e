"""The exception tree every part of ferrite-integrations raises.

Connection-level errors subclass redis-py's ``ConnectionError`` so that existing
``except redis.ConnectionError`` code keeps working unchanged.
"""

from __future__ import annotations

import redis.exceptions

__all__ = [
    "ConfigError",
    "FerriteError",
    "PoolTimeoutError",
    "ServerUnavailableError",
    "TLSError",
]


class FerriteError(Exception):
    """Base class of every error raised by ferrite-integrations."""


class ConfigError(FerriteError, ValueError):
    """A configuration value is wrong: unknown, of the wrong type, impossible or malformed.

    Attributes:
        option: the option (or ``"url"``) the error is about, or ``None`` when the problem
            spans several options.
    """

    def __init__(self, message: str, *, option: str | None = None) -> None:
        super().__init__(message)
        self.option = option


class PoolTimeoutError(FerriteError, redis.exceptions.ConnectionError):
    """No connection became free in the pool within ``acquire_timeout``."""


class ServerUnavailableError(FerriteError, redis.exceptions.ConnectionError):
    """The server is known to be down; the call failed without trying to connect."""


class TLSError(FerriteError, redis.exceptions.ConnectionError):
    """A TLS connection could not be set up; the message names the cause and the fix.

    Attributes:
        permanent: ``True`` when retrying cannot help (a certificate the client rejects,
            a server that does not speak TLS on this port): the configuration must change.
    """

    def __init__(self, message: str, *, permanent: bool = True) -> None:
        super().__init__(message)
        self.permanent = permanent
