"""`make demo`'s showcase, run as a user runs it: a real uvicorn process on its own embedded
server, serving FastAPI at /, Flask at /flask/ and Django at /django/, stopped by Ctrl-C
(SIGINT) with no server process left behind."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ferrite_integrations import get_manager
from ferrite_integrations.testing import EmbeddedServer

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")
pytest.importorskip("a2wsgi")
pytest.importorskip("flask")
pytest.importorskip("django")
asgi_lifespan = pytest.importorskip("asgi_lifespan")

MAIN = Path(__file__).resolve().parents[1] / "example_projects" / "showcase" / "main.py"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class Showcase:
    def __init__(self, process: subprocess.Popen[str], base: str, server_pid: int) -> None:
        self.process, self.base, self.server_pid = process, base, server_pid


@pytest.fixture
def showcase() -> Iterator[Showcase]:
    env = {key: value for key, value in os.environ.items() if key != "FERRITE_URL"}
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(MAIN), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        banner = ""
        assert process.stdout is not None
        while "showcase" not in banner:
            line = process.stdout.readline()
            assert line, f"the showcase exited before serving:\n{banner}"
            banner += line
        server_pid = int(re.search(r"pid (\d+)", banner).group(1))  # type: ignore[union-attr]
        base = f"http://127.0.0.1:{port}"
        assert f"{base}/" in banner
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(f"{base}/health/ferrite", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "uvicorn never accepted a connection"
                time.sleep(0.05)
        yield Showcase(process, base, server_pid)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def test_the_showcase_serves_all_three_frameworks_and_stops_cleanly(showcase: Showcase) -> None:
    base = showcase.base
    with httpx.Client(base_url=base, timeout=10) as http:
        page = http.get("/")
        assert page.status_code == 200
        assert "showcase/stats" in page.text

        assert http.put("/items/7", json={"name": "mug", "price": 9.5}).status_code == 200
        item = http.get("/items/7").json()
        assert (item["name"], item["views"]) == ("mug", 1)

        first, second = http.get("/flask/"), http.get("/flask/")
        assert "1 visits" in first.text
        assert "2 visits" in second.text
        assert 'href="/flask/last"' in second.text  # links follow the mount prefix

        django_page = http.get("/django/")
        assert django_page.status_code == 200
        assert "/django/" in django_page.text
        assert http.get("/django/health/ferrite/").json()["status"] == "up"

        stats = http.get("/showcase/stats").json()
        assert stats["status"] == "up"
        aliases = {pool["alias"] for pool in stats["pools"]}
        assert "default" in aliases
        assert any(alias.startswith("django") for alias in aliases)
        default = next(pool for pool in stats["pools"] if pool["alias"] == "default")
        assert default["sync"] is not None  # Flask's requests ran on the shared sync pool
        assert default["async"]  # FastAPI's on the async one

        compared = http.post("/showcase/compare").json()
        assert compared["without"]["round_trips_per_view"] == 10
        assert compared["with"]["round_trips_per_view"] == 4
        assert compared["with"]["last_result"][0] == "ferrite mug"
        assert http.post("/showcase/compare?hop_ms=99").status_code == 422

    showcase.process.send_signal(signal.SIGINT)
    output, _ = showcase.process.communicate(timeout=30)
    assert showcase.process.returncode == 0, output
    assert "Traceback" not in output
    deadline = time.monotonic() + 5
    while alive(showcase.server_pid):
        assert time.monotonic() < deadline, "the embedded server outlived the showcase"
        time.sleep(0.05)


@pytest.mark.asyncio
async def test_concurrent_comparisons_each_count_only_their_own_round_trips(
    server: EmbeddedServer,
) -> None:
    import asyncio

    from fastapi import FastAPI

    from example_projects.showcase.app import COMPARE_ALIAS, add_comparison
    from ferrite_integrations.fastapi import ferrite_lifespan

    app = FastAPI(lifespan=ferrite_lifespan(server.url, client_name="showcase-test"))
    add_comparison(app, server.url)
    async with asgi_lifespan.LifespanManager(app) as running:
        transport = httpx.ASGITransport(app=running.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://showcase") as http:
            clicks = [http.post("/showcase/compare?hop_ms=1", timeout=30) for _ in range(2)]
            results = [response.json() for response in await asyncio.gather(*clicks)]
    for result in results:
        assert result["without"]["round_trips_per_view"] == 10
        assert result["with"]["round_trips_per_view"] == 4
    assert COMPARE_ALIAS not in get_manager().aliases()  # the app took its pools with it


def test_the_showcase_with_an_unreachable_server_says_so_in_one_line() -> None:
    url = f"redis://:secret@127.0.0.1:{free_port()}/0"  # nothing listens there
    done = subprocess.run(
        [sys.executable, str(MAIN), "--port", str(free_port())],
        check=False,
        capture_output=True,
        text=True,
        env={**os.environ, "FERRITE_URL": url},
        timeout=30,
    )
    assert done.returncode == 1
    assert done.stdout == ""  # no banner promising a page that will never serve
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("error: cannot reach the server at redis://:***@127.0.0.1:")
    assert "FERRITE_URL" in line
    assert "secret" not in line
