"""Options of an embedded server and the server configuration file they turn into."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from ferrite_integrations.errors import ConfigError
from ferrite_integrations.testing._certs import TLSFiles
from ferrite_integrations.testing._net import LOOPBACK

__all__ = ["ServerOptions", "extra_directives", "quote", "render_config"]


@dataclasses.dataclass(frozen=True, slots=True)
class ServerOptions:
    """The validated constructor options of an ``EmbeddedServer``."""

    password: str | None = None
    username: str | None = None
    tls: bool = False
    mutual_tls: bool = False
    unix_socket: bool = False
    startup_timeout: float = 10.0
    extra_config: tuple[tuple[str, str], ...] = ()
    db: int = 0

    def __post_init__(self) -> None:
        if self.password == "":
            raise ConfigError(
                "password must not be empty; use None for no password", option="password"
            )
        if self.username is not None and self.password is None:
            raise ConfigError("username needs a password as well", option="username")
        if self.username is not None and not _is_word(self.username):
            raise ConfigError("username must be non-empty, without whitespace", option="username")
        if not self.startup_timeout > 0:
            raise ConfigError(
                f"startup_timeout must be > 0 seconds, got {self.startup_timeout!r}",
                option="startup_timeout",
            )
        if self.db < 0:
            raise ConfigError(f"db must be >= 0, got {self.db!r}", option="db")

    @property
    def any_tls(self) -> bool:
        """Whether the server speaks TLS (``tls`` or ``mutual_tls``)."""
        return self.tls or self.mutual_tls


def extra_directives(extra_config: Mapping[str, str] | None) -> tuple[tuple[str, str], ...]:
    """Validate extra configuration directives and return them as ``(name, value)`` pairs.

    Args:
        extra_config: directive name -> value, written verbatim as ``name value`` lines.
    """
    pairs = tuple((extra_config or {}).items())
    for name, value in pairs:
        if not _is_word(name) or "\n" in value or "\r" in value:
            raise ConfigError(
                f"extra_config entry {name!r}: the name must be one word and the value a "
                "single line",
                option="extra_config",
            )
    return pairs


def _is_word(text: str) -> bool:
    return bool(text) and not any(char.isspace() for char in text)


def render_config(
    options: ServerOptions,
    *,
    port: int,
    workdir: str,
    logfile: str,
    socket_path: str | None,
    tls_files: TLSFiles | None,
) -> str:
    """Return the text of the server configuration file.

    Args:
        options: the server's options.
        port: the TCP port (the TLS port when TLS is on; the plaintext port is then off).
        workdir: the server's working directory (``dir``).
        logfile: where the server writes its log.
        socket_path: the unix socket to listen on as well, if any.
        tls_files: the certificates, required when TLS is on.
    """
    lines = [
        f"bind {LOOPBACK}",
        f"dir {quote(workdir)}",
        f"logfile {quote(logfile)}",
        "daemonize no",
        'save ""',
        "appendonly no",
        *_listen_lines(options, port, socket_path, tls_files),
        *_auth_lines(options),
        *(f"{name} {value}" for name, value in options.extra_config),
    ]
    return "\n".join(lines) + "\n"


def _listen_lines(
    options: ServerOptions, port: int, socket_path: str | None, tls_files: TLSFiles | None
) -> list[str]:
    lines = []
    if options.any_tls:
        assert tls_files is not None
        lines += [
            "port 0",
            f"tls-port {port}",
            f"tls-cert-file {quote(tls_files.server_cert_file)}",
            f"tls-key-file {quote(tls_files.server_key_file)}",
            f"tls-ca-cert-file {quote(tls_files.ca_file)}",
            f"tls-auth-clients {'yes' if options.mutual_tls else 'no'}",
        ]
    else:
        lines.append(f"port {port}")
    if socket_path is not None:
        lines += [f"unixsocket {quote(socket_path)}", "unixsocketperm 700"]
    return lines


def _auth_lines(options: ServerOptions) -> list[str]:
    if options.password is None:
        return []
    if options.username is None:
        return [f"requirepass {quote(options.password)}"]
    return [
        "user default off",
        f"user {quote(options.username)} on {quote('>' + options.password)} ~* &* +@all",
    ]


_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def quote(value: str) -> str:
    """Quote ``value`` as one argument of a Redis configuration file line.

    Args:
        value: any string; backslashes, quotes and line breaks are escaped.
    """
    return '"' + "".join(_ESCAPES.get(char, char) for char in value) + '"'
