"""The activity service's settings: flags over ``USERSTREAM_*`` over defaults."""

from __future__ import annotations

import pytest

from userstream.activity.settings import DEFAULT_PORT, MAX_BATCH, ActivitySettings
from userstream.events.validation import DEFAULT_MAX_DATA_BYTES, MAX_DATA_BYTES_CEILING
from userstream.settings import Env, SettingsError


def load(**values: str) -> ActivitySettings:
    return ActivitySettings.load(env=Env({f"USERSTREAM_{key}": value for key, value in values.items()}))


def test_defaults() -> None:
    settings = load()
    assert settings.server.port == DEFAULT_PORT == 50051
    assert settings.server.host == "127.0.0.1"
    assert settings.limits.max_data_bytes == DEFAULT_MAX_DATA_BYTES == 256 * 1024
    assert settings.max_batch == MAX_BATCH


def test_flags() -> None:
    settings = ActivitySettings.load(host="0.0.0.0", port=6000, nats_url="nats://n:1", env=Env({}))
    assert (settings.server.host, settings.server.port, settings.nats.servers) == ("0.0.0.0", 6000, ("nats://n:1",))


def test_data_limit_from_the_environment() -> None:
    assert load(MAX_DATA_BYTES="1024").limits.max_data_bytes == 1024


@pytest.mark.parametrize("value", ["0", str(MAX_DATA_BYTES_CEILING + 1), "big"])
def test_data_limit_is_bounded_by_what_the_stream_accepts(value: str) -> None:
    with pytest.raises(SettingsError, match="USERSTREAM_MAX_DATA_BYTES"):
        load(MAX_DATA_BYTES=value)
