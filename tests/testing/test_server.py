"""EmbeddedServer against real server processes: lifecycle, faults, auth, sockets."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from ferrite_integrations.errors import ConfigError
from ferrite_integrations.testing import EmbeddedServer, EmbeddedServerError
from ferrite_integrations.testing._net import free_port
from ferrite_integrations.testing.plugin import ServerFactory
from ferrite_integrations.testing.server import HARNESS_CLIENT_NAME

ClientFactory = Callable[..., redis.Redis]
"""The ``make_client`` fixture (see conftest.py)."""


def _wait_until(condition: Callable[[], bool], timeout: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def test_context_manager_serves_then_removes_everything(make_client: ClientFactory) -> None:
    with EmbeddedServer() as server:
        client = make_client(server.url)
        client.set("greeting", "hello")
        assert client.get("greeting") == b"hello"
        pid, directory = server.pid, server.directory
        assert server.running
        assert os.path.isdir(directory)
    assert not server.running
    assert server.pid is None
    assert pid is not None
    assert not _process_exists(pid)
    assert not os.path.exists(directory)
    with pytest.raises(redis.ConnectionError):
        make_client(server.url).ping()


def test_restart_keeps_port_and_url_but_loses_data(
    start_server: ServerFactory, make_client: ClientFactory
) -> None:
    server = start_server()
    port, url, old_pid = server.port, server.url, server.pid
    make_client(url).set("key", "value")

    server.restart()

    assert (server.port, server.url) == (port, url)
    assert server.pid != old_pid
    assert make_client(url).get("key") is None


def test_stop_is_idempotent_and_start_reuses_the_port(
    start_server: ServerFactory, make_client: ClientFactory
) -> None:
    server = start_server()
    port = server.port
    server.stop()
    server.stop()
    assert not server.running
    assert server.pid is None
    with pytest.raises(redis.ConnectionError):
        make_client(server.url).ping()

    server.start()

    assert server.port == port
    assert make_client(server.url).ping()


def test_a_stopped_server_refuses_controls(start_server: ServerFactory) -> None:
    server = start_server()
    server.stop()
    with pytest.raises(EmbeddedServerError, match="not running"):
        server.pause()
    with pytest.raises(EmbeddedServerError, match="not running"):
        server.client_list()


def test_a_closed_server_cannot_start_again(start_server: ServerFactory) -> None:
    server = start_server()
    server.close()
    server.close()
    with pytest.raises(EmbeddedServerError, match="closed"):
        server.start()


def test_pause_makes_requests_time_out_and_resume_recovers(
    start_server: ServerFactory, make_client: ClientFactory
) -> None:
    server = start_server()
    client = make_client(server.url, socket_timeout=0.2)
    assert client.ping()

    server.pause()

    assert server.paused
    assert server.running
    with pytest.raises(redis.TimeoutError):
        client.ping()
    with pytest.raises(EmbeddedServerError, match="paused"):
        server.connected_clients()

    server.resume()

    assert not server.paused
    assert client.ping()


def test_stop_ends_a_paused_server(start_server: ServerFactory) -> None:
    server = start_server()
    pid = server.pid
    server.pause()

    server.stop()

    assert pid is not None
    assert not _process_exists(pid)
    assert not server.paused


def test_kill_clients_drops_connections_and_counts_them(
    start_server: ServerFactory, make_client: ClientFactory
) -> None:
    server = start_server()
    raw = redis.Connection(**server.redis_kwargs(), socket_timeout=2.0)
    raw.connect()
    client = make_client(server.url)
    client_id_before = client.client_id()

    try:
        assert server.kill_clients() == 2

        raw.send_command("PING")
        with pytest.raises(redis.ConnectionError):
            raw.read_response()
    finally:
        raw.disconnect()
    assert client.client_id() != client_id_before, "the pool reconnected"
    assert server.connected_clients() == 1


def test_kill_clients_also_drops_pubsub_connections(
    start_server: ServerFactory, make_client: ClientFactory
) -> None:
    server = start_server()
    pubsub = make_client(server.url).pubsub()
    try:
        pubsub.subscribe("news")
        assert pubsub.get_message(timeout=1.0) is not None

        assert server.kill_clients() == 1
    finally:
        pubsub.close()


def test_client_counts_leave_out_the_harness_connection(
    start_server: ServerFactory, make_client: ClientFactory
) -> None:
    server = start_server()
    assert server.client_list() == []
    assert server.connected_clients() == 0

    client = make_client(server.url, client_name="app")
    first = client.connection_pool.get_connection()
    second = client.connection_pool.get_connection()

    assert server.connected_clients() == 2
    assert server.connected_clients("app") == 2
    assert server.connected_clients("other") == 0
    assert {entry["name"] for entry in server.client_list()} == {"app"}

    client.connection_pool.release(first)
    client.connection_pool.release(second)
    client.close()
    assert _wait_until(lambda: server.connected_clients() == 0)


def test_client_counts_stay_exact_under_concurrent_calls(start_server: ServerFactory) -> None:
    server = start_server()
    counts: list[int] = []

    def count() -> None:
        counts.extend(server.connected_clients() for _ in range(20))

    threads = [threading.Thread(target=count) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert counts == [0] * 160


def test_password_server_rejects_clients_without_it(
    start_server: ServerFactory, make_client: ClientFactory
) -> None:
    server = start_server(password="s3cret pass/word")

    with pytest.raises(redis.AuthenticationError):
        make_client(host=server.host, port=server.port).ping()
    with pytest.raises(redis.AuthenticationError):
        make_client(host=server.host, port=server.port, password="wrong").ping()
    assert make_client(server.url).ping()
    assert make_client(**server.redis_kwargs()).ping()
    assert server.url.startswith("redis://:s3cret%20pass%2Fword@127.0.0.1:")
    assert "s3cret" not in repr(server)


def test_acl_user_works_and_the_default_user_is_off(
    start_server: ServerFactory, make_client: ClientFactory
) -> None:
    server = start_server(username="app:us@r", password="pw:@")

    assert make_client(server.url).acl_whoami() == "app:us@r"
    assert make_client(**server.redis_kwargs()).set("key", "value")
    with pytest.raises(redis.AuthenticationError):
        make_client(host=server.host, port=server.port).ping()
    with pytest.raises(redis.AuthenticationError):
        make_client(host=server.host, port=server.port, password="pw:@").ping()
    assert server.url.startswith("redis://app%3Aus%40r:pw%3A%40@127.0.0.1:")


def test_username_without_password_is_refused() -> None:
    with pytest.raises(ConfigError, match="password") as caught:
        EmbeddedServer(username="app")
    assert caught.value.option == "username"
    with pytest.raises(ConfigError, match="whitespace"):
        EmbeddedServer(username="app user", password="pw")


def test_unix_socket_serves_alongside_tcp(
    start_server: ServerFactory, make_client: ClientFactory
) -> None:
    server = start_server(unix_socket=True, password="pw")
    path = server.unix_socket_path

    assert len(os.fsencode(path)) < 100
    assert server.unix_url == f"unix://:pw@{path}?db=0"
    assert server.url.startswith("redis://:pw@127.0.0.1:")
    make_client(server.unix_url).set("key", "over the socket")
    assert make_client(**server.redis_kwargs(unix_socket=True)).get("key") == b"over the socket"
    assert make_client(server.url).get("key") == b"over the socket"


def test_unix_socket_moves_to_tmp_when_the_temp_dir_path_is_too_long(
    make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    long_dir = tmp_path / ("d" * 100)
    long_dir.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(long_dir))

    with EmbeddedServer(unix_socket=True) as server:
        path = server.unix_socket_path
        assert server.directory.startswith(str(long_dir))
        assert path.startswith("/tmp/")
        assert len(os.fsencode(path)) < 100
        assert make_client(server.unix_url).ping()
    assert not os.path.exists(os.path.dirname(path))


def test_a_server_without_unix_socket_says_so(start_server: ServerFactory) -> None:
    server = start_server()
    with pytest.raises(EmbeddedServerError, match="unix_socket=True"):
        _ = server.unix_url


def test_db_selects_the_database(start_server: ServerFactory, make_client: ClientFactory) -> None:
    server = start_server(db=3)
    assert server.url.endswith("/3")
    make_client(server.url).set("key", "in db 3")
    assert make_client(host=server.host, port=server.port, db=3).get("key") == b"in db 3"
    assert make_client(host=server.host, port=server.port, db=0).get("key") is None


def test_extra_config_reaches_the_server(
    start_server: ServerFactory, make_client: ClientFactory
) -> None:
    server = start_server(extra_config={"maxmemory-policy": "allkeys-lru", "databases": "20"})
    client = make_client(server.url)
    assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "allkeys-lru"}
    assert client.config_get("databases") == {"databases": "20"}


@pytest.mark.parametrize(
    "extra_config", [{"maxmemory": "1mb\nrequirepass x"}, {"two words": "x"}, {"": "x"}]
)
def test_extra_config_must_be_one_directive_per_entry(extra_config: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="extra_config"):
        EmbeddedServer(extra_config=extra_config)


def test_start_on_a_running_server_changes_nothing(start_server: ServerFactory) -> None:
    server = start_server()
    pid = server.pid
    server.start()
    assert server.pid == pid


def test_start_after_a_crash_starts_a_new_process(
    start_server: ServerFactory, make_client: ClientFactory
) -> None:
    server = start_server()
    crashed = server.pid
    assert crashed is not None
    os.kill(crashed, signal.SIGKILL)
    assert _wait_until(lambda: not server.running)

    server.start()

    assert server.pid not in (None, crashed)
    assert make_client(server.url).ping()


def test_a_bad_directive_fails_startup_with_the_server_output() -> None:
    server = EmbeddedServer(extra_config={"no-such-directive": "yes"})
    try:
        with pytest.raises(EmbeddedServerError, match="exited with status") as caught:
            server.start()
        assert "no-such-directive" in str(caught.value)
        assert "Bad directive" in str(caught.value)
        assert not server.running
        assert "Bad directive" in server.log_tail()
    finally:
        server.close()


def test_a_taken_port_on_restart_fails_with_the_server_output(start_server: ServerFactory) -> None:
    server = start_server()
    server.stop()
    with socket.socket() as squatter:
        squatter.bind((server.host, server.port))
        squatter.listen()

        with pytest.raises(EmbeddedServerError, match=r"(?i)address already in use"):
            server.start()

    assert not server.running


def test_first_start_moves_on_when_the_picked_port_is_taken(
    start_server: ServerFactory, make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        picks = iter([taken])
        # Forces the race "another process took the port between picking and binding".
        monkeypatch.setattr(
            "ferrite_integrations.testing.server.free_port",
            lambda: next(picks, None) or free_port(),
        )

        server = start_server()

        assert server.port != taken
        assert make_client(server.url).ping()
        assert "Address already in use" in server.log_tail()


def test_startup_timeout_stops_a_server_that_never_answers(tmp_path: Path) -> None:
    # A real server cannot be made to hang at startup: a stand-in binary that never listens.
    binary = tmp_path / "silent-server"
    binary.write_text(
        '#!/bin/sh\n[ "$1" = --version ] && echo "Silent server v=0.0.1" && exit 0\n'
        f'exec "{sys.executable}" -c "import time; time.sleep(30)"\n'
    )
    binary.chmod(0o755)
    server = EmbeddedServer(binary=str(binary), startup_timeout=0.3)
    try:
        with pytest.raises(EmbeddedServerError, match=r"did not answer PING within 0\.3 s"):
            server.start()
        assert not server.running
        assert "0.0.1" in repr(server)
    finally:
        server.close()


def test_a_server_started_from_a_short_lived_thread_keeps_running(
    start_server: ServerFactory, make_client: ClientFactory
) -> None:
    servers: list[EmbeddedServer] = []
    thread = threading.Thread(target=lambda: servers.append(start_server()))
    thread.start()
    thread.join()
    time.sleep(0.1)

    assert servers[0].running
    assert make_client(servers[0].url).ping()


def test_properties_repr_and_log(start_server: ServerFactory) -> None:
    server = start_server(password="hunter2")

    assert server.host == "127.0.0.1"
    assert server.version.count(".") == 2
    assert server.log_tail(5).count("\n") <= 4
    assert "Ready to accept connections" in server.log_tail()
    text = repr(server)
    assert f"127.0.0.1:{server.port}" in text
    assert server.version in text
    assert "running" in text
    assert "hunter2" not in text
    server.pause()
    assert "paused" in repr(server)
    server.resume()
    server.stop()
    assert "stopped" in repr(server)


def test_harness_connection_carries_its_name(start_server: ServerFactory) -> None:
    server = start_server()
    raw = redis.Redis(**server.redis_kwargs())
    try:
        names = [entry["name"] for entry in raw.client_list()]
    finally:
        raw.close()
    assert HARNESS_CLIENT_NAME in names
    assert HARNESS_CLIENT_NAME not in [entry["name"] for entry in server.client_list()]


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_another_server_on_the_port_is_not_taken_for_ours(
    start_server: ServerFactory, tmp_path: Path
) -> None:
    server = start_server()
    server.stop()
    port = str(server.port)
    intruder = subprocess.Popen(
        [
            server.binary,
            "--port",
            port,
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        probe = redis.Redis(host="127.0.0.1", port=server.port)
        try:
            assert _wait_until(lambda: _answers(probe))
        finally:
            probe.close()

        with pytest.raises(EmbeddedServerError, match=r"(?i)address already in use"):
            server.start()
    finally:
        intruder.terminate()
        intruder.wait(timeout=5)


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False
