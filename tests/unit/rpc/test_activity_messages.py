"""Conversion between ``userstream.activity.v1.Activity`` and the domain's ``ActivityInput``."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from userstream.errors import InvalidArgumentError
from userstream.events import ActivityInput, Tx
from userstream.proto.activity.v1 import activity_pb2 as pb
from userstream.rpc.activity import input_from_pb, input_to_pb

FULL = ActivityInput(
    type="page.updated",
    entity_id="p1",
    organization_id="acme",
    user_id="bob",
    role="",
    data_json='{"n":1.50}',
    changed_keys=("name", "body"),
    tx=Tx("t1", "s1", "name"),
    idempotency_key="k-1",
    public=True,
    created_at=datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC),
)


def test_round_trip() -> None:
    assert input_from_pb(input_to_pb(FULL)) == FULL


def test_absent_optional_messages_stay_absent() -> None:
    converted = input_from_pb(pb.Activity(type="page.created"))
    assert converted.tx is None
    assert converted.created_at is None
    assert converted == ActivityInput(type="page.created")


def test_empty_tx_message_is_an_empty_tx() -> None:
    message = pb.Activity()
    message.tx.SetInParent()
    assert input_from_pb(message).tx == Tx("", "", "")


def test_nanoseconds_are_truncated_to_microseconds() -> None:
    message = pb.Activity()
    message.created_at.seconds = 0
    message.created_at.nanos = 123_456_789
    assert input_from_pb(message).created_at == datetime(1970, 1, 1, 0, 0, 0, 123456, tzinfo=UTC)


@pytest.mark.parametrize(
    ("seconds", "nanos"),
    [
        (-62135596800, 0),  # 0001-01-01T00:00:00Z
        (253402300799, 999_999_999),  # 9999-12-31T23:59:59.999999999Z
        (-1, 0),
    ],
)
def test_timestamps_in_range_convert(seconds: int, nanos: int) -> None:
    message = pb.Activity()
    message.created_at.seconds = seconds
    message.created_at.nanos = nanos
    assert input_from_pb(message).created_at is not None


@pytest.mark.parametrize(
    ("seconds", "nanos"),
    [(-62135596801, 0), (253402300800, 0), (0, -1), (0, 1_000_000_000), (2**62, 0)],
)
def test_timestamps_out_of_range_name_created_at(seconds: int, nanos: int) -> None:
    message = pb.Activity()
    message.created_at.seconds = seconds
    message.created_at.nanos = nanos
    with pytest.raises(InvalidArgumentError) as caught:
        input_from_pb(message)
    assert caught.value.field == "created_at"
