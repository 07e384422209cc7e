"""``PoolConfig``: a URL plus options turned into one frozen, validated, hashable value.

A configuration is the key under which pools are shared, so two configurations that mean
the same thing compare equal, and any option that differs makes them unequal. Every bad
input raises ``ConfigError`` naming the option; secrets never appear in messages or
``repr``.
"""

from __future__ import annotations

import os
from dataclasses import MISSING, dataclass, fields
from ssl import SSLContext, TLSVersion, VerifyMode
from typing import Any, TypedDict, Unpack

from ferrite_integrations._options import (
    OPTION_SPECS,
    REDACTED,
    check_value,
    unknown_option_error,
)
from ferrite_integrations._urls import parse_url
from ferrite_integrations.errors import ConfigError
from ferrite_integrations.tls import CertReqs, TLSSettings, shared_context

__all__ = ["PoolConfig", "PoolOptions", "default_max_connections"]

ENV_URL = "FERRITE_URL"


def default_max_connections() -> int:
    """The default pool size: two connections per CPU core available to this process,
    and at least 10 (the low end of the connection-pooling guide's web-application range)."""
    cores: int | None = None
    if hasattr(os, "process_cpu_count"):
        cores = os.process_cpu_count()
    elif hasattr(os, "sched_getaffinity"):
        cores = len(os.sched_getaffinity(0))
    return max(10, 2 * (cores or os.cpu_count() or 1))


class PoolOptions(TypedDict, total=False):
    """Every option, with the types accepted as keyword arguments (see docs/configuration.md)."""

    host: str
    port: int
    unix_socket_path: str | os.PathLike[str] | None
    db: int
    username: str | None
    password: str | None
    ssl: bool
    socket_timeout: float | None
    socket_connect_timeout: float
    socket_keepalive: bool
    health_check_interval: float
    retry_on_timeout: bool
    client_name: str | None
    decode_responses: bool
    encoding: str
    encoding_errors: str
    protocol: int | None
    busy_poll: float
    max_connections: int
    min_idle: int
    acquire_timeout: float
    idle_timeout: float | None
    max_lifetime: float | None
    leak_detection_threshold: float | None
    retries: int
    breaker_threshold: int
    breaker_reset_timeout: float
    monitor: bool
    auto_pipeline: bool
    health_timeout: float
    ssl_ca_certs: str | os.PathLike[str] | None
    ssl_ca_path: str | os.PathLike[str] | None
    ssl_ca_data: str | None
    ssl_certfile: str | os.PathLike[str] | None
    ssl_keyfile: str | os.PathLike[str] | None
    ssl_password: str | None
    ssl_cert_reqs: str | VerifyMode
    ssl_check_hostname: bool
    ssl_min_version: TLSVersion | str | None
    ssl_ciphers: str | None


@dataclass(frozen=True, init=False, repr=False)
class PoolConfig:
    """A validated connection-pool configuration.

    Build one with ``PoolConfig.from_url(url, **options)`` or ``PoolConfig(**options)``
    (the keyword arguments of ``redis.ConnectionPool`` are accepted with redis-py's
    meaning). Defaults follow the Ferrite connection-pooling guide: connect timeout 2 s,
    socket timeout 5 s, acquire timeout 5 s, idle timeout 300 s, health checks every 30 s,
    ``max_connections`` from ``default_max_connections()``.

    Raises:
        ConfigError: for an unknown option, a wrong type, an impossible value, or TLS files
            that are missing or unusable.
    """

    host: str = "localhost"
    port: int = 6379
    unix_socket_path: str | None = None
    db: int = 0
    username: str | None = None
    password: str | None = None
    ssl: bool = False
    socket_timeout: float | None = 5.0
    socket_connect_timeout: float = 2.0
    socket_keepalive: bool = True
    health_check_interval: float = 30.0
    retry_on_timeout: bool = False
    client_name: str | None = None
    decode_responses: bool = False
    encoding: str = "utf-8"
    encoding_errors: str = "strict"
    protocol: int | None = None
    busy_poll: float = 0.0
    max_connections: int = 0  # replaced by default_max_connections() when not given
    min_idle: int = 0
    acquire_timeout: float = 5.0
    idle_timeout: float | None = 300.0
    max_lifetime: float | None = 1800.0
    leak_detection_threshold: float | None = None
    retries: int = 2
    breaker_threshold: int = 5
    breaker_reset_timeout: float = 2.0
    monitor: bool = True
    auto_pipeline: bool = False
    health_timeout: float = 1.0
    ssl_ca_certs: str | None = None
    ssl_ca_path: str | None = None
    ssl_ca_data: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_password: str | None = None
    ssl_cert_reqs: CertReqs = "required"
    ssl_check_hostname: bool = True
    ssl_min_version: TLSVersion | None = None
    ssl_ciphers: str | None = None

    def __init__(self, **options: Unpack[PoolOptions]) -> None:
        for name, value in _resolve(dict(options)).items():
            object.__setattr__(self, name, value)
        self._remember_hash()
        self.ssl_context()  # reads and checks the TLS files now, not on the first connect

    def _remember_hash(self) -> None:
        # Configurations key the pool registries: hash the ~40 fields once, not per lookup.
        object.__setattr__(self, "_hash", hash(tuple(getattr(self, f.name) for f in fields(self))))

    def __hash__(self) -> int:
        return self._hash  # type: ignore[no-any-return, attr-defined]

    def __getstate__(self) -> dict[str, Any]:
        # String hashes differ between processes: never carry the cached one along.
        return {item.name: getattr(self, item.name) for item in fields(self)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            object.__setattr__(self, name, value)
        self._remember_hash()

    @classmethod
    def from_url(cls, url: str | None = None, **options: Unpack[PoolOptions]) -> PoolConfig:
        """Build a configuration from a connection URL and keyword options.

        Args:
            url: ``redis://[[user]:password@]host[:port][/db][?option=value...]``,
                ``rediss://...`` for TLS, or ``unix:///path/to/socket[?db=N]``. When
                ``None``, the ``FERRITE_URL`` environment variable is used if set,
                otherwise the keyword options alone (default ``localhost:6379``).
            **options: any option of ``PoolOptions``. An option given both in the URL and
                as a keyword must have the same value in both.

        Raises:
            ConfigError: naming what is wrong and what is allowed.
        """
        source = "URL"
        if url is None and os.environ.get(ENV_URL) is not None:
            url, source = os.environ[ENV_URL], f"{ENV_URL} environment variable"
        if url is None:
            return cls(**options)
        from_url = parse_url(url, source)
        given = _check_names_and_values(dict(options))
        for name in from_url.keys() & given.keys():
            if from_url[name] != given[name]:
                spec = OPTION_SPECS[name]
                shown = (
                    f"{source} says {from_url[name]!r}, the keyword says {given[name]!r}"
                    if not spec.secret
                    else "the two values differ"
                )
                raise ConfigError(
                    f"Option {name!r} is given twice with different values ({shown}). "
                    "Give it in one place.",
                    option=name,
                )
        merged: dict[str, Any] = {**from_url, **given}
        return cls(**merged)

    @property
    def tls(self) -> TLSSettings | None:
        """The TLS settings of a ``rediss://`` configuration, else ``None``."""
        if not self.ssl:
            return None
        return TLSSettings(
            ca_certs=self.ssl_ca_certs,
            ca_path=self.ssl_ca_path,
            ca_data=self.ssl_ca_data,
            certfile=self.ssl_certfile,
            keyfile=self.ssl_keyfile,
            password=self.ssl_password,
            cert_reqs=self.ssl_cert_reqs,
            check_hostname=self.ssl_check_hostname,
            min_version=self.ssl_min_version,
            ciphers=self.ssl_ciphers,
        )

    def ssl_context(self) -> SSLContext | None:
        """The shared ``SSLContext`` of this configuration (built once), or ``None``."""
        settings = self.tls
        return shared_context(settings) if settings is not None else None

    @property
    def address(self) -> str:
        """Where the server is, without credentials: ``host:port`` or ``unix:/path``."""
        if self.unix_socket_path is not None:
            return f"unix:{self.unix_socket_path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def redacted_url(self) -> str:
        """The canonical URL of this configuration with the password shown as ``***``."""
        userinfo = ""
        if self.username or self.password:
            secret = f":{REDACTED}" if self.password else ""
            userinfo = f"{self.username or ''}{secret}@"
        if self.unix_socket_path is not None:
            return f"unix://{userinfo}{self.unix_socket_path}?db={self.db}"
        scheme = "rediss" if self.ssl else "redis"
        return f"{scheme}://{userinfo}{self.address}/{self.db}"

    def non_default_options(self) -> dict[str, Any]:
        """The options that differ from their defaults, secrets included (handle with care)."""
        changed: dict[str, Any] = {}
        for item in fields(self):
            value = getattr(self, item.name)
            if OPTION_SPECS[item.name].group != "location" and value != _default(item.name):
                changed[item.name] = value
        return changed

    def __repr__(self) -> str:
        shown = [repr(self.redacted_url)]
        for name, value in self.non_default_options().items():
            display = REDACTED if OPTION_SPECS[name].secret else repr(value)
            shown.append(f"{name}={display}")
        return f"PoolConfig({', '.join(shown)})"


_DEFAULTS: dict[str, object] = {
    item.name: item.default for item in fields(PoolConfig) if item.default is not MISSING
}


def _default(name: str) -> object:
    if name == "max_connections":
        return default_max_connections()
    return _DEFAULTS[name]


def _check_names_and_values(options: dict[str, object]) -> dict[str, object]:
    for name in options:
        if name not in OPTION_SPECS:
            raise unknown_option_error(name)
    return {name: check_value(name, value) for name, value in options.items()}


def _resolve(options: dict[str, object]) -> dict[str, object]:
    given = _check_names_and_values(options)
    values = {name: given[name] if name in given else _default(name) for name in OPTION_SPECS}
    _check_location(values, given)
    _check_pool(values, given)
    _check_tls(values, given)
    return values


def _check_location(values: dict[str, object], given: dict[str, object]) -> None:
    if values["unix_socket_path"] is not None:
        clashing = [name for name in ("host", "port", "ssl") if name in given]
        if clashing:
            raise ConfigError(
                f"Option {clashing[0]!r} has no meaning with 'unix_socket_path' "
                f"({values['unix_socket_path']!r}): a unix socket has no host, port or TLS. "
                "Give either the socket path or a TCP address.",
                option=clashing[0],
            )


def _check_pool(values: dict[str, object], given: dict[str, object]) -> None:
    min_idle, max_connections = values["min_idle"], values["max_connections"]
    if "max_connections" not in given and isinstance(min_idle, int):
        # The machine-dependent default must not make a config valid on one host and
        # invalid on another: without an explicit size, the pool grows to fit min_idle.
        values["max_connections"] = max_connections = max(default_max_connections(), min_idle)
    if (
        isinstance(min_idle, int)
        and isinstance(max_connections, int)
        and min_idle > max_connections
    ):
        raise ConfigError(
            f"Option 'min_idle' ({min_idle}) is larger than 'max_connections' "
            f"({max_connections}); a pool cannot keep more idle connections than it may "
            "open. Lower min_idle or raise max_connections.",
            option="min_idle",
        )


def _check_tls(values: dict[str, object], given: dict[str, object]) -> None:
    tls_given = sorted(
        name for name in given if OPTION_SPECS[name].group == "tls" and given[name] is not None
    )
    if not values["ssl"]:
        if tls_given:
            where = "a unix socket" if values["unix_socket_path"] else "a plaintext redis:// URL"
            raise ConfigError(
                f"TLS option {', '.join(repr(n) for n in tls_given)} is set, but the "
                f"configuration is for {where}. Use a rediss:// URL (or ssl=True) to "
                "connect with TLS, or remove the TLS options.",
                option=tls_given[0],
            )
        return
    if values["ssl_password"] is not None and values["ssl_certfile"] is None:
        raise ConfigError(
            "Option 'ssl_password' is set but there is no client key to decrypt: give "
            "'ssl_certfile' and 'ssl_keyfile' too, or remove ssl_password.",
            option="ssl_password",
        )
    if values["ssl_cert_reqs"] == "none":
        if given.get("ssl_check_hostname") is True:
            raise ConfigError(
                "Option 'ssl_check_hostname' is True but 'ssl_cert_reqs' is 'none': a host "
                "name cannot be checked without checking the certificate. Use "
                "ssl_cert_reqs='required', or drop ssl_check_hostname.",
                option="ssl_check_hostname",
            )
        values["ssl_check_hostname"] = False
