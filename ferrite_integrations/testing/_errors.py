"""Errors raised by the embedded test server."""

from __future__ import annotations

from ferrite_integrations.errors import FerriteError

__all__ = ["EmbeddedServerError", "ServerBinaryNotFoundError"]


class EmbeddedServerError(FerriteError):
    """The embedded server could not be set up, started, controlled or stopped."""


class ServerBinaryNotFoundError(EmbeddedServerError):
    """No Redis-protocol server binary was found to run."""
