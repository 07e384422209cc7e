"""What the lifespan does at startup, pool by pool: check that the server answers (one
bounded PING), then open ``min_idle`` connections. Strict startup refuses to start when a
server cannot be reached; lenient startup logs it and lets the monitor bring the pool back."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import redis.exceptions

from ferrite_integrations import PoolManager, ServerUnavailableError
from ferrite_integrations.fastapi.pools import PoolSpec

__all__ = ["prepare_pools"]

logger = logging.getLogger("ferrite_integrations.fastapi")

_FAILURES = (redis.exceptions.RedisError, OSError)


async def _problem(manager: PoolManager, alias: str) -> str | None:
    """Why the pool of ``alias`` cannot serve now, or ``None`` when it can."""
    report = (await manager.ahealth(alias))["pools"][alias]
    if report["status"] == "down":
        return str(report["last_error"] or "no reply to PING")
    try:
        await manager.awarm(alias)
    except _FAILURES as error:
        return str(error) or type(error).__name__
    return None


async def prepare_pools(manager: PoolManager, specs: Sequence[PoolSpec], *, strict: bool) -> None:
    """Check and pre-warm every pool of ``specs`` on the running event loop.

    Raises:
        ServerUnavailableError: with ``strict``, when any server cannot be reached; the
            message names each pool, its server and its URL (password redacted).
    """
    failures = []
    for spec in specs:
        problem = await _problem(manager, spec.alias)
        if problem is None:
            continue
        where = f"pool {spec.alias!r} cannot reach its server at {spec.config.address} " + (
            f"({spec.config.redacted_url}): {problem.rstrip('. ')}"
        )
        failures.append(where)
        if not strict:
            logger.warning(
                "Ferrite %s. Starting degraded (strict=False): its commands fail fast until "
                "the server answers; the monitor reconnects it.",
                where,
            )
    if failures and strict:
        raise ServerUnavailableError(
            f"Ferrite startup failed: {'; '.join(failures)}. Start the server or fix the URL; "
            "pass strict=False to ferrite_lifespan() to start anyway in degraded mode."
        )
