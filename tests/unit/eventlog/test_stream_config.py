"""The ``ACTIVITY`` stream's configuration as derived from settings, and what counts as a change."""

from __future__ import annotations

from dataclasses import replace

from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig

from userstream.eventlog.stream import MAX_MESSAGE_BYTES, _changed_fields, desired_config
from userstream.eventlog.subjects import live_subject, org_subject, subject_of, user_subject
from userstream.events import ActivityInput, Limits, Tx, encode_body, validate_activity
from userstream.events.validation import MAX_DATA_BYTES_CEILING
from userstream.policy import default_policy
from userstream.settings import LogStreamSettings


def test_desired_config_follows_the_settings() -> None:
    config = desired_config(
        LogStreamSettings(name="LOG", retention_age=3600, retention_max_msgs=500, duplicate_window=60, replicas=3)
    )
    assert config.name == "LOG"
    assert sorted(config.subjects or []) == ["fence.*", "org.*", "tombstone.*.*", "user.*"]
    assert (config.max_age, config.max_msgs, config.duplicate_window, config.num_replicas) == (3600, 500, 60, 3)
    assert config.retention is RetentionPolicy.LIMITS
    assert config.storage is StorageType.FILE
    assert config.discard is DiscardPolicy.OLD
    assert config.republish is not None
    assert (config.republish.src, config.republish.dest) == (">", "live.>")
    assert config.deny_delete


def test_duplicate_window_never_exceeds_retention() -> None:
    config = desired_config(LogStreamSettings(retention_age=30, duplicate_window=120))
    assert config.duplicate_window == 30


def test_the_largest_valid_event_fits_in_a_message() -> None:
    # Everything at its limit: data at the ceiling, changed keys at their budget of 6-byte escapes, tx full.
    limits = Limits(max_data_bytes=MAX_DATA_BYTES_CEILING)
    data = '{"a":"' + "x" * (MAX_DATA_BYTES_CEILING - 8) + '"}'
    keys = tuple("\x01" * 256 for _ in range(limits.max_changed_keys_chars // 256))
    raw = ActivityInput(
        type="page.updated",
        entity_id="e" * 128,
        organization_id="o" * 128,
        user_id="u" * 128,
        data_json=data,
        changed_keys=keys,
        idempotency_key="k" * 128,
    )
    activity = validate_activity(
        replace(raw, tx=Tx("\x01" * 256, "\x01" * 256, "\x01" * 256)), default_policy(), limits
    )
    assert len(encode_body(activity)) < MAX_MESSAGE_BYTES


def test_unchanged_config_is_not_an_update() -> None:
    wanted = desired_config(LogStreamSettings())
    assert _changed_fields(wanted, desired_config(LogStreamSettings())) == []


def test_changed_settings_are_named() -> None:
    current = desired_config(LogStreamSettings())
    wanted = desired_config(LogStreamSettings(retention_age=600, retention_max_msgs=10, replicas=3))
    assert _changed_fields(current, wanted) == ["max_age", "max_msgs", "num_replicas"]


def test_subjects_republish_and_deny_delete_are_checked() -> None:
    wanted = desired_config(LogStreamSettings())
    current = StreamConfig.from_response(wanted.as_dict())
    current.subjects = ["user.*"]
    current.republish = None
    current.deny_delete = False
    assert _changed_fields(current, wanted) == ["subjects", "republish", "deny_delete"]


def test_subjects() -> None:
    policy, limits = default_policy(), Limits()
    page = validate_activity(ActivityInput(type="page.created", entity_id="p", organization_id="acme"), policy, limits)
    org = validate_activity(ActivityInput(type="organization.deleted", organization_id="acme"), policy, limits)
    member = validate_activity(
        ActivityInput(type="membership.created", organization_id="acme", user_id="alice", role="admin"), policy, limits
    )
    assert subject_of(page) == subject_of(org) == org_subject("acme") == "org.acme"
    assert subject_of(member) == user_subject("alice") == "user.alice"
    assert live_subject("org.acme") == "live.org.acme"
