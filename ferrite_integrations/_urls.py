"""Connection URLs: ``redis://``, ``rediss://`` and ``unix://``.

The structure (host, port, credentials, socket path) is read by redis-py's own
``parse_url``; this module adds the checks redis-py skips (it silently ignores a
non-numeric database path, a port of 0 and repeated query keys, and reads ``"maybe"`` as
true) and reads query values through the option table.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

from redis.connection import parse_url as redis_parse_url

from ferrite_integrations._options import (
    OPTION_SPECS,
    REDACTED,
    check_value,
    parse_text,
    unknown_option_error,
)
from ferrite_integrations.errors import ConfigError

SCHEMES = ("redis", "rediss", "unix")
_QUERY_SECRET = re.compile(r"(?i)([?&](?:password|ssl_password)=)[^&#]*")


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***``; safe for messages and logs.

    Works on malformed URLs too: everything between the scheme and the *last* ``@`` is
    user information (a password may itself contain ``@``, ``#``, ``?`` or ``/``), and
    ``password=`` query values are hidden as well.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    if "@" in rest:
        userinfo, _, location = rest.rpartition("@")
        user, has_secret, _ = userinfo.partition(":")
        rest = f"{user}:{REDACTED}@{location}" if has_secret else f"{userinfo}@{location}"
    return _QUERY_SECRET.sub(rf"\1{REDACTED}", f"{scheme}{sep}{rest}")


_URLSPLIT_PROBLEMS = (
    ("Port could not be cast", "the port is not a number; use 1-65535."),
    ("Port out of range", "the port is out of range; use 1-65535."),
    ("IPv6", "an IPv6 address needs matching brackets, e.g. redis://[::1]:6379/0."),
)


def _urlsplit_problem(error: ValueError) -> str:
    # urlsplit's own messages can quote pieces of the user information: never pass them on.
    text = str(error)
    for marker, problem in _URLSPLIT_PROBLEMS:
        if marker in text:
            return problem
    return "it is not a well-formed URL."


def _url_error(url: str, source: str, problem: str) -> ConfigError:
    return ConfigError(f"Invalid {source} {redact_url(url)!r}: {problem}", option="url")


def _check_scheme(url: str, source: str) -> str:
    scheme, sep, _ = url.partition("://")
    if sep and scheme in SCHEMES:
        return scheme
    allowed = "redis:// (plain TCP), rediss:// (TLS) or unix:// (unix socket)"
    if not sep:
        hint = (
            f" Did you mean {'redis://' + redact_url(url)!r}?"
            if url and "/" not in url.split(":", maxsplit=1)[0]
            else ""
        )
        raise _url_error(url, source, f"it has no scheme; it must start with {allowed}.{hint}")
    raise _url_error(url, source, f"unknown scheme {scheme + '://'!r}; use {allowed}.")


def _query_options(
    query: str, url: str, source: str, *, credentials_allowed: bool
) -> dict[str, object]:
    try:
        pairs = parse_qs(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise _url_error(url, source, "malformed query string.") from None
    options: dict[str, object] = {}
    for name, values in pairs.items():
        where = f" in the {source}"
        spec = OPTION_SPECS.get(name)
        if spec is None:
            raise unknown_option_error(name, where)
        allowed = credentials_allowed and name in ("username", "password")
        if not spec.in_query and not allowed:
            raise ConfigError(
                f"Option {name!r} cannot be given in the {source}'s query string: "
                "put credentials and the address in the URL itself "
                "(scheme://user:password@host:port/db), or pass it as a keyword argument.",
                option=name,
            )
        if len(values) > 1:
            raise _url_error(url, source, f"option {name!r} appears {len(values)} times.")
        options[name] = parse_text(name, values[0], where)
    return options


def _database_from_path(path: str, url: str, source: str) -> int | None:
    digits = path.strip("/")
    if digits == "":
        return None
    if not (digits.isascii() and digits.isdigit()):
        raise _url_error(url, source, f"the path {path!r} must be a database number, e.g. '/0'.")
    return int(digits)


def _structure(url: str, source: str) -> dict[str, object]:
    try:
        parsed: dict[str, object] = redis_parse_url(url)  # type: ignore[no-untyped-call]
    except ValueError as exc:
        raise _url_error(url, source, _urlsplit_problem(exc)) from None
    return parsed


def _tcp_location(url: str, source: str, scheme: str) -> dict[str, object]:
    split = urlsplit(url)
    try:
        port = split.port
    except ValueError as exc:
        raise _url_error(url, source, _urlsplit_problem(exc)) from None
    if port == 0:
        raise _url_error(url, source, "port 0 is not a server port; use 1-65535.")
    parsed = _structure(url, source)
    host = parsed.get("host")
    if not host:
        raise _url_error(
            url,
            source,
            "it has no host; write redis://HOST:PORT/DB (e.g. redis://127.0.0.1:6379/0).",
        )
    location: dict[str, object] = {"host": host, "ssl": scheme == "rediss"}
    if port is not None:
        location["port"] = port
    db = _database_from_path(split.path, url, source)
    if db is not None:
        location["db"] = db
    return location


def _unix_location(url: str, source: str) -> dict[str, object]:
    split = urlsplit(url)
    if split.hostname or split.port or (split.netloc and "@" not in split.netloc):
        raise _url_error(
            url,
            source,
            f"a unix:// URL takes an absolute socket path, e.g. "
            f"'unix:///run/ferrite.sock'; {split.netloc!r} looks like a host name.",
        )
    parsed = _structure(url, source)
    path = parsed.get("path")
    if not path:
        raise _url_error(
            url, source, "it has no socket path, e.g. 'unix:///run/ferrite.sock?db=0'."
        )
    return {"unix_socket_path": path}


def parse_url(url: object, source: str = "URL") -> dict[str, object]:
    """Read a connection URL into validated option values.

    Args:
        url: the URL; anything but a non-empty ``str`` is an error.
        source: how messages refer to the URL, e.g. ``"URL"`` or ``"FERRITE_URL"``.

    Raises:
        ConfigError: for a malformed URL, an unknown scheme or option, or a bad value.
    """
    if not isinstance(url, str):
        raise ConfigError(
            f"The {source} must be a string such as 'redis://127.0.0.1:6379/0'; "
            f"got {type(url).__name__}.",
            option="url",
        )
    if url == "" or any(char.isspace() for char in url):
        raise _url_error(url, source, "it is empty or contains whitespace.")
    scheme = _check_scheme(url, source)
    try:
        split = urlsplit(url)
        split.port  # noqa: B018  (reading it validates the port and IPv6 brackets)
    except ValueError as exc:
        raise _url_error(url, source, _urlsplit_problem(exc)) from None
    if split.fragment:
        raise _url_error(url, source, "a '#fragment' has no meaning in a connection URL.")
    base = url.split("?", 1)[0]
    location = (
        _unix_location(base, source) if scheme == "unix" else _tcp_location(base, source, scheme)
    )
    parsed = _structure(base, source)
    for credential in ("username", "password"):
        if parsed.get(credential):
            location[credential] = parsed[credential]
    # redis-py documents unix:// credentials in the query: unix://[user@]/path?password=...
    query = _query_options(split.query, url, source, credentials_allowed=scheme == "unix")
    if "db" in query and "db" in location and query["db"] != location["db"]:
        raise _url_error(
            url,
            source,
            f"the database is given twice: path says {location['db']}, ?db= says {query['db']}.",
        )
    for credential in ("username", "password"):
        if location.get(credential, query.get(credential)) != query.get(
            credential, location.get(credential)
        ):
            raise _url_error(
                url, source, f"the {credential} is given twice, with different values."
            )
    if scheme != "rediss":
        tls_named = sorted(name for name in query if OPTION_SPECS[name].group == "tls")
        if tls_named:
            raise ConfigError(
                f"TLS option {', '.join(repr(n) for n in tls_named)} appears in a "
                f"{scheme}:// {source}; use a rediss:// URL to connect with TLS.",
                option=tls_named[0],
            )
    where = f" in the {source}"
    checked = {name: check_value(name, value, where) for name, value in location.items()}
    return {**checked, **query}
