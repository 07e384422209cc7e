"""TLS: one ``ssl.SSLContext`` per set of TLS options, shared by every connection that uses
those options, and plain-language explanations of TLS connection failures.

redis-py builds a fresh context and re-reads the certificate files on every connect; a
pool that opens connections under load should do that work once. Building the context is
also where a missing or unreadable file, a key that does not match its certificate or a
wrong key password is found, so configuration errors surface when the configuration is
made, not on the first request.
"""

from __future__ import annotations

import os
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from ferrite_integrations.errors import ConfigError, TLSError

__all__ = [
    "CERT_REQS_CHOICES",
    "TLSSettings",
    "build_context",
    "explain_tls_failure",
    "parse_tls_version",
    "shared_context",
]

CertReqs = Literal["none", "optional", "required"]
CERT_REQS_CHOICES: tuple[CertReqs, ...] = ("none", "optional", "required")

_VERIFY_MODES: dict[CertReqs, ssl.VerifyMode] = {
    "none": ssl.CERT_NONE,
    "optional": ssl.CERT_OPTIONAL,
    "required": ssl.CERT_REQUIRED,
}
_ALLOWED_VERSIONS = (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3)


@dataclass(frozen=True)
class TLSSettings:
    """The TLS part of a configuration, already validated and normalised.

    File paths are absolute. ``password`` (the client key's password) never appears in
    ``repr``.
    """

    ca_certs: str | None = None
    ca_path: str | None = None
    ca_data: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    password: str | None = field(default=None, repr=False)
    cert_reqs: CertReqs = "required"
    check_hostname: bool = True
    min_version: ssl.TLSVersion | None = None
    ciphers: str | None = None

    @property
    def trust_source(self) -> str:
        """Where trusted CA certificates come from, for messages."""
        if self.ca_certs:
            return f"ssl_ca_certs={self.ca_certs!r}"
        if self.ca_path:
            return f"ssl_ca_path={self.ca_path!r}"
        if self.ca_data:
            return "ssl_ca_data"
        return "the system's trusted CAs (no ssl_ca_certs given)"


def parse_tls_version(value: object) -> ssl.TLSVersion:
    """Accept ``ssl.TLSVersion.TLSv1_2``, ``"TLSv1_2"``, ``"TLSv1.2"``, ``"1.2"`` (and 1.3).

    Raises:
        ValueError: for anything else, including versions older than TLS 1.2.
    """
    if isinstance(value, ssl.TLSVersion):
        version = value
    elif isinstance(value, int) and not isinstance(value, bool):
        version = ssl.TLSVersion(value)
    elif isinstance(value, str):
        text = value.strip().lower().replace(".", "_").removeprefix("tlsv")
        names = {"1_2": ssl.TLSVersion.TLSv1_2, "1_3": ssl.TLSVersion.TLSv1_3}
        if text not in names:
            raise ValueError(value)
        version = names[text]
    else:
        raise ValueError(value)
    if version not in _ALLOWED_VERSIONS:
        raise ValueError(value)
    return version


def _config_error(option: str, message: str) -> ConfigError:
    return ConfigError(f"Option {option!r}: {message}", option=option)


def _check_readable_file(option: str, path: str | None) -> str | None:
    if path is None:
        return None
    if not os.path.exists(path):
        raise _config_error(option, f"no such file {path!r}.")
    if not os.path.isfile(path):
        raise _config_error(option, f"{path!r} is not a regular file.")
    try:
        with open(path, encoding="latin-1") as handle:
            return handle.read()
    except OSError as exc:
        raise _config_error(option, f"cannot read {path!r}: {exc.strerror}.") from None


def _load_trust(context: ssl.SSLContext, settings: TLSSettings) -> None:
    if settings.ca_certs is not None:
        _check_readable_file("ssl_ca_certs", settings.ca_certs)
        try:
            context.load_verify_locations(cafile=settings.ca_certs)
        except ssl.SSLError as exc:
            raise _config_error(
                "ssl_ca_certs",
                f"{settings.ca_certs!r} holds no PEM certificate OpenSSL can read "
                f"({exc.reason or exc}). It must contain '-----BEGIN CERTIFICATE-----' blocks.",
            ) from None
    if settings.ca_path is not None:
        if not os.path.isdir(settings.ca_path):
            raise _config_error(
                "ssl_ca_path", f"{settings.ca_path!r} is not a directory of CA certificates."
            )
        context.load_verify_locations(capath=settings.ca_path)
    if settings.ca_data is not None:
        try:
            context.load_verify_locations(cadata=settings.ca_data)
        except (ssl.SSLError, TypeError, ValueError):
            raise _config_error(
                "ssl_ca_data",
                "the text holds no PEM certificate; it must contain "
                "'-----BEGIN CERTIFICATE-----' blocks.",
            ) from None


class _KeyNeedsPassword(Exception):
    pass


def _refuse_prompt() -> str:
    # Without a callback OpenSSL would prompt on the terminal for an encrypted key's password.
    raise _KeyNeedsPassword


def _load_client_certificate(context: ssl.SSLContext, settings: TLSSettings) -> None:
    if settings.keyfile is not None and settings.certfile is None:
        raise _config_error(
            "ssl_keyfile", "is set but 'ssl_certfile' is not; give the client certificate too."
        )
    if settings.certfile is None:
        return
    cert_text = _check_readable_file("ssl_certfile", settings.certfile) or ""
    key_text = _check_readable_file("ssl_keyfile", settings.keyfile) or cert_text
    if "CERTIFICATE-----" not in cert_text:
        raise _config_error("ssl_certfile", f"{settings.certfile!r} holds no PEM certificate.")
    if "PRIVATE KEY-----" not in key_text:
        option = "ssl_keyfile" if settings.keyfile else "ssl_certfile"
        raise _config_error(
            option,
            f"no PEM private key found in {settings.keyfile or settings.certfile!r}; "
            "set 'ssl_keyfile' to the client certificate's private key.",
        )
    password: str | Callable[[], str] = (
        settings.password if settings.password is not None else _refuse_prompt
    )
    if settings.password is not None and len(settings.password.encode()) > 1024:
        raise _config_error("ssl_password", "is longer than OpenSSL's limit of 1024 bytes.")
    try:
        context.load_cert_chain(settings.certfile, settings.keyfile, password=password)
    except _KeyNeedsPassword:
        raise _config_error(
            "ssl_keyfile", "the private key is encrypted; set 'ssl_password' to its password."
        ) from None
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise _config_error(
                "ssl_keyfile",
                f"the private key does not belong to the certificate in {settings.certfile!r}.",
            ) from None
        if settings.password is not None and "ENCRYPTED" in key_text:
            raise _config_error(
                "ssl_password", "does not decrypt the private key (wrong password)."
            ) from None
        raise _config_error(
            "ssl_certfile",
            f"OpenSSL cannot load the client certificate and key ({exc}).",
        ) from None


def build_context(settings: TLSSettings) -> ssl.SSLContext:
    """Build a client ``SSLContext`` from validated settings, reading every file once.

    Raises:
        ConfigError: naming the option whose file is missing, unreadable or unusable.
    """
    context = _new_context(
        trust_given=bool(settings.ca_certs or settings.ca_path or settings.ca_data)
    )
    if settings.cert_reqs == "none":
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        context.verify_mode = _VERIFY_MODES[settings.cert_reqs]
        context.check_hostname = settings.check_hostname
    _load_trust(context, settings)
    _load_client_certificate(context, settings)
    if settings.min_version is not None:
        context.minimum_version = settings.min_version
    if settings.ciphers is not None:
        try:
            context.set_ciphers(settings.ciphers)
        except ssl.SSLError:
            raise _config_error(
                "ssl_ciphers",
                f"OpenSSL accepts no cipher from {settings.ciphers!r}; use an OpenSSL cipher "
                "list such as 'ECDHE+AESGCM'.",
            ) from None
    return context


def _new_context(*, trust_given: bool) -> ssl.SSLContext:
    """Python's default client context; when CAs are given, the same security settings
    with an empty trust store, so that exactly the named CAs are trusted."""
    default = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if not trust_given:
        return default
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.options = default.options
    context.verify_flags = default.verify_flags
    context.minimum_version = default.minimum_version
    return context


_contexts: dict[TLSSettings, ssl.SSLContext] = {}
_contexts_lock = threading.Lock()


def shared_context(settings: TLSSettings) -> ssl.SSLContext:
    """The one context for these settings, built on first use (thread-safe).

    Certificate files are read when the context is first built; to pick up rotated files,
    restart the process (or build a new configuration with different settings).
    """
    context = _contexts.get(settings)
    if context is not None:
        return context
    with _contexts_lock:
        context = _contexts.get(settings)
        if context is None:
            context = build_context(settings)
            _contexts[settings] = context
    return context


def _exception_chain(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


_CERTIFICATE_REQUIRED = frozenset({"TLSV13_ALERT_CERTIFICATE_REQUIRED"})
_CLIENT_CERT_REJECTED = frozenset(
    {"SSLV3_ALERT_BAD_CERTIFICATE", "TLSV1_ALERT_UNKNOWN_CA", "SSLV3_ALERT_CERTIFICATE_UNKNOWN"}
)
_NO_COMMON_VERSION = frozenset(
    {"TLSV1_ALERT_PROTOCOL_VERSION", "UNSUPPORTED_PROTOCOL", "NO_PROTOCOLS_AVAILABLE"}
)
_HANDSHAKE_REFUSED = frozenset({"SSLV3_ALERT_HANDSHAKE_FAILURE", "NO_SHARED_CIPHER"})
_WRONG_PROTOCOL = frozenset({"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "HTTP_REQUEST"})


def _explain_verification(
    error: ssl.SSLCertVerificationError, settings: TLSSettings, where: str, host: str
) -> str:
    detail = error.verify_message or str(error)
    code = error.verify_code
    if code in (62, 64):  # X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH
        return (
            f"the server certificate at {where} is not valid for {host!r} ({detail}). "
            "Connect with a host name the certificate lists, or set "
            "ssl_check_hostname=False (not recommended)."
        )
    if code in (9, 10):  # X509_V_ERR_CERT_NOT_YET_VALID, X509_V_ERR_CERT_HAS_EXPIRED
        return f"the server certificate at {where} is outside its validity period ({detail})."
    return (
        f"the server certificate at {where} is not signed by a CA this client trusts "
        f"({detail}). Trusted now: {settings.trust_source}. Set ssl_ca_certs to the CA "
        "that signed the server's certificate."
    )


def explain_tls_failure(
    exc: BaseException, settings: TLSSettings, host: str, port: int
) -> TLSError | None:
    """Turn a failed TLS connect into a ``TLSError`` that names the cause and the fix.

    Args:
        exc: the error raised while connecting (redis-py's, with the ``ssl`` error chained).
        settings: the TLS settings the connection used.
        host: the host name the certificate was checked against.
        port: the server port.

    Returns:
        The error to raise instead, or ``None`` when the failure is not about TLS.
    """
    where = f"{host}:{port}"
    for error in _exception_chain(exc):
        message = _explain_one(error, settings, where, host)
        if message is not None:
            return TLSError(
                f"TLS connection to {where} failed: {message}",
                permanent=not isinstance(error, TimeoutError | ConnectionAbortedError),
            )
    return None


def _explain_one(error: BaseException, settings: TLSSettings, where: str, host: str) -> str | None:
    if isinstance(error, ssl.SSLCertVerificationError):
        return _explain_verification(error, settings, where, host)
    reason = getattr(error, "reason", None) if isinstance(error, ssl.SSLError) else None
    if reason in _WRONG_PROTOCOL:
        return (
            f"the server did not answer with TLS ({reason}). It probably serves plaintext "
            "on this port: use a redis:// URL, or the server's TLS port."
        )
    if reason in _CERTIFICATE_REQUIRED:
        return (
            "the server requires a client certificate (mutual TLS): set ssl_certfile and "
            "ssl_keyfile."
        )
    if reason in _CLIENT_CERT_REJECTED and settings.certfile is not None:
        return (
            f"the server rejected the client certificate {settings.certfile!r} ({reason}). "
            "Use a certificate signed by a CA the server trusts (its tls-ca-cert-file)."
        )
    if reason in _NO_COMMON_VERSION:
        return (
            f"client and server share no TLS version ({reason}); this client allows "
            f"{_allowed_versions(settings)}. Lower ssl_min_version or upgrade the server."
        )
    if reason in _HANDSHAKE_REFUSED | _CLIENT_CERT_REJECTED:
        return _refused_message(settings, reason or "")
    if isinstance(error, ssl.SSLEOFError | ConnectionResetError | BrokenPipeError):
        return _client_certificate_message(settings, type(error).__name__)
    if isinstance(error, TimeoutError | ConnectionAbortedError) and "handshake" in str(error):
        return (
            "the TLS handshake did not complete within socket_connect_timeout: the server "
            "is hung or overloaded, or it does not speak TLS on this port (then use a "
            "redis:// URL, or the server's TLS port)."
        )
    return None


def _allowed_versions(settings: TLSSettings) -> str:
    if settings.min_version is None:
        return "TLS 1.2 and newer"
    return f"{settings.min_version.name} and newer (ssl_min_version)"


def _refused_message(settings: TLSSettings, reason: str) -> str:
    hint = (
        "set ssl_certfile and ssl_keyfile if it requires a client certificate"
        if settings.certfile is None
        else f"check that it accepts the client certificate {settings.certfile!r}"
    )
    return (
        f"the server refused the TLS handshake ({reason}): {hint}; otherwise client and "
        "server share no cipher (ssl_ciphers) or TLS version (ssl_min_version)."
    )


def _client_certificate_message(settings: TLSSettings, reason: str) -> str:
    if settings.certfile is None:
        return (
            f"the server closed the TLS session during the connection handshake ({reason}). "
            "A server that requires a client certificate (mutual TLS) does this: set "
            "ssl_certfile and ssl_keyfile."
        )
    return (
        f"the server closed the TLS session during the connection handshake ({reason}). "
        f"A mutual-TLS server does this when it rejects the client certificate "
        f"{settings.certfile!r}: use one signed by a CA the server trusts (its "
        "tls-ca-cert-file)."
    )
