"""A real threaded WSGI server under concurrent requests: the server never sees more
connections than ``max_connections``, and every request is answered."""

from __future__ import annotations

import http.client
import threading
from concurrent.futures import ThreadPoolExecutor

from werkzeug.serving import make_server

from ferrite_integrations import get_manager
from ferrite_integrations.flask import Ferrite
from ferrite_integrations.testing import EmbeddedServer
from tests.flask.conftest import AppFactory

REQUESTS = 150
CLIENT_THREADS = 24


def test_concurrent_requests_stay_within_max_connections(
    create_app: AppFactory, ferrite: Ferrite, server: EmbeddedServer, client_name: str
) -> None:
    app = create_app(FERRITE_MAX_CONNECTIONS=3, FERRITE_HEALTH_CHECK_INTERVAL=0)

    @app.get("/<int:n>")
    def work(n: int) -> str:
        ferrite.pipeline.set(f"req:{n}", n)
        ferrite.client.blpop(["nothing-comes"], timeout=0.01)  # holds a connection 10 ms
        return str(int(ferrite.client.get(f"req:{n}")))

    http_server = make_server("127.0.0.1", 0, app, threaded=True)
    serving = threading.Thread(target=http_server.serve_forever, daemon=True)
    serving.start()
    seen: list[int] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            seen.append(server.connected_clients(client_name))
            done.wait(0.005)

    def get(n: int) -> tuple[int, str]:
        connection = http.client.HTTPConnection("127.0.0.1", http_server.port, timeout=30)
        try:
            connection.request("GET", f"/{n}")
            response = connection.getresponse()
            return response.status, response.read().decode()
        finally:
            connection.close()

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        with ThreadPoolExecutor(CLIENT_THREADS) as threads:
            answers = list(threads.map(get, range(REQUESTS)))
    finally:
        done.set()
        sampler.join()
        http_server.shutdown()
        serving.join()
    assert answers == [(200, str(n)) for n in range(REQUESTS)]
    assert max(seen) <= 3
    assert max(seen) >= 2  # the load did contend for the pool
    stats = get_manager().stats(ferrite.state(app).aliases["default"])["sync"]
    assert stats["created"] <= 3
    assert stats["timeouts"] == 0
    assert stats["pipelining"]["commands"] >= 2 * REQUESTS  # writes rode along with reads
