"""example_projects/django_site against an embedded server.

Django's settings can be configured once per process, and this suite's are already, so the
site runs in processes of its own: ``manage.py`` commands, and a probe that drives the
pages with Django's test client, or through an ASGI mount under ``/django`` (a2wsgi, as the
showcase does), then prints what it saw as JSON for the assertions here.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis

from ferrite_integrations.testing import EmbeddedServer

SITE = Path(__file__).resolve().parents[2] / "example_projects" / "django_site"
TIMEOUT = 30

PROBE = r"""
import json, os, re, sys

import django
import redis

os.environ["DJANGO_SETTINGS_MODULE"] = "django_site.settings"
django.setup()  # the ferrite app pre-warms the pool here
from django.test import Client

seen = {}
raw = redis.Redis.from_url(os.environ["FERRITE_URL"])


def page(client, path="/"):
    response = client.get(path)
    text = response.content.decode()
    numbers = {
        name: int(re.search(rf'id="{name}">(\d+)<', text).group(1)) for name in ("hits", "visits")
    }
    built = re.search(r'id="built-at">([^<]+)<', text).group(1)
    links = dict(re.findall(r'<a id="(\w+)" href="([^"]+)"', text))
    return {"status": response.status_code, **numbers, "built_at": built, "links": links}


if sys.argv[1] == "down":
    response = Client().get("/health/ferrite/")
    print(json.dumps({"health": [response.status_code, response.json()]}))
    sys.exit()

seen["prewarmed"] = sum(c["name"] == "django-site" for c in raw.client_list())

if sys.argv[1] == "mounted":
    from a2wsgi import WSGIMiddleware
    from starlette.applications import Starlette
    from starlette.routing import Mount
    from starlette.testclient import TestClient

    from django_site.wsgi import application

    showcase = Starlette(routes=[Mount("/django", app=WSGIMiddleware(application))])
    with TestClient(showcase) as mounted:
        seen["pages"] = [page(mounted, "/django/") for _ in range(2)]
        api = mounted.get(seen["pages"][0]["links"]["api"])
        health = mounted.get(seen["pages"][0]["links"]["health"])
        seen["api"] = [api.status_code, api.json()]
        seen["health"] = health.status_code
    print(json.dumps(seen))
    sys.exit()

alice, bob = Client(), Client()
seen["alice"] = [page(alice) for _ in range(3)]
seen["api"] = alice.get("/api/hits/").json()
forget = alice.post("/forget/")
seen["forget"] = [forget.status_code, forget["Location"]]
seen["alice_after_forget"] = page(alice)
seen["bob"] = page(bob)
seen["session_cookie"] = alice.cookies["sessionid"].value
health = alice.get("/health/ferrite/")
seen["health"] = [health.status_code, health.json()]
seen["keys"] = sorted(key.decode() for key in raw.keys())
seen["hits_on_server"] = raw.get("django_site:1:hits").decode()
print(json.dumps(seen))
"""


def run(args: list[str], url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FERRITE_URL": url}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return subprocess.run(
        [sys.executable, *args],
        cwd=SITE,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def probe(mode: str, url: str) -> dict[str, Any]:
    done = run(["-c", PROBE, mode], url)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.fixture
def site_server(ferrite_server_factory: Any) -> EmbeddedServer:
    server: EmbeddedServer = ferrite_server_factory()
    return server


def test_manage_py_check_and_the_ferrite_command(site_server: EmbeddedServer) -> None:
    check = run(["manage.py", "check"], site_server.url)
    assert check.returncode == 0, check.stderr
    assert "System check identified no issues" in check.stdout
    status = run(["manage.py", "ferrite", "status"], site_server.url)
    assert status.returncode == 0, status.stderr
    assert re.match(rf"django:127\.0\.0\.1:{site_server.port}/0: up ", status.stdout)
    ping = run(["manage.py", "ferrite", "ping"], site_server.url)
    assert ping.returncode == 0, ping.stderr
    assert "PONG in" in ping.stdout


def test_manage_py_check_reports_a_bad_url(site_server: EmbeddedServer) -> None:
    check = run(["manage.py", "check"], "redis://127.0.0.1:notaport/0")
    assert check.returncode != 0
    assert "ferrite.E001" in check.stderr
    assert "CACHES['default']" in check.stderr


def test_the_pages_work(site_server: EmbeddedServer) -> None:
    seen = probe("up", site_server.url)
    assert seen["prewarmed"] == 2  # min_idle, opened by the app at startup

    alice = seen["alice"]
    assert [p["status"] for p in alice] == [200, 200, 200]
    assert [p["hits"] for p in alice] == [1, 2, 3]  # cache.incr
    assert [p["visits"] for p in alice] == [1, 2, 3]  # the cached session survives
    assert len({p["built_at"] for p in alice}) == 1  # the fragment was cached
    assert alice[0]["links"] == {"home": "/", "api": "/api/hits/", "health": "/health/ferrite/"}
    assert seen["api"] == {"hits": 3, "visits": 3}

    assert seen["forget"] == [302, "/"]
    assert seen["alice_after_forget"]["visits"] == 1  # a new, empty session
    assert seen["alice_after_forget"]["hits"] == 4
    assert seen["bob"]["visits"] == 1  # another visitor, another session
    assert seen["bob"]["hits"] == 5
    assert seen["bob"]["built_at"] == alice[0]["built_at"]

    status, report = seen["health"]
    assert status == 200
    assert report["status"] == "up"

    keys = seen["keys"]
    assert seen["hits_on_server"] == "5"
    assert f"django_site:1:django.contrib.sessions.cache{seen['session_cookie']}" in keys
    assert any(key.startswith("django_site:1:template.cache.server_report.") for key in keys)

    raw = redis.Redis(**site_server.redis_kwargs())
    assert raw.get("django_site:1:hits") == b"5"
    raw.close()


def test_the_pages_work_mounted_under_a_prefix(site_server: EmbeddedServer) -> None:
    pytest.importorskip("a2wsgi")
    pytest.importorskip("starlette")
    seen = probe("mounted", site_server.url)
    first, second = seen["pages"]
    assert (first["status"], second["status"]) == (200, 200)
    assert (first["hits"], second["hits"]) == (1, 2)
    assert (first["visits"], second["visits"]) == (1, 2)  # the session cookie works there too
    assert first["built_at"] == second["built_at"]
    # Mounted under /django by an ASGI app (as the showcase does): links follow the prefix.
    assert first["links"] == {
        "home": "/django/",
        "api": "/django/api/hits/",
        "health": "/django/health/ferrite/",
    }
    assert seen["api"] == [200, {"hits": 2, "visits": 2}]
    assert seen["health"] == 200


def test_health_is_503_with_the_server_down(site_server: EmbeddedServer) -> None:
    site_server.stop()
    done = run(["-c", PROBE, "down"], site_server.url)
    assert done.returncode == 0, done.stderr
    assert "Could not pre-warm Ferrite pool" in done.stderr  # logged, not fatal
    status, report = json.loads(done.stdout)["health"]
    assert status == 503
    assert report["status"] == "down"
