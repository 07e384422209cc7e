"""Flask-Caching's ``CACHE_OPTIONS`` as a user gets them wrong: ``ignore_errors`` takes only
a real boolean, and a bad ``serializer``/``compressor`` is a ``ConfigError`` naming the key
when the cache is set up, not a ``TypeError`` or a failure on first use."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from flask import Flask

pytest.importorskip("flask_caching")

from flask_caching import Cache

from ferrite_integrations import ConfigError, PoolConfig, get_manager
from ferrite_integrations.flask import FerriteCache
from ferrite_integrations.testing import EmbeddedServer
from tests.flask.conftest import DEAD_URL

BACKEND = "ferrite_integrations.flask.FerriteCache"


def make_cache(url: str, **options: Any) -> Cache:
    app = Flask(__name__)
    config = {
        "CACHE_TYPE": BACKEND,
        "CACHE_FERRITE_URL": url,
        "CACHE_OPTIONS": {"monitor": False, "retries": 0, **options},
    }
    return Cache(app, config=config)


@pytest.mark.parametrize("value", ["false", "true", 5, 0, None])
def test_ignore_errors_must_be_a_bool(value: Any) -> None:
    with pytest.raises(ConfigError) as caught:
        make_cache(DEAD_URL, ignore_errors=value)
    message = str(caught.value)
    assert message.startswith("CACHE_OPTIONS: Option 'ignore_errors' must be True or False")
    assert f"got {value!r} ({type(value).__name__})" in message
    assert "Use True or False" in message
    if isinstance(value, str):  # as read from the environment: how to load it as a bool
        assert "from_prefixed_env()" in message


def test_ignore_errors_must_be_a_bool_when_the_cache_is_built_directly(
    server: EmbeddedServer,
) -> None:
    alias = get_manager().alias_for(PoolConfig.from_url(server.url, monitor=False), "flask-test")
    with pytest.raises(ConfigError, match=r"Option 'ignore_errors' must be True or False"):
        FerriteCache(alias, ignore_errors="false")


def test_ignore_errors_false_raises_and_true_misses(ferrite_server_factory: Any) -> None:
    server = ferrite_server_factory()
    strict, lenient = make_cache(server.url), make_cache(server.url, ignore_errors=True)
    server.stop()
    with strict.app.app_context(), pytest.raises(redis.ConnectionError):
        strict.get("k")
    with lenient.app.app_context():
        assert lenient.get("k") is None


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"serializer": 5}, "CACHE_OPTIONS: Option 'serializer' must be one of"),
        ({"compressor": 5}, "CACHE_OPTIONS: Option 'compressor' must be one of"),
        ({"serializer": "os.path"}, r"'os\.path' has no dumps\(\) and loads\(\)"),
        ({"compressor": "json.JSONDecoder"}, r"has no compress\(\) and decompress\(\)"),
    ],
)
def test_bad_serializers_and_compressors_fail_at_setup(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        make_cache(DEAD_URL, **options)
