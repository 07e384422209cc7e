"""The Flask contract: init_app and app factories, several apps and several extensions in
one process, configuration errors naming the key, lazy pools, pre-warming and closing."""

from __future__ import annotations

import gc
import subprocess
import sys
import threading
import time
from typing import Any

import pytest
import redis
from flask import Flask, copy_current_request_context

from ferrite_integrations import ConfigError, get_manager
from ferrite_integrations.flask import Ferrite
from ferrite_integrations.testing import EmbeddedServer, FaultProxy
from ferrite_integrations.testing.plugin import ServerFactory
from tests.conftest import wait_until
from tests.flask.conftest import AppFactory


def test_one_extension_serves_two_apps_on_their_own_servers(
    ferrite: Ferrite, ferrite_server_factory: ServerFactory
) -> None:
    first, second = ferrite_server_factory(), ferrite_server_factory()

    def create_app(url: str) -> Flask:
        app = Flask(__name__)
        app.config.update(FERRITE_URL=url, FERRITE_MONITOR=False)
        ferrite.init_app(app)

        @app.get("/")
        def index() -> str:
            return str(ferrite.client.incr("hits"))

        return app

    one, two = create_app(first.url), create_app(second.url)
    assert one.test_client().get("/").text == "1"
    assert one.test_client().get("/").text == "2"
    assert two.test_client().get("/").text == "1"
    assert redis.Redis(**first.redis_kwargs()).get("hits") == b"2"
    assert redis.Redis(**second.redis_kwargs()).get("hits") == b"1"
    # per-app state lives in each app, never on the extension
    assert vars(ferrite) == {"config_prefix": "FERRITE"}
    assert one.extensions["ferrite"]["FERRITE"].extension is ferrite
    assert one.extensions["ferrite"]["FERRITE"] is not two.extensions["ferrite"]["FERRITE"]


def test_ferrite_app_argument_registers_at_once(server: EmbeddedServer) -> None:
    app = Flask(__name__)
    app.config.update(FERRITE_URL=server.url, FERRITE_MONITOR=False)
    ferrite = Ferrite(app)
    with app.app_context():
        ferrite.client.set("k", "v")
        assert ferrite.client.get("k") == b"v"


def test_a_second_registration_is_refused_with_a_helpful_error(
    create_app: AppFactory, ferrite: Ferrite
) -> None:
    app = create_app()
    with pytest.raises(ConfigError, match="already registered") as caught:
        ferrite.init_app(app)
    assert "this Ferrite instance" in str(caught.value)
    assert "config_prefix" in str(caught.value)
    with pytest.raises(ConfigError, match="by another instance"):
        Ferrite().init_app(app)


def test_a_second_extension_with_another_prefix_works_beside_the_first(
    create_app: AppFactory, ferrite: Ferrite, server: EmbeddedServer, direct: redis.Redis
) -> None:
    sessions = Ferrite(config_prefix="SESSIONS")
    app = create_app(SESSIONS_URL=f"redis://127.0.0.1:{server.port}/3", SESSIONS_MONITOR=False)
    sessions.init_app(app)

    @app.get("/")
    def index() -> str:
        ferrite.client.set("where", "default")
        sessions.client.set("where", "sessions")
        return "ok"

    assert app.test_client().get("/").status_code == 200
    assert direct.get("where") == b"default"
    assert redis.Redis(**{**server.redis_kwargs(), "db": 3}).get("where") == b"sessions"
    assert set(app.extensions["ferrite"]) == {"FERRITE", "SESSIONS"}


def test_named_pools_from_ferrite_pools(
    create_app: AppFactory, ferrite: Ferrite, server: EmbeddedServer
) -> None:
    app = create_app(
        FERRITE_POOLS={
            "sessions": {"url": f"redis://127.0.0.1:{server.port}/2", "max_connections": 3},
            "jobs": f"redis://127.0.0.1:{server.port}/4",
        }
    )
    with app.app_context():
        ferrite.get_client("sessions").set("s", 1)
        ferrite.get_client("jobs").set("j", 1)
        assert ferrite.pool_names() == ["default", "sessions", "jobs"]
        assert get_manager().config(ferrite.state().aliases["sessions"]).max_connections == 3
        with pytest.raises(KeyError, match="No Ferrite pool named 'nope'"):
            ferrite.get_client("nope")
    assert redis.Redis(**{**server.redis_kwargs(), "db": 2}).get("s") == b"1"
    assert redis.Redis(**{**server.redis_kwargs(), "db": 4}).get("j") == b"1"


@pytest.mark.parametrize(
    ("config", "key", "words"),
    [
        ({"FERRITE_MAX_CONNECTIONS": 0}, "FERRITE_MAX_CONNECTIONS", "integer >= 1"),
        ({"FERRITE_MAX_CONNECTIONS": "20"}, "FERRITE_MAX_CONNECTIONS", "from_prefixed_env"),
        ({"FERRITE_SOCKET_TIMEOUT": -1}, "FERRITE_SOCKET_TIMEOUT", "number > 0"),
        ({"FERRITE_MAX_CONECTIONS": 5}, "FERRITE_MAX_CONECTIONS", "FERRITE_MAX_CONNECTIONS"),
        ({"FERRITE_URL": "http://cache:6379"}, "FERRITE_URL", "rediss://"),
        ({"FERRITE_URL": 6379}, "FERRITE_URL", "URL string"),
        (
            {"FERRITE_URL": "redis://h/0?max_connections=3", "FERRITE_MAX_CONNECTIONS": 4},
            "FERRITE_MAX_CONNECTIONS",
            "given twice",
        ),
        ({"FERRITE_SSL_CA_CERTS": "/no/such/ca.pem"}, "FERRITE_SSL_CA_CERTS", "rediss://"),
        ({"FERRITE_POOLS": ["sessions"]}, "FERRITE_POOLS", "dict of pool name"),
        ({"FERRITE_POOLS": {"default": "redis://h/1"}}, "FERRITE_POOLS", "other than 'default'"),
        ({"FERRITE_POOLS": {"s": {"max_connections": 2}}}, "FERRITE_POOLS", "needs a 'url'"),
        (
            {"FERRITE_POOLS": {"s": {"url": "redis://h/1", "pool_size": 2}}},
            "FERRITE_POOLS['s']['pool_size']",
            "max_connections",
        ),
        ({"FERRITE_HEALTH_URL": "health"}, "FERRITE_HEALTH_URL", "starting with '/'"),
    ],
)
def test_bad_config_raises_at_init_app_naming_the_key(
    create_app: AppFactory, config: dict[str, Any], key: str, words: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        create_app(**config)
    message = str(caught.value)
    assert key in message
    assert words in message
    assert caught.value.__cause__ is None  # a message, not a chain of library tracebacks


def test_a_fixed_config_can_be_registered_after_an_error(
    create_app: AppFactory, ferrite: Ferrite
) -> None:
    app = Flask(__name__)
    app.config.update(FERRITE_MAX_CONNECTIONS=0, FERRITE_MONITOR=False)
    with pytest.raises(ConfigError):
        ferrite.init_app(app)
    app.config["FERRITE_MAX_CONNECTIONS"] = 4
    ferrite.init_app(app)
    assert ferrite.state(app).configs["default"].max_connections == 4


def test_keys_of_a_longer_prefix_are_not_taken_for_typos(create_app: AppFactory) -> None:
    app = create_app(FERRITE_CACHE_URL="redis://elsewhere:6379/0", FERRITE_CACHE_MAX_CONNECTIONS=2)
    other = Ferrite(config_prefix="FERRITE_CACHE")
    other.init_app(app)
    assert other.state(app).configs["default"].host == "elsewhere"


def test_passwords_stay_out_of_errors(create_app: AppFactory) -> None:
    with pytest.raises(ConfigError) as caught:
        create_app(FERRITE_URL="redis://:hunter2@cache:6379/0", FERRITE_MAX_CONNECTIONS=-3)
    assert "hunter2" not in str(caught.value)


def test_use_outside_an_app_context_or_an_app_explains_what_to_do(
    create_app: AppFactory, ferrite: Ferrite
) -> None:
    create_app()
    with pytest.raises(RuntimeError, match="application context"):
        ferrite.client  # noqa: B018
    stranger = Flask("stranger")
    with stranger.app_context(), pytest.raises(RuntimeError, match="init_app"):
        ferrite.client  # noqa: B018


def test_init_app_opens_no_connection_and_the_first_request_prewarms(
    create_app: AppFactory, ferrite: Ferrite, server: EmbeddedServer, client_name: str
) -> None:
    app = create_app(FERRITE_MIN_IDLE=2)
    alias = ferrite.state(app).aliases["default"]
    # safe before a fork (gunicorn --preload): no pool object, no socket
    assert get_manager().stats(alias)["sync"] is None
    assert server.connected_clients(client_name) == 0

    @app.get("/")
    def index() -> str:
        return "ok"

    assert app.test_client().get("/").text == "ok"
    wait_until(lambda: server.connected_clients(client_name) == 2)  # warmed in the background


def test_the_first_request_never_waits_for_warming_a_hung_server(
    ferrite: Ferrite, proxy: FaultProxy
) -> None:
    app = Flask(__name__)
    app.config.update(
        FERRITE_URL=proxy.url,
        FERRITE_MIN_IDLE=3,
        FERRITE_MONITOR=False,
        FERRITE_SOCKET_TIMEOUT=1.0,
        FERRITE_HEALTH_TIMEOUT=0.05,
        FERRITE_RETRIES=0,
        FERRITE_HEALTH_URL="/health",
    )
    ferrite.init_app(app)
    proxy.blackhole()
    started = time.monotonic()
    response = app.test_client().get("/health")
    # before: 3 connections x socket_timeout (3 s) before the endpoint even ran
    assert time.monotonic() - started < 0.6
    assert response.status_code == 503


def test_warm_opens_min_idle_connections_now(
    create_app: AppFactory, ferrite: Ferrite, server: EmbeddedServer, client_name: str
) -> None:
    app = create_app(FERRITE_MIN_IDLE=3)
    assert ferrite.warm(app) == {"default": 3}
    assert server.connected_clients(client_name) == 3


def test_pools_are_closed_when_the_app_goes_away(
    create_app: AppFactory, ferrite: Ferrite, server: EmbeddedServer, client_name: str
) -> None:
    app = create_app(FERRITE_MIN_IDLE=2)
    ferrite.warm(app)
    assert server.connected_clients(client_name) == 2
    ferrite.close(app)
    wait_until(lambda: server.connected_clients(client_name) == 0)

    app = create_app(FERRITE_MIN_IDLE=2)
    ferrite.warm(app)
    del app
    gc.collect()
    wait_until(lambda: server.connected_clients(client_name) == 0)


def test_a_pool_shared_by_two_apps_stays_open_while_one_lives(
    create_app: AppFactory, ferrite: Ferrite, server: EmbeddedServer, client_name: str
) -> None:
    keeper, leaver = create_app(FERRITE_MIN_IDLE=2), create_app(FERRITE_MIN_IDLE=2)
    assert ferrite.state(keeper).aliases == ferrite.state(leaver).aliases  # one pool
    ferrite.warm(keeper)
    del leaver
    gc.collect()
    assert server.connected_clients(client_name) == 2
    with keeper.app_context():
        assert ferrite.client.ping()


def test_tls_server_end_to_end(
    ferrite: Ferrite, ferrite_tls_server: EmbeddedServer, client_name: str
) -> None:
    app = Flask(__name__)
    app.config.update(
        FERRITE_URL=ferrite_tls_server.url, FERRITE_CLIENT_NAME=client_name, FERRITE_MONITOR=False
    )
    assert app.config["FERRITE_URL"].startswith("rediss://")
    ferrite.init_app(app)

    @app.get("/")
    def index() -> str:
        ferrite.pipeline.set("tls-key", "over TLS")
        return ferrite.client.get("tls-key").decode()

    assert app.test_client().get("/").text == "over TLS"
    assert ferrite_tls_server.connected_clients(client_name) >= 1


def test_tls_without_a_trusted_ca_fails_with_a_tls_error(
    ferrite: Ferrite, ferrite_tls_server: EmbeddedServer, client_name: str
) -> None:
    app = Flask(__name__)
    app.config.update(
        FERRITE_URL=f"rediss://127.0.0.1:{ferrite_tls_server.port}/0",
        FERRITE_CLIENT_NAME=client_name,
        FERRITE_MONITOR=False,
        FERRITE_RETRIES=0,
    )
    ferrite.init_app(app)
    with app.app_context(), pytest.raises(redis.ConnectionError, match=r"(?i)certificate"):
        ferrite.client.ping()


def test_the_monitor_does_not_reopen_the_pools_of_a_collected_or_closed_app(
    ferrite: Ferrite, server: EmbeddedServer, client_name: str
) -> None:
    def create_app() -> Flask:
        app = Flask(__name__)
        app.config.update(
            FERRITE_URL=server.url,
            FERRITE_CLIENT_NAME=client_name,
            FERRITE_MIN_IDLE=2,
            FERRITE_HEALTH_CHECK_INTERVAL=0.02,
        )
        ferrite.init_app(app)
        return app

    app = create_app()
    app.test_client().get("/")  # starts the monitor and the warming
    wait_until(lambda: server.connected_clients(client_name) == 2)
    alias = ferrite.state(app).aliases["default"]
    del app
    gc.collect()
    wait_until(lambda: server.connected_clients(client_name) == 0)
    time.sleep(0.15)  # several monitor rounds: before, they reopened min_idle
    assert server.connected_clients(client_name) == 0
    assert alias not in get_manager().aliases()

    app = create_app()
    app.test_client().get("/")
    wait_until(lambda: server.connected_clients(client_name) == 2)
    ferrite.close(app)
    wait_until(lambda: server.connected_clients(client_name) == 0)
    time.sleep(0.15)
    assert server.connected_clients(client_name) == 0
    # used again after close: the pools come back, maintained again (3 connections when the
    # warming ran while the ping held one: min_idle counts idle connections)
    app.test_client().get("/")
    with app.app_context():
        assert ferrite.client.ping()
    wait_until(lambda: server.connected_clients(client_name) >= 2)
    ferrite.close(app)


def test_queued_writes_of_a_context_never_popped_are_sent_at_exit(
    server: EmbeddedServer, direct: redis.Redis
) -> None:
    script = (
        "import sys\n"
        "from flask import Flask\n"
        "from ferrite_integrations.flask import Ferrite\n"
        "app = Flask('script')\n"
        "app.config.update(FERRITE_URL=sys.argv[1], FERRITE_MONITOR=False)\n"
        "ferrite = Ferrite(app)\n"
        "app.app_context().push()\n"
        "ferrite.pipeline.set('script_write', 1)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, server.url],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert direct.get("script_write") == b"1"  # before: dropped silently
    assert "sending 1 deferred command(s)" in result.stderr


def test_a_copy_of_the_request_in_a_thread_reads_the_requests_writes(
    create_app: AppFactory, ferrite: Ferrite
) -> None:
    app = create_app()
    seen: dict[str, Any] = {}

    @app.get("/")
    def index() -> str:
        ferrite.pipeline.set("x", "from-the-view")

        @copy_current_request_context
        def worker() -> None:
            seen["read"] = ferrite.client.get("x")  # before: None (the write still queued)
            seen["joined"] = ferrite.pipeline.set("y", "from-the-worker")

        thread = threading.Thread(target=worker)
        thread.start()
        thread.join()
        return "ok"

    assert app.test_client().get("/").text == "ok"
    assert seen["read"] == b"from-the-view"
    assert seen["joined"].result() is True  # sent with the request's queue
    with app.app_context():
        assert ferrite.client.get("y") == b"from-the-worker"


@pytest.mark.parametrize(
    ("config", "key", "hinted"),
    [
        ({"FERRITE_MAX_CONNECTIONS": "20"}, "FERRITE_MAX_CONNECTIONS", True),
        ({"FERRITE_SSL_CERT_REQS": "sometimes"}, "FERRITE_SSL_CERT_REQS", False),
        ({"FERRITE_URL": "redis://h:1/0?max_connections=abc"}, "FERRITE_URL", False),
    ],
)
def test_config_errors_name_where_the_value_came_from(
    create_app: AppFactory, config: dict[str, Any], key: str, hinted: bool
) -> None:
    with pytest.raises(ConfigError) as caught:
        create_app(**config)
    message = str(caught.value)
    assert message.startswith(f"{key}:")
    assert ("from_prefixed_env" in message) is hinted


def test_a_number_for_a_name_or_a_secret_is_its_text(
    create_app: AppFactory, ferrite: Ferrite
) -> None:
    app = create_app(FERRITE_PASSWORD=12345, FERRITE_CLIENT_NAME=42)  # from_prefixed_env()
    config = ferrite.state(app).configs["default"]
    assert (config.password, config.client_name) == ("12345", "42")


def test_a_url_given_as_a_pool_name_is_not_echoed(create_app: AppFactory) -> None:
    with pytest.raises(ConfigError) as caught:
        create_app(FERRITE_POOLS={"redis://:pw-s3cret@h:1/0": None})
    assert "pw-s3cret" not in str(caught.value)
    assert "not URLs" in str(caught.value)
