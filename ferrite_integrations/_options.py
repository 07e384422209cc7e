"""The option vocabulary: one table of every option, and the checks that turn raw values
(keyword arguments or URL query text) into validated, normalised values.

Normalising is what makes two configurations that mean the same thing compare equal:
``5`` and ``5.0`` become ``5.0``, ``"REQUIRED"`` becomes ``"required"``, relative TLS file
paths become absolute.
"""

from __future__ import annotations

import codecs
import difflib
import math
import os
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ferrite_integrations.errors import ConfigError
from ferrite_integrations.tls import CERT_REQS_CHOICES, parse_tls_version

Kind = Literal["int", "float", "bool", "str", "path", "choice", "tls_version"]
Group = Literal["location", "connection", "pool", "resilience", "tls"]

REDACTED = "***"


@dataclass(frozen=True)
class OptionSpec:
    """How one option is checked.

    ``minimum`` is inclusive unless ``positive`` (then the value must be > minimum);
    ``nullable`` options accept ``None`` with the meaning given in ``none_means``.
    """

    name: str
    kind: Kind
    group: Group
    help: str
    minimum: float | None = None
    maximum: float | None = None
    positive: bool = False
    nullable: bool = False
    none_means: str = ""
    choices: tuple[Any, ...] = ()
    secret: bool = False
    in_query: bool = True


def _spec(name: str, kind: Kind, group: Group, help: str, **extra: Any) -> OptionSpec:
    return OptionSpec(name=name, kind=kind, group=group, help=help, **extra)


_SECONDS = "seconds"
OPTION_SPECS: dict[str, OptionSpec] = {
    spec.name: spec
    for spec in (
        _spec("host", "str", "location", "server host name or IP", in_query=False),
        _spec(
            "port", "int", "location", "server TCP port", minimum=1, maximum=65535, in_query=False
        ),
        _spec(
            "unix_socket_path",
            "path",
            "location",
            "path of the server's unix socket",
            nullable=True,
            none_means="use TCP",
            in_query=False,
        ),
        _spec("db", "int", "location", "database number", minimum=0),
        _spec("username", "str", "location", "ACL user name", nullable=True, in_query=False),
        _spec(
            "password",
            "str",
            "location",
            "password",
            nullable=True,
            secret=True,
            in_query=False,
        ),
        _spec("ssl", "bool", "location", "connect with TLS", in_query=False),
        _spec(
            "socket_timeout",
            "float",
            "connection",
            _SECONDS,
            minimum=0,
            positive=True,
            nullable=True,
            none_means="wait forever",
        ),
        _spec("socket_connect_timeout", "float", "connection", _SECONDS, minimum=0, positive=True),
        _spec("socket_keepalive", "bool", "connection", "TCP keepalive"),
        _spec(
            "health_check_interval",
            "float",
            "connection",
            "seconds (0 turns checks off)",
            minimum=0,
        ),
        _spec("retry_on_timeout", "bool", "connection", "retry a command once after a timeout"),
        _spec(
            "client_name",
            "str",
            "connection",
            "name shown by CLIENT LIST",
            nullable=True,
            none_means="set no name",
        ),
        _spec("decode_responses", "bool", "connection", "decode replies to str"),
        _spec("encoding", "str", "connection", "codec for str values"),
        _spec("encoding_errors", "str", "connection", "codec error handler"),
        _spec(
            "protocol",
            "choice",
            "connection",
            "RESP version",
            choices=(2, 3),
            nullable=True,
            none_means="use redis-py's default (RESP3, replies shaped as with RESP2)",
        ),
        _spec(
            "busy_poll",
            "float",
            "connection",
            "seconds a sync connection polls for a reply before sleeping; 0 turns it off",
            minimum=0,
            maximum=0.001,
        ),
        _spec("max_connections", "int", "pool", "connections per pool", minimum=1),
        _spec("min_idle", "int", "pool", "idle connections kept open", minimum=0),
        _spec("acquire_timeout", "float", "pool", _SECONDS, minimum=0),
        _spec(
            "idle_timeout",
            "float",
            "pool",
            _SECONDS,
            minimum=0,
            positive=True,
            nullable=True,
            none_means="never close idle connections",
        ),
        _spec(
            "max_lifetime",
            "float",
            "pool",
            _SECONDS,
            minimum=0,
            positive=True,
            nullable=True,
            none_means="set no age limit",
        ),
        _spec(
            "leak_detection_threshold",
            "float",
            "pool",
            _SECONDS,
            minimum=0,
            positive=True,
            nullable=True,
            none_means="turn it off",
        ),
        _spec(
            "retries",
            "int",
            "resilience",
            "retries of a request that failed at the connection level",
            minimum=0,
        ),
        _spec(
            "breaker_threshold",
            "int",
            "resilience",
            "consecutive connection failures that open the circuit breaker",
            minimum=1,
        ),
        _spec(
            "breaker_reset_timeout",
            "float",
            "resilience",
            "seconds the breaker stays open before a probe",
            minimum=0,
            positive=True,
        ),
        _spec("monitor", "bool", "resilience", "run the background health monitor"),
        _spec(
            "auto_pipeline",
            "bool",
            "resilience",
            "batch the async client's concurrent commands into pipelines",
        ),
        _spec(
            "health_timeout",
            "float",
            "resilience",
            "seconds a health check waits for PONG",
            minimum=0,
            positive=True,
        ),
        _spec(
            "ssl_ca_certs",
            "path",
            "tls",
            "PEM file of trusted CA certificates",
            nullable=True,
        ),
        _spec(
            "ssl_ca_path",
            "path",
            "tls",
            "directory of hashed CA certificates",
            nullable=True,
        ),
        _spec(
            "ssl_ca_data",
            "str",
            "tls",
            "PEM text of trusted CA certificates",
            nullable=True,
        ),
        _spec("ssl_certfile", "path", "tls", "client certificate (PEM)", nullable=True),
        _spec("ssl_keyfile", "path", "tls", "client private key (PEM)", nullable=True),
        _spec(
            "ssl_password",
            "str",
            "tls",
            "password of the client key",
            nullable=True,
            secret=True,
            in_query=False,
        ),
        _spec(
            "ssl_cert_reqs",
            "choice",
            "tls",
            "server certificate check",
            choices=CERT_REQS_CHOICES,
        ),
        _spec("ssl_check_hostname", "bool", "tls", "match the certificate to the host"),
        _spec(
            "ssl_min_version",
            "tls_version",
            "tls",
            "oldest TLS version allowed",
            nullable=True,
            none_means="keep Python's default",
        ),
        _spec("ssl_ciphers", "str", "tls", "OpenSSL cipher list", nullable=True),
    )
}

# Names other libraries use for our options: an unknown option found here gets a precise hint.
_KNOWN_ALIASES: Mapping[str, str] = {
    "pool_size": "max_connections",
    "maxsize": "max_connections",
    "max_size": "max_connections",
    "min_idle_conns": "min_idle",
    "min_size": "min_idle",
    "timeout": "socket_timeout",
    "connect_timeout": "socket_connect_timeout",
    "pool_timeout": "acquire_timeout",
    "path": "unix_socket_path",
    "ssl_keyfile_password": "ssl_password",
    "tls": "ssl",
    "user": "username",
    "name": "client_name",
}
_UNSUPPORTED: Mapping[str, str] = {
    "ssl_context": "pass the ssl_* options instead; one SSLContext is built from them and "
    "shared by every connection",
    "connection_class": "the connection class follows from the URL scheme",
    "connection_pool": "pools are created and shared by the pool manager",
}


def suggest(name: str, known: list[str] | None = None) -> str:
    """A ' Did you mean ...?' sentence for an unknown option name, or ''."""
    if name in _KNOWN_ALIASES:
        return f" Did you mean {_KNOWN_ALIASES[name]!r}?"
    candidates = known if known is not None else list(OPTION_SPECS)
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    return f" Did you mean {close[0]!r}?" if close else ""


def unknown_option_error(name: str, where: str = "") -> ConfigError:
    """The ConfigError for an option name that is not part of the vocabulary."""
    if name in _UNSUPPORTED:
        return ConfigError(
            f"Option {name!r}{where} is not supported: {_UNSUPPORTED[name]}.", option=name
        )
    return ConfigError(
        f"Unknown option {name!r}{where}.{suggest(name)} "
        "The options are listed in docs/configuration.md.",
        option=name,
    )


def shown(spec: OptionSpec, value: object) -> str:
    """How a value may appear in a message: secrets never do, long values are cut."""
    if spec.secret:
        return REDACTED
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:60]}...({len(text)} characters)"


def _expected(spec: OptionSpec) -> str:
    if spec.kind in ("int", "float"):
        noun = "an integer" if spec.kind == "int" else "a number"
        if spec.minimum is not None:
            bound = f"> {spec.minimum:g}" if spec.positive else f">= {spec.minimum:g}"
            noun = f"{noun} {bound}"
        if spec.maximum is not None:
            noun = f"{noun} and <= {spec.maximum:g}"
    elif spec.kind == "bool":
        noun = "True or False"
    elif spec.kind == "choice":
        noun = "one of " + ", ".join(repr(c) for c in spec.choices)
    elif spec.kind == "tls_version":
        noun = "an ssl.TLSVersion or one of 'TLSv1_2', 'TLSv1_3'"
    elif spec.kind == "path":
        noun = "a file system path (str or os.PathLike)"
    else:
        noun = "a string"
    noun = f"{noun} ({spec.help})"
    if spec.nullable:
        noun += f", or None to {spec.none_means or 'leave it unset'}"
    return noun


def _invalid(spec: OptionSpec, value: object, where: str) -> ConfigError:
    kind = type(value).__name__
    return ConfigError(
        f"Option {spec.name!r}{where} must be {_expected(spec)}; "
        f"got {shown(spec, value)} ({kind}).",
        option=spec.name,
    )


def _check_number(spec: OptionSpec, value: object, where: str) -> int | float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _invalid(spec, value, where)
    if spec.kind == "int" and not isinstance(value, int):
        raise _invalid(spec, value, where)
    try:
        as_float = float(value)
    except OverflowError:
        raise _invalid(spec, value, where) from None
    if not math.isfinite(as_float):
        raise _invalid(spec, value, where)
    if spec.minimum is not None:
        too_small = value <= spec.minimum if spec.positive else value < spec.minimum
        if too_small:
            raise _invalid(spec, value, where)
    if spec.maximum is not None and value > spec.maximum:
        raise _invalid(spec, value, where)
    return as_float if spec.kind == "float" else value


_HOST_FORBIDDEN = frozenset("/?#@[] \t\r\n")


def _check_str(spec: OptionSpec, value: object, where: str) -> str:
    if not isinstance(value, str) or value == "":
        raise _invalid(spec, value, where)
    if spec.name == "host":
        if _HOST_FORBIDDEN & set(value):
            raise ConfigError(
                f"Option 'host'{where} must be a bare host name or IP address (IPv6 without "
                f"brackets), not a URL or address with a port; got {value!r}.",
                option="host",
            )
        return value.lower()
    if spec.name == "client_name" and not all("!" <= char <= "~" for char in value):
        raise ConfigError(
            f"Option 'client_name'{where} may only contain printable ASCII characters "
            f"without spaces (the server refuses others in CLIENT SETNAME); got {value!r}.",
            option="client_name",
        )
    if spec.name == "encoding":
        try:
            "".encode(value)
            b"".decode(value)
            return codecs.lookup(value).name
        except (LookupError, ValueError):
            raise ConfigError(
                f"Option 'encoding'{where} names no text codec Python knows: {value!r}. "
                "Use a codec name such as 'utf-8'.",
                option="encoding",
            ) from None
    if spec.name == "encoding_errors":
        try:
            codecs.lookup_error(value)
        except (LookupError, ValueError):
            raise ConfigError(
                f"Option 'encoding_errors'{where} names no codec error handler: {value!r}. "
                "Use 'strict', 'replace', 'ignore' or 'backslashreplace'.",
                option="encoding_errors",
            ) from None
    return value


def _check_path(spec: OptionSpec, value: object, where: str) -> str:
    if not isinstance(value, str | os.PathLike) or os.fspath(value) in ("", b""):
        raise _invalid(spec, value, where)
    path = os.fspath(value)
    if not isinstance(path, str):
        raise _invalid(spec, value, where)
    return os.path.abspath(os.path.expanduser(path))


def _check_choice(spec: OptionSpec, value: object, where: str) -> object:
    if spec.name == "ssl_cert_reqs" and isinstance(value, ssl.VerifyMode):
        value = {
            ssl.CERT_NONE: "none",
            ssl.CERT_OPTIONAL: "optional",
            ssl.CERT_REQUIRED: "required",
        }[value]
    if isinstance(value, str):
        value = value.lower()
    if isinstance(value, bool) or value not in spec.choices:
        raise _invalid(spec, value, where)
    return value


_CHECKERS: Mapping[Kind, Callable[[OptionSpec, object, str], object]] = {
    "int": _check_number,
    "float": _check_number,
    "str": _check_str,
    "path": _check_path,
    "choice": _check_choice,
}


def check_value(name: str, value: object, where: str = "") -> object:
    """Validate and normalise one option given as a Python value.

    Args:
        name: the option name; must be in ``OPTION_SPECS``.
        value: the value as the user gave it.
        where: words placed after the option name in messages, e.g. ``" in the URL"``.

    Raises:
        ConfigError: naming the option, the value (secrets redacted) and what is allowed.
    """
    spec = OPTION_SPECS[name]
    if value is None:
        if spec.nullable:
            return None
        raise _invalid(spec, value, where)
    if spec.kind == "bool":
        if not isinstance(value, bool):
            raise _invalid(spec, value, where)
        return value
    if spec.kind == "tls_version":
        try:
            return parse_tls_version(value)
        except ValueError:
            raise _invalid(spec, value, where) from None
    return _CHECKERS[spec.kind](spec, value, where)


_TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
_FALSE_WORDS = frozenset({"0", "false", "no", "off"})
_NONE_WORDS = frozenset({"none", "null"})


def parse_text(name: str, text: str, where: str) -> object:
    """Turn the text of a URL query value into a validated option value."""
    spec = OPTION_SPECS[name]
    lowered = text.strip().lower()
    if spec.nullable and lowered in _NONE_WORDS:
        return None
    value: object = text
    if spec.kind == "bool":
        if lowered not in _TRUE_WORDS | _FALSE_WORDS:
            raise ConfigError(
                f"Option {name!r}{where} must be one of true/false, yes/no, on/off, 1/0; "
                f"got {text!r}.",
                option=name,
            )
        value = lowered in _TRUE_WORDS
    elif spec.kind in ("int", "float") or spec.name == "protocol":
        value = _parse_number(spec, text, where)
    return check_value(name, value, where)


def _parse_number(spec: OptionSpec, text: str, where: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        pass
    if spec.kind == "float":
        try:
            return float(text)
        except ValueError:
            pass
    raise _invalid(spec, text, where)
