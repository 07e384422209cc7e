"""TLS against real servers: the right CA connects; every mistake is a TLSError naming its cause.

Each case runs with the sync and the asyncio connection classes.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio

from ferrite_integrations import FerriteError, PoolConfig, TLSError, connection_kwargs
from ferrite_integrations.testing import EmbeddedServer
from ferrite_integrations.testing.plugin import ServerFactory

FAST = {"socket_connect_timeout": 0.5, "socket_timeout": 2.0}


def ping_sync(config: PoolConfig, connections: int = 1) -> list[Any]:
    pool = redis.ConnectionPool(max_connections=connections, **connection_kwargs(config))
    try:
        opened = [pool.get_connection() for _ in range(connections)]
        for connection in opened:
            connection.send_command("PING")
            assert connection.read_response() in (b"PONG", "PONG")
        for connection in opened:
            pool.release(connection)
        return opened
    finally:
        pool.disconnect()


def ping_async(config: PoolConfig, connections: int = 1) -> list[Any]:
    async def run() -> list[Any]:
        pool = redis.asyncio.ConnectionPool(
            max_connections=connections, **connection_kwargs(config, use_asyncio=True)
        )
        try:
            opened = [await pool.get_connection() for _ in range(connections)]
            for connection in opened:
                await connection.send_command("PING")
                assert await connection.read_response() in (b"PONG", "PONG")
            for connection in opened:
                await pool.release(connection)
            return opened
        finally:
            await pool.disconnect()

    return asyncio.run(run())


PINGERS = {"sync": ping_sync, "async": ping_async}


@pytest.fixture(params=sorted(PINGERS))
def ping(request: pytest.FixtureRequest) -> Any:
    return PINGERS[request.param]


@pytest.fixture(scope="module")
def tls_server(ferrite_tls_server: EmbeddedServer) -> EmbeddedServer:
    return ferrite_tls_server


@pytest.fixture(scope="module")
def mtls_server(ferrite_tls_server: EmbeddedServer) -> Any:
    # Depending on ferrite_tls_server gives this fixture its skip-or-fail rule for TLS.
    with EmbeddedServer(mutual_tls=True, binary=ferrite_tls_server.binary) as server:
        yield server


def tls_url(server: EmbeddedServer, host: str = "127.0.0.1") -> str:
    return f"rediss://{host}:{server.port}/0"


def test_connects_with_the_right_ca(tls_server: EmbeddedServer, ping: Any) -> None:
    config = PoolConfig.from_url(tls_url(tls_server), ssl_ca_certs=tls_server.tls_files.ca_file)
    assert len(ping(config)) == 1


def test_the_harness_url_carries_its_ca(tls_server: EmbeddedServer, ping: Any) -> None:
    assert len(ping(PoolConfig.from_url(tls_server.url))) == 1


def test_every_connection_shares_one_context_and_files_are_read_once(
    tls_server: EmbeddedServer, tmp_path: Path, ping: Any
) -> None:
    ca_copy = tmp_path / "ca.pem"
    shutil.copy(tls_server.tls_files.ca_file, ca_copy)
    config = PoolConfig.from_url(tls_url(tls_server), ssl_ca_certs=str(ca_copy), **FAST)
    ca_copy.unlink()  # redis-py's own SSLConnection would fail here: it re-reads per connect
    connections = ping(config, connections=3)
    contexts = {id(connection.shared_ssl_context) for connection in connections}
    assert contexts == {id(config.ssl_context())}


def test_wrong_ca_names_the_untrusted_certificate(
    tls_server: EmbeddedServer, cert_files: Any, ping: Any
) -> None:
    config = PoolConfig.from_url(tls_url(tls_server), ssl_ca_certs=str(cert_files.other_ca), **FAST)
    with pytest.raises(TLSError) as caught:
        ping(config)
    message = str(caught.value)
    assert "not signed by a CA this client trusts" in message
    assert str(cert_files.other_ca) in message
    assert "Set ssl_ca_certs" in message
    assert caught.value.permanent is True


def test_no_ca_at_all_means_the_system_store_and_says_so(
    tls_server: EmbeddedServer, ping: Any
) -> None:
    with pytest.raises(TLSError, match="system's trusted CAs"):
        ping(PoolConfig.from_url(tls_url(tls_server), **FAST))


def test_hostname_mismatch_names_the_host(ferrite_server_factory: ServerFactory, ping: Any) -> None:
    server = ferrite_server_factory(tls=True, extra_config={"bind": "127.0.0.1 127.0.0.2"})
    config = PoolConfig.from_url(
        tls_url(server, host="127.0.0.2"), ssl_ca_certs=server.tls_files.ca_file, **FAST
    )
    with pytest.raises(TLSError) as caught:
        ping(config)
    message = str(caught.value)
    assert "not valid for '127.0.0.2'" in message
    assert "ssl_check_hostname=False" in message
    relaxed = PoolConfig.from_url(
        tls_url(server, host="127.0.0.2"),
        ssl_ca_certs=server.tls_files.ca_file,
        ssl_check_hostname=False,
        **FAST,
    )
    assert len(ping(relaxed)) == 1


def test_cert_reqs_none_skips_verification(tls_server: EmbeddedServer, ping: Any) -> None:
    config = PoolConfig.from_url(tls_url(tls_server), ssl_cert_reqs="none", **FAST)
    assert len(ping(config)) == 1


def test_mutual_tls_with_client_certificate(mtls_server: EmbeddedServer, ping: Any) -> None:
    files = mtls_server.tls_files
    config = PoolConfig.from_url(
        tls_url(mtls_server),
        ssl_ca_certs=files.ca_file,
        ssl_certfile=files.client_cert_file,
        ssl_keyfile=files.client_key_file,
    )
    assert len(ping(config)) == 1


def test_mutual_tls_without_client_certificate_says_one_is_required(
    mtls_server: EmbeddedServer, ping: Any
) -> None:
    config = PoolConfig.from_url(
        tls_url(mtls_server), ssl_ca_certs=mtls_server.tls_files.ca_file, **FAST
    )
    with pytest.raises(TLSError) as caught:
        ping(config)
    assert "requires a client certificate" in str(caught.value)
    assert "ssl_certfile and ssl_keyfile" in str(caught.value)


def test_mutual_tls_with_a_certificate_from_another_ca_is_rejected(
    mtls_server: EmbeddedServer, tmp_path: Path, ping: Any
) -> None:
    import trustme

    stranger = trustme.CA().issue_cert("stranger")
    cert, key = tmp_path / "stranger.pem", tmp_path / "stranger.key"
    stranger.cert_chain_pems[0].write_to_path(str(cert))
    stranger.private_key_pem.write_to_path(str(key))
    config = PoolConfig.from_url(
        tls_url(mtls_server),
        ssl_ca_certs=mtls_server.tls_files.ca_file,
        ssl_certfile=str(cert),
        ssl_keyfile=str(key),
        **FAST,
    )
    with pytest.raises(TLSError) as caught:
        ping(config)
    assert re.search(r"reject(ed|s) the client certificate", str(caught.value))
    assert str(cert) in str(caught.value)


def test_a_hung_tls_server_is_not_blamed_on_plaintext(
    ferrite_server_factory: ServerFactory, ping: Any
) -> None:
    server = ferrite_server_factory(tls=True)
    config = PoolConfig.from_url(server.url, socket_connect_timeout=0.3)
    server.pause()
    try:
        with pytest.raises(TLSError) as caught:
            ping(config)
    finally:
        server.resume()
    assert "hung or overloaded" in str(caught.value)
    assert caught.value.permanent is False


def test_no_common_tls_version_is_explained(
    ferrite_server_factory: ServerFactory, ping: Any
) -> None:
    server = ferrite_server_factory(tls=True, extra_config={"tls-protocols": "TLSv1.2"})
    config = PoolConfig.from_url(server.url, ssl_min_version="TLSv1_3", **FAST)
    with pytest.raises(TLSError) as caught:
        ping(config)
    assert "share no TLS version" in str(caught.value)
    assert "ssl_min_version" in str(caught.value)


def test_plaintext_client_on_the_tls_port_is_told_to_use_rediss(
    tls_server: EmbeddedServer, ping: Any
) -> None:
    config = PoolConfig.from_url(f"redis://127.0.0.1:{tls_server.port}/0", **FAST)
    with pytest.raises(TLSError) as caught:
        ping(config)
    assert "use a rediss:// URL" in str(caught.value)
    assert isinstance(caught.value, redis.ConnectionError)


def test_tls_client_on_a_plaintext_port_never_falls_back(
    ferrite_server: EmbeddedServer, cert_files: Any, ping: Any
) -> None:
    config = PoolConfig.from_url(
        f"rediss://127.0.0.1:{ferrite_server.port}/0",
        ssl_ca_certs=str(cert_files.ca),
        socket_connect_timeout=0.3,
    )
    started = time.monotonic()
    with pytest.raises(TLSError) as caught:
        ping(config)
    assert time.monotonic() - started < 2.0
    assert "TLS handshake did not complete" in str(caught.value)
    assert "use a redis:// URL" in str(caught.value)
    assert caught.value.permanent is False


def test_tls_errors_are_ferrite_and_redis_connection_errors(
    tls_server: EmbeddedServer, cert_files: Any
) -> None:
    config = PoolConfig.from_url(tls_url(tls_server), ssl_ca_certs=str(cert_files.other_ca), **FAST)
    client = redis.Redis(connection_pool=redis.ConnectionPool(**connection_kwargs(config)))
    with pytest.raises(redis.ConnectionError) as caught:
        client.ping()
    assert isinstance(caught.value, FerriteError)
    assert isinstance(caught.value.__cause__, redis.ConnectionError)
    client.close()


def test_password_protected_tls_server_through_a_redis_client(
    ferrite_server_factory: ServerFactory,
) -> None:
    server = ferrite_server_factory(tls=True, username="app", password="p@ss word")
    config = PoolConfig.from_url(server.url, decode_responses=True)
    assert config.username == "app"
    assert config.password == "p@ss word"
    client = redis.Redis(connection_pool=redis.ConnectionPool(**connection_kwargs(config)))
    try:
        client.set("greeting", "hello")
        assert client.get("greeting") == "hello"
        assert client.acl_whoami() == "app"
    finally:
        client.close()
