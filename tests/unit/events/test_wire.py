"""The stored body and the ``change`` payload: exactly the JSON of CONTRACT §5."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import msgspec
import pytest

from userstream.events import ActivityInput, Limits, Tx, encode_body, validate_activity
from userstream.events.wire import (
    MEMBERSHIP_DECODER,
    VIEW_DECODER,
    change_payload,
    format_timestamp,
)
from userstream.policy import default_policy

NOW = datetime(2026, 3, 4, 5, 6, 7, 891234, tzinfo=UTC)
PAGE = ActivityInput(type="page.updated", entity_id="p1", organization_id="acme")

KEYS = [
    "type",
    "action",
    "entityType",
    "resourceType",
    "entityId",
    "organizationId",
    "userId",
    "createdAt",
    "changedKeys",
    "tx",
    "data",
]


def body_of(raw: ActivityInput) -> bytes:
    return encode_body(validate_activity(raw, default_policy(), Limits(), now=NOW))


def test_product_event_body_is_exactly_the_contract_shape() -> None:
    raw = replace(
        PAGE,
        user_id="bob",
        changed_keys=("name",),
        tx=Tx("t-1", "tab-7", "name"),
        data_json='{"name":"Plan","size":1.50}',
    )
    assert body_of(raw) == (
        b'{"type":"page.updated","action":"update","entityType":"page","resourceType":null,'
        b'"entityId":"p1","organizationId":"acme","userId":"bob","createdAt":"2026-03-04T05:06:07.891Z",'
        b'"changedKeys":["name"],"tx":{"transactionId":"t-1","sourceId":"tab-7","changedField":"name"},'
        b'"data":{"name":"Plan","size":1.50}}'
    )


def test_key_order_is_the_contract_order_for_every_kind() -> None:
    for raw in (
        PAGE,
        ActivityInput(type="organization.deleted", organization_id="acme"),
        ActivityInput(type="membership.deleted", organization_id="acme", user_id="alice"),
    ):
        assert list(msgspec.json.decode(body_of(raw))) == KEYS


def test_absent_optional_fields_are_null_not_missing() -> None:
    decoded = msgspec.json.decode(body_of(PAGE))
    assert decoded["userId"] is None
    assert decoded["changedKeys"] is None
    assert decoded["tx"] is None
    assert decoded["data"] is None


def test_tx_with_some_fields_has_null_for_the_others() -> None:
    decoded = msgspec.json.decode(body_of(replace(PAGE, tx=Tx(source_id="tab-7"))))
    assert decoded["tx"] == {"transactionId": None, "sourceId": "tab-7", "changedField": None}


def test_membership_event_body() -> None:
    raw = ActivityInput(type="membership.created", organization_id="acme", user_id="alice", role="admin")
    assert body_of(raw) == (
        b'{"type":"membership.created","action":"create","entityType":null,"resourceType":"membership",'
        b'"entityId":null,"organizationId":"acme","userId":"alice","createdAt":"2026-03-04T05:06:07.891Z",'
        b'"changedKeys":null,"tx":null,"data":{"userId":"alice","organizationId":"acme","role":"admin"}}'
    )


def test_membership_deleted_data_holds_the_role_they_had() -> None:
    raw = ActivityInput(type="membership.deleted", organization_id="acme", user_id="alice", role="member")
    data = msgspec.json.decode(body_of(raw))["data"]
    assert data == {"userId": "alice", "organizationId": "acme", "role": "member"}


def test_organization_event_body() -> None:
    decoded = msgspec.json.decode(body_of(ActivityInput(type="organization.updated", organization_id="acme")))
    assert decoded["entityType"] == "organization"
    assert decoded["resourceType"] is None
    assert decoded["entityId"] == "acme"
    assert decoded["action"] == "update"


@pytest.mark.parametrize(("suffix", "action"), [("created", "create"), ("updated", "update"), ("deleted", "delete")])
def test_action_follows_the_type(suffix: str, action: str) -> None:
    assert msgspec.json.decode(body_of(replace(PAGE, type=f"page.{suffix}")))["action"] == action


def test_numbers_in_data_are_kept_verbatim() -> None:
    data = '{"big":123456789012345678901234567890,"precise":0.30000000000000004441,"exp":1E+400,"neg":-0.0}'
    body = body_of(replace(PAGE, data_json=data))
    assert body.endswith(b'"data":' + data.encode() + b"}")


def test_no_line_breaks_anywhere_in_the_body() -> None:
    raw = replace(
        PAGE,
        changed_keys=("line\nbreak", "carriage\rreturn", "sep\u2028arator"),
        tx=Tx("t\n1", "s\r2", "c\r\n3"),
        data_json='{\n"a": "x\\ny",\r\n"b": [\n1\n]\n}',
    )
    body = body_of(raw)
    assert b"\n" not in body
    assert b"\r" not in body
    assert msgspec.json.decode(body)["changedKeys"] == ["line\nbreak", "carriage\rreturn", "sep\u2028arator"]


def test_created_at_is_utc_with_milliseconds_and_z() -> None:
    moment = datetime(2025, 6, 1, 14, 0, 0, 999999, tzinfo=timezone(timedelta(hours=2)))
    decoded = msgspec.json.decode(body_of(replace(PAGE, created_at=moment)))
    assert decoded["createdAt"] == "2025-06-01T12:00:00.999Z"


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        (datetime(2026, 1, 1, tzinfo=UTC), "2026-01-01T00:00:00.000Z"),
        (datetime(1, 1, 1, tzinfo=UTC), "0001-01-01T00:00:00.000Z"),
        (datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), "9999-12-31T23:59:59.999Z"),
    ],
)
def test_format_timestamp_writes_what_javascript_writes(moment: datetime, text: str) -> None:
    assert format_timestamp(moment) == text


def test_change_payload_puts_activity_id_first() -> None:
    body = body_of(PAGE)
    payload = change_payload("1796012345000000000057", body)
    decoded = msgspec.json.decode(payload)
    assert list(decoded) == ["activityId", *KEYS]
    assert decoded["activityId"] == "1796012345000000000057"
    assert payload == b'{"activityId":"1796012345000000000057",' + body[1:]


def test_view_decoder_reads_routing_fields_without_decoding_data() -> None:
    view = VIEW_DECODER.decode(body_of(replace(PAGE, user_id="bob", data_json='{"n":1.10}')))
    assert (view.type, view.entity_type, view.resource_type, view.organization_id, view.user_id) == (
        "page.updated",
        "page",
        None,
        "acme",
        "bob",
    )
    assert view.data is not None
    assert bytes(view.data) == b'{"n":1.10}'


def test_membership_decoder_reads_the_membership_data() -> None:
    raw = ActivityInput(type="membership.updated", organization_id="acme", user_id="alice", role="admin")
    view = VIEW_DECODER.decode(body_of(raw))
    assert view.data is not None
    data = MEMBERSHIP_DECODER.decode(view.data)
    assert (data.user_id, data.organization_id, data.role) == ("alice", "acme", "admin")


def test_view_of_an_event_without_data_has_none() -> None:
    assert VIEW_DECODER.decode(body_of(PAGE)).data is None


def test_format_timestamp_is_right_whatever_it_formatted_before() -> None:
    first = datetime(2026, 1, 1, 0, 0, 0, 1000, tzinfo=UTC)
    second = datetime(2026, 1, 1, 0, 0, 0, 2000, tzinfo=UTC)
    assert [format_timestamp(m) for m in (first, first, second, first)] == [
        "2026-01-01T00:00:00.001Z",
        "2026-01-01T00:00:00.001Z",
        "2026-01-01T00:00:00.002Z",
        "2026-01-01T00:00:00.001Z",
    ]
