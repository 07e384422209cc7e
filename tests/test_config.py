"""PoolConfig: URLs and options in, one validated value out; every bad input a ConfigError."""

from __future__ import annotations

import pickle
import ssl
from pathlib import Path
from typing import Any

import pytest

from ferrite_integrations import ConfigError, PoolConfig, default_max_connections
from tests.conftest import CertFiles


def test_defaults_follow_the_connection_pooling_guide() -> None:
    config = PoolConfig()
    assert (config.host, config.port, config.db, config.ssl) == ("localhost", 6379, 0, False)
    assert config.socket_connect_timeout == 2.0
    assert config.socket_timeout == 5.0
    assert config.acquire_timeout == 5.0
    assert config.idle_timeout == 300.0
    assert config.health_check_interval == 30.0
    assert config.max_connections == default_max_connections() >= 10
    assert config.min_idle == 0
    assert config.protocol is None  # redis-py's default: RESP3, RESP2-shaped replies


def test_min_idle_above_the_machine_default_grows_the_pool_instead_of_failing() -> None:
    wanted = default_max_connections() + 5
    assert PoolConfig(min_idle=wanted).max_connections == wanted
    with pytest.raises(ConfigError, match="min_idle"):
        PoolConfig(min_idle=wanted, max_connections=wanted - 1)


def test_the_guides_redis_py_keyword_arguments_are_accepted_with_their_meaning() -> None:
    config = PoolConfig(
        host="localhost",
        port=6379,
        db=0,
        max_connections=20,
        socket_timeout=5.0,
        socket_connect_timeout=2.0,
        retry_on_timeout=True,
        health_check_interval=30,
    )
    assert config.max_connections == 20
    assert config.retry_on_timeout is True
    assert config == PoolConfig.from_url(
        "redis://localhost:6379/0?max_connections=20&retry_on_timeout=true"
    )


def test_url_parts_become_options() -> None:
    config = PoolConfig.from_url(
        "redis://app:p%40ss@Cache.Example.com:6380/2?socket_timeout=1.5&min_idle=2"
    )
    assert config.host == "cache.example.com"
    assert (config.port, config.db) == (6380, 2)
    assert (config.username, config.password) == ("app", "p@ss")
    assert (config.socket_timeout, config.min_idle) == (1.5, 2)


def test_db_from_query_when_the_path_has_none() -> None:
    assert PoolConfig.from_url("redis://h?db=4").db == 4
    assert PoolConfig.from_url("redis://h/4?db=4").db == 4


def test_unix_socket_url(tmp_path: Path) -> None:
    socket_path = tmp_path / "ferrite.sock"
    config = PoolConfig.from_url(f"unix://{socket_path}?db=3&password=pw")
    assert config.unix_socket_path == str(socket_path)
    assert (config.db, config.password) == (3, "pw")
    assert config.address == f"unix:{socket_path}"
    assert config.redacted_url == f"unix://:***@{socket_path}?db=3"


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (PoolConfig.from_url("redis://localhost:6379/0"), PoolConfig()),
        (PoolConfig.from_url("redis://LOCALHOST"), PoolConfig.from_url("redis://localhost/0")),
        (PoolConfig.from_url("redis://h?db=1"), PoolConfig.from_url("redis://h/1")),
        (PoolConfig(socket_timeout=5), PoolConfig(socket_timeout=5.0)),
        (
            PoolConfig.from_url("redis://h?max_connections=20&socket_timeout=2"),
            PoolConfig.from_url("redis://h?socket_timeout=2.0&max_connections=20"),
        ),
        (
            PoolConfig.from_url("redis://h", max_connections=20),
            PoolConfig.from_url("redis://h?max_connections=20"),
        ),
        (PoolConfig(protocol=3), PoolConfig.from_url("redis://localhost?protocol=3")),
        (PoolConfig(host="LOCALHOST"), PoolConfig.from_url("redis://LocalHost")),
        (
            PoolConfig.from_url("redis://LocalHost", host="LocalHost"),
            PoolConfig.from_url("redis://localhost"),
        ),
        (
            PoolConfig.from_url("unix:///tmp/./s", unix_socket_path="/tmp/s"),
            PoolConfig(unix_socket_path="/tmp/s"),
        ),
    ],
)
def test_configs_that_mean_the_same_compare_and_hash_equal(
    first: PoolConfig, second: PoolConfig
) -> None:
    assert first == second
    assert hash(first) == hash(second)
    assert len({first, second}) == 1


@pytest.mark.parametrize(
    "options",
    [
        {"max_connections": 21},
        {"socket_timeout": 4.0},
        {"db": 1},
        {"password": "other"},
        {"client_name": "web"},
        {"decode_responses": True},
        {"min_idle": 1},
        {"port": 6380},
    ],
)
def test_any_differing_option_makes_configs_unequal(options: dict[str, Any]) -> None:
    base = PoolConfig(max_connections=20)
    assert PoolConfig(**{"max_connections": 20, **options}) != base


def test_configs_are_frozen_and_picklable() -> None:
    config = PoolConfig(max_connections=20, password="secret")
    with pytest.raises(AttributeError):
        config.max_connections = 3  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(config)) == config


def test_repr_shows_address_and_changed_options_but_never_secrets(cert_files: CertFiles) -> None:
    config = PoolConfig.from_url(
        "rediss://admin:hunter2@cache:6380/1",
        ssl_ca_certs=str(cert_files.ca),
        ssl_certfile=str(cert_files.client_cert),
        ssl_keyfile=str(cert_files.encrypted_key),
        ssl_password=cert_files.key_password,
        max_connections=20,
    )
    text = repr(config)
    assert text.startswith("PoolConfig('rediss://admin:***@cache:6380/1'")
    assert "max_connections=20" in text
    assert "ssl_password=***" in text
    assert "hunter2" not in text
    assert cert_files.key_password not in text
    assert config.redacted_url == "rediss://admin:***@cache:6380/1"
    assert config.address == "cache:6380"


def test_ferrite_url_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FERRITE_URL", "redis://env-host:6390/5")
    config = PoolConfig.from_url(max_connections=12)
    assert (config.host, config.port, config.db, config.max_connections) == (
        "env-host",
        6390,
        5,
        12,
    )
    assert PoolConfig.from_url("redis://explicit").host == "explicit"


def test_without_url_or_environment_the_keyword_options_are_used(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("FERRITE_URL", raising=False)
    assert PoolConfig.from_url(host="10.0.0.9", port=7000).address == "10.0.0.9:7000"


def test_ipv6_host() -> None:
    config = PoolConfig.from_url("redis://[::1]:6390/0")
    assert config.host == "::1"
    assert config.address == "[::1]:6390"


def test_tls_url_with_files_builds_one_shared_context(cert_files: CertFiles) -> None:
    config = PoolConfig.from_url(
        f"rediss://localhost:6380/0?ssl_ca_certs={cert_files.ca}&ssl_min_version=TLSv1.3"
    )
    assert config.ssl is True
    assert config.ssl_min_version is ssl.TLSVersion.TLSv1_3
    context = config.ssl_context()
    assert isinstance(context, ssl.SSLContext)
    assert context is config.ssl_context()
    assert (
        context
        is PoolConfig.from_url(
            "rediss://other-host:6390/0",
            ssl_ca_certs=str(cert_files.ca),
            ssl_min_version=ssl.TLSVersion.TLSv1_3,
        ).ssl_context()
    )
    assert context.minimum_version is ssl.TLSVersion.TLSv1_3
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname is True


def test_tls_relative_paths_and_verify_mode_enums_normalise(
    cert_files: CertFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(cert_files.directory)
    relative = PoolConfig(ssl=True, ssl_ca_certs=cert_files.ca.name, ssl_cert_reqs="REQUIRED")
    absolute = PoolConfig(ssl=True, ssl_ca_certs=cert_files.ca, ssl_cert_reqs=ssl.CERT_REQUIRED)
    assert relative == absolute
    assert relative.ssl_ca_certs == str(cert_files.ca)


def test_cert_reqs_none_turns_hostname_checks_off() -> None:
    config = PoolConfig.from_url("rediss://h", ssl_cert_reqs="none")
    assert config.ssl_check_hostname is False
    context = config.ssl_context()
    assert context is not None
    assert context.verify_mode is ssl.CERT_NONE


def test_client_certificate_variants_load(cert_files: CertFiles) -> None:
    combined = PoolConfig.from_url(
        "rediss://h", ssl_ca_certs=str(cert_files.ca), ssl_certfile=str(cert_files.client_combined)
    )
    encrypted = PoolConfig.from_url(
        "rediss://h",
        ssl_ca_certs=str(cert_files.ca),
        ssl_certfile=str(cert_files.client_cert),
        ssl_keyfile=str(cert_files.encrypted_key),
        ssl_password=cert_files.key_password,
    )
    assert combined.ssl_context() is not None
    assert encrypted.ssl_context() is not None


# Each case: (url or None, keyword options, option the error names, fragments of the message).
BAD_INPUTS: list[tuple[str | None, dict[str, Any], str, tuple[str, ...]]] = [
    (None, {"max_conections": 3}, "max_conections", ("Unknown option", "'max_connections'")),
    (None, {"pool_size": 3}, "pool_size", ("Did you mean 'max_connections'",)),
    ("redis://h?socket_timout=1", {}, "socket_timout", ("in the URL", "'socket_timeout'")),
    (None, {"ssl_context": object()}, "ssl_context", ("not supported", "ssl_*")),
    (None, {"max_connections": "10"}, "max_connections", ("integer >= 1", "'10' (str)")),
    (None, {"max_connections": True}, "max_connections", ("True (bool)",)),
    (None, {"max_connections": 1.5}, "max_connections", ("integer",)),
    (None, {"max_connections": 0}, "max_connections", ("integer >= 1", "got 0")),
    (None, {"max_connections": -5}, "max_connections", ("got -5",)),
    (None, {"socket_timeout": -1}, "socket_timeout", ("number > 0",)),
    (None, {"socket_timeout": 0}, "socket_timeout", ("number > 0", "None to wait forever")),
    (None, {"socket_timeout": float("nan")}, "socket_timeout", ("nan",)),
    (None, {"socket_connect_timeout": None}, "socket_connect_timeout", ("number > 0",)),
    (None, {"acquire_timeout": -0.5}, "acquire_timeout", (">= 0",)),
    (None, {"idle_timeout": 0}, "idle_timeout", ("> 0", "never close idle")),
    (None, {"health_check_interval": -1}, "health_check_interval", (">= 0",)),
    (None, {"min_idle": -1}, "min_idle", (">= 0",)),
    (None, {"min_idle": 30, "max_connections": 20}, "min_idle", ("(30)", "(20)")),
    (None, {"db": -1}, "db", (">= 0",)),
    (None, {"protocol": 4}, "protocol", ("one of 2, 3",)),
    (None, {"retry_on_timeout": "yes"}, "retry_on_timeout", ("True or False",)),
    (None, {"client_name": "my app"}, "client_name", ("spaces",)),
    (None, {"encoding": "klingon"}, "encoding", ("no text codec",)),
    (None, {"encoding": "rot13"}, "encoding", ("no text codec",)),
    (None, {"encoding": "utf-8\x00"}, "encoding", ("no text codec",)),
    (None, {"port": 70000}, "port", ("<= 65535",)),
    (None, {"busy_poll": 0.01}, "busy_poll", ("<= 0.001", "before sleeping; 0 turns it off")),
    (None, {"busy_poll": -1e-05}, "busy_poll", (">= 0",)),
    ("redis://h?busy_poll=fast", {}, "busy_poll", ("'fast'",)),
    (None, {"socket_timeout": 10**400}, "socket_timeout", ("characters",)),
    ("redis://h?socket_timeout=1" + "0" * 400, {}, "socket_timeout", ("number > 0",)),
    (None, {"client_name": "caf\u00e9"}, "client_name", ("printable ASCII",)),
    (None, {"host": "[127.0.0.1]"}, "host", ("bare host name",)),
    (None, {"host": "redis://cache"}, "host", ("not a URL",)),
    ("redis://h/\u00b2", {}, "url", ("must be a database number",)),
    ("unix://user@somehost:1234/tmp/s", {}, "url", ("looks like a host name",)),
    ("unix://:a@/tmp/s?password=b", {}, "url", ("password is given twice",)),
    ("redis://h?ssl_ca_certs=none", {}, "ssl_ca_certs", ("rediss://",)),
    ("rediss://h", {"ssl_password": "pw"}, "ssl_password", ("no client key",)),
    (None, {"encoding_errors": "shrug"}, "encoding_errors", ("error handler",)),
    (None, {"host": ""}, "host", ("a string",)),
    ("http://cache:6379/0", {}, "url", ("unknown scheme 'http://'", "rediss://")),
    ("localhost:6379", {}, "url", ("no scheme", "Did you mean 'redis://localhost:6379'")),
    ("", {}, "url", ("empty",)),
    (" redis://h", {}, "url", ("whitespace",)),
    ("redis://", {}, "url", ("no host",)),
    ("redis://:6379/0", {}, "url", ("no host",)),
    ("redis://h:0/0", {}, "url", ("port 0",)),
    ("redis://h:port/0", {}, "url", ("port is not a number",)),
    ("redis://h:70000/0", {}, "url", ("out of range",)),
    ("redis://[::1/0", {}, "url", ("IPv6",)),
    ("redis://h/cache", {}, "url", ("'/cache' must be a database number",)),
    ("redis://h/1?db=2", {}, "url", ("given twice",)),
    ("redis://h?db=1&db=2", {}, "url", ("appears 2 times",)),
    ("redis://h#frag", {}, "url", ("fragment",)),
    ("redis://h?retry_on_timeout=maybe", {}, "retry_on_timeout", ("true/false", "'maybe'")),
    ("redis://h?max_connections=ten", {}, "max_connections", ("'ten'",)),
    ("redis://h?password=x", {}, "password", ("cannot be given in the URL's query",)),
    ("unix://", {}, "url", ("no socket path",)),
    ("unix://localhost/tmp/x.sock", {}, "url", ("looks like a host name",)),
    ("redis://h/1", {"db": 2}, "db", ("given twice", "says 1", "says 2")),
    ("redis://h/0", {"ssl_ca_certs": "/etc/ca.pem"}, "ssl_ca_certs", ("rediss://",)),
    ("unix:///tmp/s.sock", {"host": "h"}, "host", ("unix_socket_path",)),
    (None, {"unix_socket_path": "/tmp/s", "ssl": True}, "ssl", ("no host, port or TLS",)),
    ("rediss://h", {"ssl_ca_certs": "/no/such/ca.pem"}, "ssl_ca_certs", ("no such file",)),
    ("rediss://h", {"ssl_cert_reqs": "sometimes"}, "ssl_cert_reqs", ("'required'",)),
    ("rediss://h", {"ssl_min_version": "TLSv1.1"}, "ssl_min_version", ("TLSv1_2",)),
    ("rediss://h", {"ssl_min_version": 1.2}, "ssl_min_version", ("TLSVersion",)),
    (
        "rediss://h",
        {"ssl_cert_reqs": "none", "ssl_check_hostname": True},
        "ssl_check_hostname",
        ("cannot be checked",),
    ),
    ("rediss://h", {"ssl_ciphers": "NO-SUCH-CIPHER"}, "ssl_ciphers", ("no cipher",)),
    ("rediss://h", {"ssl_ca_data": "not a certificate"}, "ssl_ca_data", ("no PEM",)),
    (None, {"password": 1234}, "password", ("a string", "***")),
    (None, {"unknown_flag": 1, "max_connections": 5}, "unknown_flag", ("Unknown option",)),
]


@pytest.mark.parametrize(
    ("url", "options", "option", "fragments"),
    BAD_INPUTS,
    ids=[f"{i:02d}-{case[2]}" for i, case in enumerate(BAD_INPUTS)],
)
def test_bad_input_raises_config_error_naming_the_problem(
    url: str | None,
    options: dict[str, Any],
    option: str,
    fragments: tuple[str, ...],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("FERRITE_URL", raising=False)
    with pytest.raises(ConfigError) as caught:
        PoolConfig.from_url(url, **options)
    assert caught.value.option == option
    message = str(caught.value)
    if option != "url":
        assert repr(option) in message
    for fragment in fragments:
        assert fragment in message


def test_config_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="max_connections"):
        PoolConfig(max_connections=0)


@pytest.mark.parametrize(
    ("options", "option", "fragment"),
    [
        ({"ssl_ca_certs": "{not_pem}"}, "ssl_ca_certs", "holds no PEM certificate"),
        ({"ssl_ca_certs": "{directory}"}, "ssl_ca_certs", "not a regular file"),
        ({"ssl_ca_path": "{ca}"}, "ssl_ca_path", "not a directory"),
        ({"ssl_keyfile": "{client_key}"}, "ssl_keyfile", "'ssl_certfile' is not"),
        ({"ssl_certfile": "{client_cert}"}, "ssl_certfile", "no PEM private key"),
        ({"ssl_certfile": "{not_pem}", "ssl_keyfile": "{client_key}"}, "ssl_certfile", "no PEM"),
        (
            {"ssl_certfile": "{client_cert}", "ssl_keyfile": "{encrypted_key}"},
            "ssl_keyfile",
            "set 'ssl_password'",
        ),
        (
            {
                "ssl_certfile": "{client_cert}",
                "ssl_keyfile": "{encrypted_key}",
                "ssl_password": "wrong",
            },
            "ssl_password",
            "wrong password",
        ),
        (
            {"ssl_certfile": "{client_cert}", "ssl_keyfile": "{other_key}"},
            "ssl_keyfile",
            "does not belong",
        ),
    ],
)
def test_unusable_tls_files_are_reported_when_the_config_is_made(
    cert_files: CertFiles, options: dict[str, str], option: str, fragment: str, tmp_path: Path
) -> None:
    import trustme

    other = trustme.CA().issue_cert("someone-else")
    other_key = tmp_path / "other.key"
    other.private_key_pem.write_to_path(str(other_key))
    places = {
        "not_pem": cert_files.not_pem,
        "directory": cert_files.directory,
        "ca": cert_files.ca,
        "client_key": cert_files.client_key,
        "client_cert": cert_files.client_cert,
        "encrypted_key": cert_files.encrypted_key,
        "other_key": other_key,
    }
    resolved = {name: value.format(**places) for name, value in options.items()}
    with pytest.raises(ConfigError) as caught:
        PoolConfig.from_url("rediss://h", **resolved)
    assert caught.value.option == option
    assert fragment in str(caught.value)
    assert "wrong" not in str(caught.value).replace("wrong password", "")


@pytest.mark.parametrize(
    "url",
    [
        "redis://user:hunter2@h:99999/0",
        "redis://u:hunt#hunter2@h:6379/0",
        "redis://u:x@hunter2@h:0/0",
        "redis://u:pass/hunter2@h:6379/0",
        "redis://u:pass?hunter2@h:6379/0",
        "u:hunter2@h:6379",
        "redis:/u:hunter2@h",
        "unix:///tmp/s?password=hunter2&password=hunter2",
        "unix:///tmp/s?password=hunter2#frag",
        "redis://u:hunter2@[::1/0",
    ],
)
def test_passwords_never_appear_in_url_error_messages(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        PoolConfig.from_url(url)
    assert "hunter2" not in str(caught.value)
    assert "***" in str(caught.value)


def test_secrets_never_appear_in_error_messages() -> None:
    with pytest.raises(ConfigError) as caught:
        PoolConfig.from_url("redis://user:hunter2@h:99999/0")
    assert "hunter2" not in str(caught.value)
    assert "user:***@" in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        PoolConfig.from_url("redis://:hunter2@h/0", password="s3cr3t-kw")
    assert "hunter2" not in str(caught.value)
    assert "s3cr3t-kw" not in str(caught.value)


def test_environment_url_errors_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FERRITE_URL", "redis//oops")
    with pytest.raises(ConfigError, match="FERRITE_URL environment variable"):
        PoolConfig.from_url()


def test_url_must_be_a_string() -> None:
    with pytest.raises(ConfigError, match="must be a string"):
        PoolConfig.from_url(b"redis://h")  # type: ignore[arg-type]


def test_every_option_has_one_name_across_table_fields_typing_and_docs() -> None:
    from dataclasses import fields

    from ferrite_integrations import PoolOptions
    from ferrite_integrations._options import OPTION_SPECS

    field_names = [item.name for item in fields(PoolConfig)]
    assert field_names == list(OPTION_SPECS)
    assert set(PoolOptions.__annotations__) == set(OPTION_SPECS)
    docs = (Path(__file__).parent.parent / "docs" / "configuration.md").read_text()
    undocumented = [name for name in OPTION_SPECS if f"| `{name}` |" not in docs]
    assert undocumented == []


@pytest.mark.parametrize(
    ("options", "option", "fragment"),
    [
        ({"ssl_ca_data": "caf\u00e9 not ascii"}, "ssl_ca_data", "no PEM"),
        (
            {
                "ssl_certfile": "{client_cert}",
                "ssl_keyfile": "{encrypted_key}",
                "ssl_password": "x" * 2000,
            },
            "ssl_password",
            "1024 bytes",
        ),
    ],
)
def test_tls_inputs_that_openssl_rejects_are_config_errors(
    cert_files: CertFiles, options: dict[str, str], option: str, fragment: str
) -> None:
    places = {"client_cert": cert_files.client_cert, "encrypted_key": cert_files.encrypted_key}
    resolved = {name: value.format(**places) for name, value in options.items()}
    with pytest.raises(ConfigError) as caught:
        PoolConfig.from_url("rediss://h", **resolved)
    assert caught.value.option == option
    assert fragment in str(caught.value)
