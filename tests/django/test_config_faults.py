"""Bad ``CACHES`` entries as a user meets them: the health view (503, the cache and its
error named, no password), strict ``ignore_exceptions``, system checks that report
(``ferrite.E001``) instead of crashing, and ``manage.py ferrite`` with CACHES names."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from typing import Any

import pytest
from django.core.cache import caches
from django.core.management import call_command
from django.core.management.base import CommandError, SystemCheckError

from ferrite_integrations import ConfigError, ValueCodec
from ferrite_integrations.django import FerriteCache
from ferrite_integrations.django.checks import check_caches
from ferrite_integrations.django.views import health
from ferrite_integrations.testing import EmbeddedServer
from tests.django.conftest import BACKEND

SECRET = "hunter2-not-for-eyes"
DEAD = "redis://127.0.0.1:1/0"  # nothing listens there; never 6379


class ExplodingCache(FerriteCache):
    """A backend whose construction fails with something other than a ConfigError (a fake:
    no real entry is known to do that once OPTIONS is a dict), its message holding the
    LOCATION's password."""

    def __init__(self, server: Any, params: dict[str, Any]) -> None:
        raise RuntimeError(f"cannot start on {server}")


EXPLODING = f"{__name__}.ExplodingCache"


def entry(location: Any = DEAD, **fields: Any) -> dict[str, Any]:
    return {"BACKEND": BACKEND, "LOCATION": location, **fields}


# -- 1. the health view ---------------------------------------------------------------------


def test_health_names_a_misconfigured_cache_answers_503_and_reports_the_good_pools(
    client: Any, settings: Any, ferrite_server: EmbeddedServer
) -> None:
    settings.CACHES = {
        "default": entry(ferrite_server.url),
        "broken": entry(f"redis://:{SECRET}@127.0.0.1:1/0", OPTIONS={"max_conections": 5}),
    }
    # Through Django's stack, PipelineMiddleware included (the test settings have it).
    response = client.get("/health/ferrite/")
    assert response.status_code == 503
    assert response["Cache-Control"] == "no-store"  # never served from a cache
    report = response.json()
    assert report["status"] == "down"
    assert "Unknown option 'max_conections'" in report["misconfigured"]["broken"]
    assert list(report["misconfigured"]) == ["broken"]
    assert report["pools"][caches["default"].pool_alias]["status"] == "up"
    assert SECRET not in response.content.decode()


@pytest.mark.parametrize("options", [None, ["max_connections", 5], "max_connections=5"])
def test_health_reports_options_that_are_not_a_dict(
    rf: Any, settings: Any, ferrite_server: EmbeddedServer, options: Any
) -> None:
    settings.CACHES = {"default": entry(ferrite_server.url), "broken": entry(OPTIONS=options)}
    response = health(rf.get("/"))
    assert response.status_code == 503
    report = json.loads(response.content)
    assert "OPTIONS must be a dict" in report["misconfigured"]["broken"]
    assert report["pools"][caches["default"].pool_alias]["status"] == "up"


def test_health_reports_any_other_failure_to_build_a_cache_without_its_password(
    rf: Any, settings: Any, ferrite_server: EmbeddedServer
) -> None:
    settings.CACHES = {
        "default": entry(ferrite_server.url),
        "odd": {"BACKEND": EXPLODING, "LOCATION": f"redis://:{SECRET}@127.0.0.1:1/0"},
    }
    response = health(rf.get("/"))
    assert response.status_code == 503
    text = response.content.decode()
    assert "RuntimeError: cannot start on redis://:***@127.0.0.1:1/0" in text
    assert SECRET not in text


HEALTH_PROBE = """
import json, sys
import django
from django.conf import settings
settings.configure(
    ROOT_URLCONF="ferrite_integrations.django.urls",
    ALLOWED_HOSTS=["testserver"],
    CACHES=json.loads(sys.argv[1]),
)
django.setup()
from django.test import Client
response = Client().get("/")
print(json.dumps([response.status_code, response.json()]))
"""


def probe_health(caches_setting: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """The health view in a process of its own (its manager holds no other test's pools)."""
    done = subprocess.run(
        [sys.executable, "-c", HEALTH_PROBE, json.dumps(caches_setting)],
        env={**os.environ, "FERRITE_URL": DEAD},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    status, report = json.loads(done.stdout.strip().splitlines()[-1])
    return status, report


def test_health_with_only_a_misconfigured_cache_is_503_not_up() -> None:
    status, report = probe_health({"default": entry(OPTIONS={"max_conections": 5})})
    assert status == 503
    assert report["status"] == "down"
    assert report["pools"] == {}
    assert "Did you mean 'max_connections'" in report["misconfigured"]["default"]


def test_health_with_no_ferrite_pool_is_503() -> None:
    locmem = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    status, report = probe_health(locmem)
    assert status == 503
    assert report["status"] == "down"
    assert "no Ferrite pool is configured" in report["error"]


# -- 2. ignore_exceptions takes only a real boolean --------------------------------------------


@pytest.mark.parametrize("value", ["false", "true", 5, 0, None])
def test_ignore_exceptions_must_be_a_bool(value: Any, settings: Any) -> None:
    cache = FerriteCache(DEAD, {"OPTIONS": {"ignore_exceptions": value}})
    error = cache.config_error
    assert isinstance(error, ConfigError)
    assert error.option == "ignore_exceptions"
    assert f"must be True or False (server errors become cache misses); got {value!r}" in str(error)
    with pytest.raises(ConfigError, match="ignore_exceptions"):
        cache.get("k")  # on first use, not a silent miss with the server down
    settings.CACHES = {"default": entry(OPTIONS={"ignore_exceptions": value})}
    with pytest.raises(SystemCheckError, match=r"ferrite\.E001.*'ignore_exceptions'"):
        call_command("check")


@pytest.mark.parametrize("value", [True, False])
def test_ignore_exceptions_takes_true_and_false(value: bool) -> None:
    cache = FerriteCache(DEAD, {"OPTIONS": {"ignore_exceptions": value}})
    assert cache.config_error is None
    assert cache.ignores_exceptions is value


# -- 3. system checks report instead of crashing ----------------------------------------------

BAD_CODECS = [
    ({"serializer": 5}, "Option 'serializer' must be one of 'pickle', 'json', 'msgpack'"),
    ({"compressor": 5}, "Option 'compressor' must be one of 'zlib', 'zstd', 'lz4'"),
    ({"serializer": ["json"]}, "Option 'serializer' must be"),
    ({"serializer": "os.path"}, r"'os\.path' has no dumps\(\) and loads\(\)"),
    ({"serializer": "collections.OrderedDict"}, r"has no dumps\(\) and loads\(\)"),
    ({"compressor": "json.JSONDecoder"}, r"has no compress\(\) and decompress\(\)"),
    ({"serializer": "json.JSONDecodeError"}, "could not be built"),
]


@pytest.mark.parametrize(("options", "message"), BAD_CODECS)
def test_bad_serializers_and_compressors_are_e001(
    settings: Any, options: dict[str, Any], message: str
) -> None:
    settings.CACHES = {"default": entry(OPTIONS=options)}
    errors = check_caches()
    assert [error.id for error in errors] == ["ferrite.E001"]
    assert errors[0].obj == "CACHES['default']"
    with pytest.raises(SystemCheckError, match=rf"ferrite\.E001.*{message}"):
        call_command("check")


@pytest.mark.parametrize(("options", "message"), BAD_CODECS[3:])
def test_a_dotted_codec_without_its_methods_fails_when_configured(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        ValueCodec(options.get("serializer", "pickle"), options.get("compressor"))


@pytest.mark.parametrize("options", [None, [("max_connections", 5)], "max_connections=5"])
def test_options_that_are_not_a_dict_are_e001(settings: Any, options: Any) -> None:
    settings.CACHES = {"default": entry(OPTIONS=options), "good": entry()}
    errors = check_caches()
    assert [(error.id, error.obj) for error in errors] == [("ferrite.E001", "CACHES['default']")]
    assert "OPTIONS must be a dict of options" in errors[0].msg
    assert type(options).__name__ in errors[0].msg
    # What a user runs reports it too (Django's own checks build the cache first), and the
    # cache raises it on first use instead of an AttributeError from deep inside Django.
    with pytest.raises(SystemCheckError, match=r"ferrite\.E001.*OPTIONS must be a dict"):
        call_command("check")
    with pytest.raises(ConfigError, match="OPTIONS must be a dict"):
        FerriteCache(DEAD, {"OPTIONS": options}).get("k")


def test_a_cache_that_fails_to_build_otherwise_is_e001_without_its_password(
    settings: Any,
) -> None:
    settings.CACHES = {"odd": {"BACKEND": EXPLODING, "LOCATION": f"redis://u:{SECRET}@h:1/0"}}
    errors = check_caches()
    assert [(error.id, error.obj) for error in errors] == [("ferrite.E001", "CACHES['odd']")]
    assert "RuntimeError: cannot start on redis://u:***@h:1/0" in errors[0].msg
    assert SECRET not in errors[0].msg


# -- 4. manage.py ferrite ---------------------------------------------------------------------


def test_command_takes_a_caches_name(ferrite_server: EmbeddedServer) -> None:
    alias = caches["default"].pool_alias
    for name in ("default", "other"):  # two CACHES names of one shared pool
        out = io.StringIO()
        call_command("ferrite", "status", alias=name, stdout=out)
        assert out.getvalue().startswith(f"{alias}: up ")
    out = io.StringIO()
    call_command("ferrite", "ping", alias=alias, stdout=out)  # a pool alias still works
    assert out.getvalue().startswith(f"{alias}: PONG in")


def test_command_with_an_unknown_name_lists_the_caches_names() -> None:
    with pytest.raises(CommandError) as caught:
        call_command("ferrite", "status", alias="nosuch", stdout=io.StringIO())
    message = str(caught.value)
    assert "'nosuch'" in message
    assert "'default', 'other'" in message
    assert "manager.configure" not in message


def test_command_reports_a_bad_entry_as_an_error_not_a_traceback(settings: Any) -> None:
    settings.CACHES = {
        "default": entry(f"redis://:{SECRET}@127.0.0.1:1/0", OPTIONS={"max_conections": 5})
    }
    # call_command skips the system checks, as --skip-checks does.
    for alias in (None, "default"):
        with pytest.raises(CommandError) as caught:
            call_command("ferrite", "status", alias=alias, stdout=io.StringIO())
        message = str(caught.value)
        assert message.startswith("CACHES['default']: Unknown option 'max_conections'")
        assert SECRET not in message
    settings.CACHES = {"default": entry(OPTIONS=None)}
    with pytest.raises(CommandError, match=r"CACHES\['default'\]: OPTIONS must be a dict"):
        call_command("ferrite", "status", stdout=io.StringIO())
