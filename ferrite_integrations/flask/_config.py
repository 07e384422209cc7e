"""Reading ``app.config``: ``<PREFIX>_URL``, ``<PREFIX>_<OPTION>`` for every option of the
shared vocabulary, ``<PREFIX>_POOLS`` and ``<PREFIX>_HEALTH_URL``, turned into validated
``PoolConfig`` values. Every mistake is a ``ConfigError`` naming the config key."""

from __future__ import annotations

import difflib
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ferrite_integrations import ConfigError, PoolConfig, PoolOptions

__all__ = ["AppSettings", "check_flag", "coerce_text", "has_settings", "read_settings"]

DEFAULT_POOL = "default"
OPTION_NAMES: tuple[str, ...] = tuple(PoolOptions.__annotations__)
_OWN_SUFFIXES = ("URL", "POOLS", "HEALTH_URL")
_KNOWN_SUFFIXES = frozenset(_OWN_SUFFIXES) | {name.upper() for name in OPTION_NAMES}
# Options that take text: a string value is what they expect, so no hint about text.
_TEXT_OPTIONS = frozenset(
    name
    for name, hint in typing.get_type_hints(PoolOptions).items()
    if hint is str or str in typing.get_args(hint)
)
# Names and secrets that from_prefixed_env() may have parsed as numbers
# (FLASK_FERRITE_PASSWORD=12345): the text the user wrote is meant.
_NAMES_AND_SECRETS = ("username", "password", "client_name", "ssl_password")
_TEXT_HINT = (
    " Values read from the environment are text: load them with "
    "app.config.from_prefixed_env(), which parses numbers and booleans, or convert them."
)


@dataclass(frozen=True)
class AppSettings:
    """What one extension reads from one app's configuration.

    Attributes:
        pools: pool name -> configuration; ``"default"`` is always present.
        health_url: the URL rule of the health endpoint, or ``None`` (off).
    """

    pools: dict[str, PoolConfig]
    health_url: str | None


def read_settings(config: Mapping[str, Any], prefix: str) -> AppSettings:
    """Read and validate the keys of ``prefix`` in ``config`` (an ``app.config``).

    Raises:
        ConfigError: naming the config key, the problem and how to fix it.
    """
    _refuse_typos(config, prefix)
    options = coerce_text(
        {
            name: config[key]
            for name in OPTION_NAMES
            if (key := f"{prefix}_{name.upper()}") in config
        }
    )
    url = config.get(f"{prefix}_URL")
    if url is not None and not isinstance(url, str):
        raise ConfigError(
            f"app.config[{prefix + '_URL'!r}] must be a URL string such as "
            f"'redis://127.0.0.1:6379/0'; got {type(url).__name__}.",
            option=f"{prefix}_URL",
        )
    pools = {DEFAULT_POOL: _build(url, options, lambda name: _key(prefix, name))}
    pools.update(_named_pools(config.get(f"{prefix}_POOLS"), prefix))
    return AppSettings(pools=pools, health_url=_health_url(config, prefix))


def has_settings(config: Mapping[str, Any], prefix: str) -> bool:
    """Whether ``config`` has a pool key of ``prefix`` (``<PREFIX>_URL``, ``_POOLS`` or an
    option)."""
    keys = {f"{prefix}_{suffix}" for suffix in _KNOWN_SUFFIXES - {"HEALTH_URL"}}
    return any(key in config for key in keys)


def coerce_text(options: dict[str, Any]) -> dict[str, Any]:
    """``options`` with a number given for a name or a secret turned into its text."""
    return {
        name: str(value)
        if name in _NAMES_AND_SECRETS and isinstance(value, int) and not isinstance(value, bool)
        else value
        for name, value in options.items()
    }


def check_flag(option: str, value: object, meaning: str) -> bool:
    """An on/off option outside the pool vocabulary (``CACHE_OPTIONS['ignore_errors']``):
    True or False only, as every bool pool option (``bool()`` would take ``"false"`` or
    ``5`` for True)."""
    if isinstance(value, bool):
        return value
    hint = _TEXT_HINT if isinstance(value, str) else ""
    raise ConfigError(
        f"Option {option!r} must be True or False ({meaning}); got {value!r:.80} "
        f"({type(value).__name__}). Use True or False itself, not text or a number.{hint}",
        option=option,
    )


def _key(prefix: str, option: str | None) -> str:
    if option is None or option == "url" or option not in OPTION_NAMES:
        return f"{prefix}_URL"
    return f"{prefix}_{option.upper()}"


def _build(url: str | None, options: dict[str, Any], key_of: Any) -> PoolConfig:
    try:
        return PoolConfig.from_url(url, **options)
    except ConfigError as error:
        # An option not given as a key of its own came from the URL (its query string).
        given = error.option is not None and error.option in options
        key = key_of(error.option if given else None)
        value = options.get(error.option or "") if given else None
        hint = _TEXT_HINT if isinstance(value, str) and error.option not in _TEXT_OPTIONS else ""
        raise ConfigError(f"{key}: {error}{hint}", option=key) from None


def _named_pools(pools: Any, prefix: str) -> dict[str, PoolConfig]:
    key = f"{prefix}_POOLS"
    if pools is None:
        return {}
    if not isinstance(pools, Mapping):
        raise ConfigError(
            f"app.config[{key!r}] must be a dict of pool name -> URL string or dict of "
            f"options (with 'url'); got {type(pools).__name__}.",
            option=key,
        )
    built = {}
    for name, entry in pools.items():
        if not isinstance(name, str) or not name or name == DEFAULT_POOL or "://" in name:
            raise ConfigError(
                f"app.config[{key!r}]: pool names must be non-empty strings other than "
                f"'default' (that one is {prefix}_URL), not URLs; got {_shown(name)}. The "
                "form is {name: URL or dict of options}.",
                option=key,
            )
        built[name] = _named_pool(name, entry, key)
    return built


def _named_pool(name: str, entry: Any, key: str) -> PoolConfig:
    where = f"{key}[{name!r}]"
    if isinstance(entry, str):
        entry = {"url": entry}
    if not isinstance(entry, Mapping):
        raise ConfigError(
            f"{where} must be a URL string or a dict of options with 'url'; "
            f"got {type(entry).__name__}.",
            option=key,
        )
    options = coerce_text({str(option).lower(): value for option, value in entry.items()})
    url = options.pop("url", None)
    if url is None or not isinstance(url, str):
        raise ConfigError(
            f"{where} needs a 'url' string such as 'redis://127.0.0.1:6379/1'; got {url!r}.",
            option=key,
        )
    return _build(url, options, lambda option: f"{where}[{option or 'url'!r}]")


def _shown(name: object) -> str:
    # A URL where a name belongs may hold a password: never echo it.
    return "a URL" if isinstance(name, str) and "://" in name else repr(name)


def _health_url(config: Mapping[str, Any], prefix: str) -> str | None:
    key = f"{prefix}_HEALTH_URL"
    value = config.get(key)
    if value in (None, "", False):
        return None
    if not isinstance(value, str) or not value.startswith("/"):
        raise ConfigError(
            f"app.config[{key!r}] must be a URL path starting with '/', such as "
            f"'/health/ferrite', or None to serve no health endpoint; got {value!r}.",
            option=key,
        )
    return value


def _refuse_typos(config: Mapping[str, Any], prefix: str) -> None:
    """A key of our prefix that is not ours but close to one of ours is a typo. Keys that
    end in another of our names (``FERRITE_CACHE_URL``) may belong to an extension with a
    longer prefix, and keys far from every name belong to someone else: both are left."""
    start = f"{prefix}_"
    for key in config:
        if not isinstance(key, str) or not key.startswith(start):
            continue
        suffix = key[len(start) :]
        if suffix in _KNOWN_SUFFIXES or any(suffix.endswith(f"_{k}") for k in _KNOWN_SUFFIXES):
            continue
        close = difflib.get_close_matches(suffix, sorted(_KNOWN_SUFFIXES), n=1, cutoff=0.8)
        if close:
            raise ConfigError(
                f"Unknown config key {key!r}. Did you mean {start + close[0]!r}? The keys "
                f"are {prefix}_URL, {prefix}_POOLS, {prefix}_HEALTH_URL and {prefix}_<OPTION> "
                "for the options in docs/configuration.md.",
                option=key,
            )
