"""Settings from ``USERSTREAM_*``: defaults, parsing, and errors that name the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from userstream.policy import PolicyError, default_policy
from userstream.settings import (
    DEFAULT_NATS_URL,
    Env,
    GrpcServerSettings,
    LoggingSettings,
    LogStreamSettings,
    NatsSettings,
    PolicySettings,
    SettingsError,
)


def env(**values: str) -> Env:
    return Env({f"USERSTREAM_{key}": value for key, value in values.items()})


def test_defaults_match_the_contract_table() -> None:
    stream = LogStreamSettings.from_env(env())
    assert stream.name == "ACTIVITY"
    assert stream.retention_age == 604800
    assert stream.retention_max_msgs == -1
    assert stream.replicas == 1
    assert stream.duplicate_window == 120
    nats = NatsSettings.from_env(env())
    assert nats.servers == (DEFAULT_NATS_URL,)
    assert nats.request_timeout < 5  # UNAVAILABLE within 5 s
    assert PolicySettings.from_env(env()).policy == default_policy()
    assert LoggingSettings.from_env(env()) == LoggingSettings("json", "info")


def test_values_are_read() -> None:
    stream = LogStreamSettings.from_env(
        env(RETENTION_AGE="3600", RETENTION_MAX_MSGS="1000", STREAM_REPLICAS="3", DUPLICATE_WINDOW="30.5")
    )
    assert (stream.retention_age, stream.retention_max_msgs, stream.replicas, stream.duplicate_window) == (
        3600,
        1000,
        3,
        30.5,
    )


def test_zero_max_msgs_means_unlimited() -> None:
    assert LogStreamSettings.from_env(env(RETENTION_MAX_MSGS="0")).retention_max_msgs == -1


def test_several_nats_servers_separated_by_commas() -> None:
    nats = NatsSettings.from_env(env(NATS_URL=" nats://a:1 , nats://b:2,,nats://c:3 "))
    assert nats.servers == ("nats://a:1", "nats://b:2", "nats://c:3")


def test_a_flag_wins_over_the_environment() -> None:
    assert NatsSettings.from_env(env(NATS_URL="nats://env:1"), "nats://flag:2").servers == ("nats://flag:2",)


def test_blank_values_mean_default() -> None:
    assert LogStreamSettings.from_env(env(RETENTION_AGE="  ", STREAM_REPLICAS="")).replicas == 1


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("RETENTION_AGE", "a week", "USERSTREAM_RETENTION_AGE='a week' is not a number"),
        ("RETENTION_AGE", "0", "USERSTREAM_RETENTION_AGE=0 must be at least 1.0"),
        ("RETENTION_AGE", "nan", "USERSTREAM_RETENTION_AGE=nan must be at least"),
        ("RETENTION_AGE", "-5", "USERSTREAM_RETENTION_AGE=-5 must be at least"),
        ("RETENTION_MAX_MSGS", "1.5", "USERSTREAM_RETENTION_MAX_MSGS='1.5' is not an integer"),
        ("RETENTION_MAX_MSGS", "-2", "USERSTREAM_RETENTION_MAX_MSGS=-2 must be at least -1"),
        ("STREAM_REPLICAS", "three", "USERSTREAM_STREAM_REPLICAS='three' is not an integer"),
        ("STREAM_REPLICAS", "0", "USERSTREAM_STREAM_REPLICAS=0 must be at least 1"),
        ("STREAM_REPLICAS", "7", "USERSTREAM_STREAM_REPLICAS=7 must be at most 5"),
        ("DUPLICATE_WINDOW", "0.5", "USERSTREAM_DUPLICATE_WINDOW=0.5 must be at least 1.0"),
    ],
)
def test_bad_stream_values_name_the_variable(variable: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message.replace("(", r"\(").replace(".", r"\.")):
        LogStreamSettings.from_env(env(**{variable: value}))


@pytest.mark.parametrize(
    ("variable", "value"),
    [("NATS_CONNECT_TIMEOUT", "soon"), ("NATS_REQUEST_TIMEOUT", "0"), ("NATS_REQUEST_TIMEOUT", "inf")],
)
def test_bad_nats_values_name_the_variable(variable: str, value: str) -> None:
    with pytest.raises(SettingsError, match=f"USERSTREAM_{variable}="):
        NatsSettings.from_env(env(**{variable: value}))


def test_empty_nats_url_list_is_an_error() -> None:
    with pytest.raises(SettingsError, match="USERSTREAM_NATS_URL is empty"):
        NatsSettings.from_env(env(NATS_URL=" , ,"))


@pytest.mark.parametrize(("variable", "value"), [("LOG_FORMAT", "xml"), ("LOG_LEVEL", "verbose")])
def test_bad_choices_name_the_variable_and_the_choices(variable: str, value: str) -> None:
    with pytest.raises(SettingsError, match=f"USERSTREAM_{variable}='{value}' must be one of"):
        LoggingSettings.from_env(env(**{variable: value}))


def test_choices_are_case_insensitive() -> None:
    assert LoggingSettings.from_env(env(LOG_FORMAT="Console", LOG_LEVEL="DEBUG")) == LoggingSettings("console", "debug")


def test_grpc_server_settings() -> None:
    settings = GrpcServerSettings.from_env(env(SHUTDOWN_GRACE="1.5"), "0.0.0.0", 1234)
    assert (settings.host, settings.port, settings.shutdown_grace) == ("0.0.0.0", 1234, 1.5)
    with pytest.raises(SettingsError, match="USERSTREAM_GRPC_MAX_CONNECTION_AGE"):
        GrpcServerSettings.from_env(env(GRPC_MAX_CONNECTION_AGE="0"), "127.0.0.1", 0)


def test_policy_from_the_variable(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text('[roles]\norganization = ["owner"]\n')
    settings = PolicySettings.from_env(env(POLICY=str(path)))
    assert settings.path == path
    assert settings.policy.organization_roles == ("owner",)


def test_bad_policy_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text("[roles]\norganization = []\n")
    with pytest.raises(PolicyError, match=r"p\.toml: `roles\.organization`"):
        PolicySettings.from_env(env(POLICY=str(path)))


def test_env_reads_the_process_environment_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USERSTREAM_STREAM_REPLICAS", "2")
    assert LogStreamSettings.from_env(Env()).replicas == 2


def test_auth_settings_need_a_key_and_name_what_is_wrong(tmp_path: Path) -> None:
    from userstream.edge.settings import AuthSettings

    with pytest.raises(SettingsError, match="USERSTREAM_JWKS_URL"):
        AuthSettings.from_env(Env({}))
    with pytest.raises(SettingsError, match="USERSTREAM_JWT_PREVIOUS_SECRET"):
        AuthSettings.from_env(Env({"USERSTREAM_JWT_PREVIOUS_SECRET": "x" * 32, "USERSTREAM_JWKS_URL": "http://idp/"}))
    with pytest.raises(SettingsError, match="USERSTREAM_JWKS_URL"):
        AuthSettings.from_env(Env({"USERSTREAM_JWKS_URL": "file:///etc/jwks.json"}))
    with pytest.raises(SettingsError, match="USERSTREAM_AUTH_HOOK_URL"):
        AuthSettings.from_env(Env({"USERSTREAM_JWT_SECRET": "x" * 32, "USERSTREAM_AUTH_HOOK_URL": "localhost:8080"}))
    missing = tmp_path / "missing.pem"
    with pytest.raises(SettingsError, match=r"missing\.pem"):
        AuthSettings.from_env(Env({"USERSTREAM_JWT_PUBLIC_KEYS": str(missing)}))
    settings = AuthSettings.from_env(
        Env({"USERSTREAM_JWKS_URL": "https://idp.example/jwks", "USERSTREAM_JWKS_REFRESH": "60"})
    )
    assert (settings.jwks_url, settings.jwks_refresh, settings.hook_timeout) == ("https://idp.example/jwks", 60.0, 2.0)
