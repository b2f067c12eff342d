from __future__ import annotations

import pytest

from userstream.relay.settings import DEFAULT_PORT, RelaySettings
from userstream.settings import Env, SettingsError


def test_defaults_and_the_dsn_from_the_environment() -> None:
    settings = RelaySettings.load(env=Env({"USERSTREAM_OUTBOX_DSN": "postgresql://db/app"}))
    assert settings.dsn == "postgresql://db/app"
    assert settings.port == DEFAULT_PORT == 8001
    assert settings.timing.poll_interval == 0.05
    assert settings.timing.batch_size == 5000
    assert settings.timing.standby_interval < 15


def test_the_flag_wins_over_the_environment() -> None:
    settings = RelaySettings.load(dsn="host=a", env=Env({"USERSTREAM_OUTBOX_DSN": "host=b"}))
    assert settings.dsn == "host=a"


def test_a_dsn_is_required() -> None:
    with pytest.raises(SettingsError, match="USERSTREAM_OUTBOX_DSN"):
        RelaySettings.load(env=Env({}))


@pytest.mark.parametrize(
    ("name", "value"),
    [("RELAY_STANDBY_INTERVAL", "15"), ("RELAY_BATCH_SIZE", "0"), ("RELAY_POLL_INTERVAL", "x")],
)
def test_unusable_timings_name_their_variable(name: str, value: str) -> None:
    env = Env({"USERSTREAM_OUTBOX_DSN": "host=a", f"USERSTREAM_{name}": value})
    with pytest.raises(SettingsError, match=f"USERSTREAM_{name}"):
        RelaySettings.load(env=env)
