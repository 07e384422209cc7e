"""FerriteCache over TLS (``rediss://``) and mutual TLS against real TLS servers: the sync
and async cache API, Django settings and requests, and system checks for TLS files."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from django.core.cache import caches
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from ferrite_integrations.django import FerriteCache
from ferrite_integrations.testing import EmbeddedServer
from tests.django.conftest import BACKEND

FAST = {"socket_connect_timeout": 1.0, "socket_timeout": 2.0}


@pytest.fixture(scope="module")
def mtls_server(ferrite_tls_server: EmbeddedServer) -> Iterator[EmbeddedServer]:
    # Depending on ferrite_tls_server gives this fixture its skip-or-fail rule for TLS.
    with EmbeddedServer(mutual_tls=True, binary=ferrite_tls_server.binary) as server:
        yield server


def tls_location(server: EmbeddedServer) -> str:
    return f"rediss://127.0.0.1:{server.port}/0"


def exercise_sync(cache: FerriteCache) -> None:
    cache.clear()
    cache.set("k", {"over": "tls"})
    assert cache.get("k") == {"over": "tls"}
    assert cache.add("k", "again") is False
    assert cache.set_many({"n": 1, "m": "two"}) == []
    assert cache.incr("n", 4) == 5
    assert cache.get_many(["k", "n", "m", "absent"]) == {"k": {"over": "tls"}, "n": 5, "m": "two"}
    assert cache.touch("k", 60) is True
    assert cache.has_key("m") is True
    assert cache.delete("m") is True
    assert cache.get("m", "gone") == "gone"


async def exercise_async(cache: FerriteCache) -> None:
    await cache.aclear()
    await cache.aset("ak", [1, 2])
    assert await cache.aget("ak") == [1, 2]
    assert await cache.aadd("ak", "again") is False
    assert await cache.aset_many({"an": 10}) == []
    assert await cache.aincr("an", -3) == 7
    assert await cache.aget_many(["ak", "an", "absent"]) == {"ak": [1, 2], "an": 7}
    assert await cache.atouch("ak", 60) is True
    assert await cache.ahas_key("an") is True
    assert await cache.adelete("an") is True
    assert await cache.aget("an", "gone") == "gone"
    assert await cache.aget_or_set("computed", lambda: "value") == "value"


def test_cache_on_a_rediss_url_with_the_ca_in_the_url(ferrite_tls_server: EmbeddedServer) -> None:
    assert ferrite_tls_server.url.startswith("rediss://")
    cache = FerriteCache(ferrite_tls_server.url, {"OPTIONS": FAST, "KEY_PREFIX": "tls"})
    exercise_sync(cache)
    asyncio.run(exercise_async(cache))
    assert cache.get("ak") == [1, 2]  # sync and async share the data


def test_cache_on_tls_configured_in_django_settings(
    ferrite_tls_server: EmbeddedServer, settings: Any, client: Any
) -> None:
    files = ferrite_tls_server.tls_files
    settings.CACHES = {
        "default": {
            "BACKEND": BACKEND,
            "LOCATION": tls_location(ferrite_tls_server),
            "OPTIONS": {**FAST, "ssl_ca_certs": files.ca_file, "compressor": "zlib"},
            "KEY_PREFIX": "tls-settings",
        }
    }
    cache = caches["default"]
    exercise_sync(cache)
    asyncio.run(exercise_async(cache))
    # A request through Django's stack: the counter view and a cached session, over TLS.
    assert [client.get("/counter/").json()["hits"] for _ in range(2)] == [1, 2]
    assert [client.get("/visits/").json()["visits"] for _ in range(2)] == [1, 2]
    raw = redis.Redis(**ferrite_tls_server.redis_kwargs())
    assert raw.get(cache.make_key("hits")) == b"2"
    raw.close()


def test_mutual_tls_with_the_client_certificate_in_options(mtls_server: EmbeddedServer) -> None:
    files = mtls_server.tls_files
    options = {
        **FAST,
        "ssl_ca_certs": files.ca_file,
        "ssl_certfile": files.client_cert_file,
        "ssl_keyfile": files.client_key_file,
        "serializer": "json",
    }
    cache = FerriteCache(tls_location(mtls_server), {"OPTIONS": options})
    exercise_sync(cache)
    asyncio.run(exercise_async(cache))


def test_mutual_tls_refuses_a_cache_without_a_client_certificate(
    mtls_server: EmbeddedServer,
) -> None:
    options = {**FAST, "ssl_ca_certs": mtls_server.tls_files.ca_file}
    cache = FerriteCache(tls_location(mtls_server), {"OPTIONS": options})
    with pytest.raises(redis.ConnectionError):
        cache.set("k", 1)
    with pytest.raises(redis.ConnectionError):
        asyncio.run(cache.aget("k"))


def test_a_cache_that_trusts_another_ca_does_not_connect(
    ferrite_tls_server: EmbeddedServer, mtls_server: EmbeddedServer
) -> None:
    # mtls_server's CA did not sign ferrite_tls_server's certificate.
    options = {**FAST, "ssl_ca_certs": mtls_server.tls_files.ca_file}
    cache = FerriteCache(tls_location(ferrite_tls_server), {"OPTIONS": options})
    with pytest.raises(redis.ConnectionError, match=r"(?i)certificate"):
        cache.get("k")


@pytest.mark.parametrize("option", ["ssl_ca_certs", "ssl_certfile", "ssl_keyfile"])
def test_system_check_names_a_missing_tls_file(
    settings: Any, tmp_path: Path, ferrite_tls_server: EmbeddedServer, option: str
) -> None:
    files = ferrite_tls_server.tls_files
    options = {
        "ssl_ca_certs": files.ca_file,
        "ssl_certfile": files.client_cert_file,
        "ssl_keyfile": files.client_key_file,
        option: str(tmp_path / "missing.pem"),
    }
    settings.CACHES = {
        "default": {"BACKEND": BACKEND, "LOCATION": "rediss://cache.example:6380/0"},
        "tls": {
            "BACKEND": BACKEND,
            "LOCATION": "rediss://cache.example:6380/0",
            "OPTIONS": options,
        },
    }
    with pytest.raises(SystemCheckError) as raised:
        call_command("check")
    message = str(raised.value)
    assert "ferrite.E001" in message
    assert "CACHES['tls']" in message
    assert f"Option {option!r}: no such file" in message
    assert "missing.pem" in message
    assert "CACHES['default']" not in message
