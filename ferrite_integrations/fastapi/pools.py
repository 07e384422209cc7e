"""The lifespan's pool arguments (``url``, ``**options``, ``pools=``) turned into validated
specifications, so that a mistake fails when the app is built, not at its first request."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ferrite_integrations import ConfigError, PoolConfig

__all__ = ["DEFAULT_ALIAS", "PoolSpec", "pool_specs"]

DEFAULT_ALIAS = "default"


@dataclass(frozen=True)
class PoolSpec:
    """One pool the lifespan configures: ``manager.configure(alias, url, **options)``."""

    alias: str
    url: str | None
    options: Mapping[str, Any]
    config: PoolConfig


def _spec(alias: str, url: Any, options: Mapping[str, Any], where: str) -> PoolSpec:
    if url is not None and not isinstance(url, str):
        raise ConfigError(
            f"{where}: the URL must be a string such as 'redis://127.0.0.1:6379/0'; got {url!r}.",
            option="url",
        )
    try:
        config = PoolConfig.from_url(url, **options)
    except ConfigError as error:
        if where == "ferrite_lifespan()":
            raise
        raise ConfigError(f"{where}: {error}", option=error.option) from None
    return PoolSpec(alias, url, dict(options), config)


def _named(name: Any, entry: Any) -> PoolSpec:
    if not isinstance(name, str) or not name:
        raise ConfigError(
            f"pools: every pool name must be a non-empty string; got {name!r}.", option="pools"
        )
    where = f"pools[{name!r}]"
    if isinstance(entry, str):
        return _spec(name, entry, {}, where)
    if not isinstance(entry, Mapping):
        raise ConfigError(
            f"{where} must be a URL string or a dict of pool options (with an optional "
            f"'url' key), such as {{'url': 'redis://127.0.0.1:6379/1', 'max_connections': "
            f"10}}; got {type(entry).__name__}.",
            option="pools",
        )
    options = dict(entry)
    return _spec(name, options.pop("url", None), options, where)


def pool_specs(
    url: str | None, options: Mapping[str, Any], pools: Mapping[str, Any] | None
) -> list[PoolSpec]:
    """Validated specifications: the default pool from ``url``/``options`` (always when
    ``pools`` is not given), then each named pool.

    Raises:
        ConfigError: naming the pool and the option that is wrong.
    """
    if pools is None:
        return [_spec(DEFAULT_ALIAS, url, options, "ferrite_lifespan()")]
    if not isinstance(pools, Mapping):
        raise ConfigError(
            "pools must be a dict of {name: URL or dict of pool options}; got "
            f"{type(pools).__name__}.",
            option="pools",
        )
    specs = [_named(name, entry) for name, entry in pools.items()]
    if url is not None or options:
        if DEFAULT_ALIAS in pools:
            raise ConfigError(
                f"The {DEFAULT_ALIAS!r} pool is given twice: by the url/keyword options of "
                f"ferrite_lifespan() and by pools[{DEFAULT_ALIAS!r}]. Give it in one place.",
                option="pools",
            )
        specs.insert(0, _spec(DEFAULT_ALIAS, url, options, "ferrite_lifespan()"))
    if not specs:
        raise ConfigError(
            "pools is empty: give at least one pool, or a URL for the default pool.",
            option="pools",
        )
    return specs
