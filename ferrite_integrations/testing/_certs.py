"""Throwaway TLS certificates for embedded servers, made with ``trustme``."""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING

from ferrite_integrations.testing._errors import EmbeddedServerError

if TYPE_CHECKING:
    import trustme

__all__ = ["CLIENT_IDENTITY", "SERVER_IDENTITIES", "TLSFiles", "make_tls_files"]

SERVER_IDENTITIES = ("localhost", "127.0.0.1")
CLIENT_IDENTITY = "client.ferrite.test"


@dataclasses.dataclass(frozen=True, slots=True)
class TLSFiles:
    """Paths of the PEM files an embedded TLS server and its clients use.

    Attributes:
        ca_file: certificate of the test CA that signed every other certificate.
        server_cert_file: the server's certificate chain, valid for ``localhost`` and
            ``127.0.0.1``.
        server_key_file: the server's private key.
        client_cert_file: a client certificate chain, for mutual TLS.
        client_key_file: the client certificate's private key.
    """

    ca_file: str
    server_cert_file: str
    server_key_file: str
    client_cert_file: str
    client_key_file: str


def make_tls_files(directory: str) -> tuple[TLSFiles, trustme.CA]:
    """Create a CA, a server and a client certificate as PEM files in ``directory``.

    Args:
        directory: an existing directory the files are written into.

    Raises:
        EmbeddedServerError: ``trustme`` is not installed.
    """
    try:
        import trustme
    except ImportError as exc:
        raise EmbeddedServerError(
            "a TLS embedded server needs trustme to make its certificates: "
            "pip install ferrite-integrations[test]"
        ) from exc
    ca = trustme.CA()
    files = TLSFiles(*(os.path.join(directory, name) for name in _FILE_NAMES))
    ca.cert_pem.write_to_path(files.ca_file)
    _write_cert(ca.issue_cert(*SERVER_IDENTITIES), files.server_cert_file, files.server_key_file)
    _write_cert(ca.issue_cert(CLIENT_IDENTITY), files.client_cert_file, files.client_key_file)
    return files, ca


_FILE_NAMES = ("ca.pem", "server.pem", "server-key.pem", "client.pem", "client-key.pem")


def _write_cert(cert: trustme.LeafCert, cert_file: str, key_file: str) -> None:
    for index, blob in enumerate(cert.cert_chain_pems):
        blob.write_to_path(cert_file, append=index > 0)
    cert.private_key_pem.write_to_path(key_file)
