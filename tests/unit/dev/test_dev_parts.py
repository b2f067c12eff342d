"""Pure parts of the dev stack: its secret, the printed curl line, the demo traffic, the dev edge's guard."""

from __future__ import annotations

import random
import shlex
import stat
from pathlib import Path

import pytest

from userstream.dev.banner import curl_line
from userstream.dev.demo import MEMBERSHIPS, ORGANIZATIONS, USERS, catalogue
from userstream.dev.edge_process import dev_edge_settings, is_loopback
from userstream.dev.secret import dev_secret, find_secret
from userstream.dev.traffic import DemoTraffic
from userstream.events.validation import Limits, validate_activity
from userstream.policy import default_policy
from userstream.settings import Env, SettingsError


def test_the_secret_is_generated_once_per_data_dir_and_kept_private(tmp_path: Path) -> None:
    data_dir = tmp_path / "dev"
    first = dev_secret(data_dir, Env({}))
    assert len(first) >= 32
    assert dev_secret(data_dir, Env({})) == first
    assert find_secret(data_dir, Env({})) == first
    assert stat.S_IMODE((data_dir / "jwt-secret").stat().st_mode) == 0o600


def test_the_environment_secret_wins_and_a_missing_one_is_explained(tmp_path: Path) -> None:
    env = Env({"USERSTREAM_JWT_SECRET": "from-the-environment"})
    assert dev_secret(tmp_path, env) == "from-the-environment"
    assert not (tmp_path / "jwt-secret").exists()
    with pytest.raises(SettingsError, match="--data-dir"):
        find_secret(tmp_path / "nothing-here", Env({}))


def test_the_curl_line_survives_the_shell() -> None:
    line = curl_line("http://127.0.0.1:8000", "a.b-c_d")
    assert shlex.split(line) == ["curl", "-N", "-H", "Authorization: Bearer a.b-c_d", "http://127.0.0.1:8000/me/stream"]


def test_every_demo_change_is_valid_under_the_built_in_policy() -> None:
    traffic = DemoTraffic(None, None, interval=1.0, membership_every=10, rng=random.Random(3))  # type: ignore[arg-type]
    policy = default_policy()
    for _ in range(300):
        validate_activity(traffic.next_change(), policy, Limits())


def test_the_demo_is_consistent() -> None:
    organizations = {organization.id for organization in ORGANIZATIONS}
    assert set(MEMBERSHIPS) == {user.id for user in USERS}
    for memberships in MEMBERSHIPS.values():
        assert set(memberships) <= organizations
        assert set(memberships.values()) <= set(default_policy().organization_roles)
    assert [user["id"] for user in catalogue()["users"]] == [user.id for user in USERS]  # type: ignore[index]


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_loopback_hosts(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "10.0.0.1", "example.com", "::"])
def test_the_dev_edge_refuses_to_listen_beyond_loopback(host: str) -> None:
    assert not is_loopback(host)
    env = Env({"USERSTREAM_JWT_SECRET": "s" * 32, "USERSTREAM_ACTIVITY_ADDR": "127.0.0.1:1"})
    with pytest.raises(SettingsError, match="loopback"):
        dev_edge_settings(host, 8000, demo=True, token_ttl=60, env=env)


def test_the_production_edge_settings_never_enable_the_dev_api() -> None:
    from userstream.edge.settings import EdgeSettings

    loaded = EdgeSettings.load(env=Env({"USERSTREAM_JWT_SECRET": "s" * 32, "USERSTREAM_DEVTOOLS": "1"}))
    assert loaded.devtools is None
    dev = dev_edge_settings(
        "127.0.0.1",
        8000,
        demo=False,
        token_ttl=60,
        env=Env({"USERSTREAM_JWT_SECRET": "s" * 32, "USERSTREAM_ACTIVITY_ADDR": "127.0.0.1:1"}),
    )
    assert dev.devtools is not None
    assert dev.devtools.demo is None
