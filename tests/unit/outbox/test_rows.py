from __future__ import annotations

from datetime import UTC, datetime

import pytest

from userstream.errors import InvalidArgumentError
from userstream.events.model import ActivityInput, Tx
from userstream.events.validation import Limits, validate_activity
from userstream.outbox.client import row_values
from userstream.outbox.rows import OutboxRow, row_message_id
from userstream.policy import load_policy

MOMENT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def row(**values: object) -> OutboxRow:
    base: dict[str, object] = {
        "id": 7,
        "xid": 1000,
        "type": "page.updated",
        "organization_id": "acme",
        "entity_id": "p1",
        "user_id": None,
        "role": None,
        "data": None,
        "changed_keys": None,
        "transaction_id": None,
        "source_id": None,
        "changed_field": None,
        "idempotency_key": None,
        "public": False,
        "created_at": MOMENT,
    }
    return OutboxRow(**{**base, **values})  # type: ignore[arg-type]


def test_a_row_becomes_the_input_grpc_would_carry() -> None:
    full = row(
        data='{"title": "Hello", "n": 12345678901234567890}',
        changed_keys=["title"],
        source_id="s1",
        idempotency_key="k",
    )
    assert full.activity_input() == ActivityInput(
        type="page.updated",
        organization_id="acme",
        entity_id="p1",
        data_json='{"title": "Hello", "n": 12345678901234567890}',
        changed_keys=("title",),
        tx=Tx("", "s1", ""),
        idempotency_key="k",
        created_at=MOMENT,
    )
    assert row().activity_input().tx is None


def test_validation_is_the_activity_services_own() -> None:
    policy = load_policy(None)
    activity = validate_activity(row().activity_input(), policy, Limits())
    assert activity.created_at == MOMENT
    with pytest.raises(InvalidArgumentError, match="changed_keys"):
        validate_activity(row(changed_keys=["a", None]).activity_input(), policy, Limits())
    with pytest.raises(InvalidArgumentError, match="organization_id"):
        validate_activity(row(organization_id="").activity_input(), policy, Limits())


def test_the_helper_writes_absent_fields_as_null() -> None:
    values = row_values(ActivityInput(type="page.updated", organization_id="acme", entity_id="p1"))
    assert values == ("page.updated", "acme", "p1", None, None, None, None, None, None, None, None, False, None)


def test_message_ids_name_the_outbox_and_the_row_within_the_header_limit() -> None:
    msg_id = row_message_id("56999fde-de89-467c-9b16-96a334e73780", 2**63 - 1)
    assert msg_id == "outbox-56999fde-de89-467c-9b16-96a334e73780-9223372036854775807"
    assert len(msg_id) <= 128
