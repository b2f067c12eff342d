"""Every rule of CONTRACT §2, and every bad input it implies, against ``validate_activity``."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import msgspec
import pytest

from userstream.errors import InvalidArgumentError
from userstream.events import Action, ActivityInput, Kind, Limits, Tx, validate_activity
from userstream.policy import Policy, default_policy, parse_policy

POLICY = default_policy()
LIMITS = Limits()
NOW = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)

PAGE = ActivityInput(type="page.updated", entity_id="p1", organization_id="acme")
MEMBERSHIP = ActivityInput(type="membership.created", organization_id="acme", user_id="alice", role="member")
ORGANIZATION = ActivityInput(type="organization.updated", organization_id="acme")


def validate(raw: ActivityInput, policy: Policy = POLICY, limits: Limits = LIMITS):
    return validate_activity(raw, policy, limits, now=NOW)


def rejected(raw: ActivityInput, field: str, policy: Policy = POLICY, limits: Limits = LIMITS) -> str:
    """Assert ``raw`` is refused naming ``field``; returns the message."""
    with pytest.raises(InvalidArgumentError) as caught:
        validate(raw, policy, limits)
    assert caught.value.field == field, caught.value
    assert str(caught.value).startswith(f"{field}: ")
    return caught.value.message


# --- type -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("type_", "name", "action"),
    [
        ("page.created", "page", Action.CREATE),
        ("page.updated", "page", Action.UPDATE),
        ("page.deleted", "page", Action.DELETE),
        ("attachment.deleted", "attachment", Action.DELETE),
    ],
)
def test_type_gives_entity_name_and_action(type_: str, name: str, action: Action) -> None:
    activity = validate(replace(PAGE, type=type_))
    assert (activity.type, activity.entity_name, activity.action, activity.kind) == (type_, name, action, Kind.PRODUCT)


@pytest.mark.parametrize(
    "type_",
    [
        "",
        "page",
        "page.",
        ".updated",
        "page.update",
        "page.changed",
        "page.UPDATED",
        "Page.updated",
        "page.updated.x",
        "page..updated",
        "pa ge.updated",
        " page.updated",
        "page.updated ",
        "page.updated\n",
        "1page.updated",
        "päge.updated",
        "page-x.updated",
        "a" * 65 + ".updated",
    ],
)
def test_malformed_type_is_rejected(type_: str) -> None:
    rejected(replace(PAGE, type=type_), "type")


def test_type_the_policy_does_not_declare_is_rejected_not_dropped() -> None:
    message = rejected(replace(PAGE, type="invoice.created"), "type")
    assert "invoice" in message
    assert "not declared" in message


def test_type_declared_by_a_custom_policy_is_accepted() -> None:
    policy = parse_policy('[roles]\norganization = ["member"]\n[entities.invoice]\nread = ["member"]\n', source="test")
    assert validate(replace(PAGE, type="invoice.created"), policy).entity_name == "invoice"
    rejected(replace(PAGE, type="page.created"), "type", policy)


# --- ids --------------------------------------------------------------------------------------

VALID_IDS = ["a", "A", "0", "_", "-", "a-b_C9", "x" * 128]
INVALID_IDS = [
    "x" * 129,
    "a b",
    "a.b",
    "a*",
    "a>",
    "a/b",
    "é",
    "a\n",
    "\x00",
    " a",
    "a\t",
    "ａ",  # fullwidth letter
    "٣",  # an Arabic-Indic digit: a digit to Python, not to the contract
]


@pytest.mark.parametrize("value", VALID_IDS)
@pytest.mark.parametrize("field", ["entity_id", "organization_id", "user_id"])
def test_valid_ids_are_accepted(field: str, value: str) -> None:
    activity = validate(replace(PAGE, **{field: value}))
    assert getattr(activity, field) == value


@pytest.mark.parametrize("value", INVALID_IDS)
@pytest.mark.parametrize("field", ["entity_id", "organization_id", "user_id"])
def test_invalid_ids_are_rejected(field: str, value: str) -> None:
    message = rejected(replace(PAGE, **{field: value}), field)
    assert "[A-Za-z0-9_-]{1,128}" in message


@pytest.mark.parametrize("value", INVALID_IDS)
def test_invalid_member_id_is_rejected(value: str) -> None:
    rejected(replace(MEMBERSHIP, user_id=value), "user_id")


def test_organization_id_is_required_for_every_kind() -> None:
    for raw in (PAGE, MEMBERSHIP, ORGANIZATION):
        assert rejected(replace(raw, organization_id=""), "organization_id") == "is required"


# --- product entities -------------------------------------------------------------------------


def test_product_event_needs_an_entity_id() -> None:
    assert rejected(replace(PAGE, entity_id=""), "entity_id") == "is required"


def test_product_event_user_id_is_the_optional_actor() -> None:
    assert validate(PAGE).user_id is None
    assert validate(replace(PAGE, user_id="bob")).user_id == "bob"


def test_product_event_carries_no_role() -> None:
    rejected(replace(PAGE, role="member"), "role")


# --- organization events ----------------------------------------------------------------------


def test_organization_event_entity_id_defaults_to_the_organization() -> None:
    activity = validate(ORGANIZATION)
    assert activity.kind is Kind.ORGANIZATION
    assert activity.entity_id == "acme"


def test_organization_event_may_repeat_its_id_as_entity_id() -> None:
    assert validate(replace(ORGANIZATION, entity_id="acme")).entity_id == "acme"


def test_organization_event_entity_id_must_be_the_organization() -> None:
    rejected(replace(ORGANIZATION, entity_id="other"), "entity_id")


def test_organization_event_carries_no_role() -> None:
    rejected(replace(ORGANIZATION, role="admin"), "role")


def test_organization_event_actor_is_optional() -> None:
    assert validate(replace(ORGANIZATION, user_id="bob")).user_id == "bob"


# --- membership events ------------------------------------------------------------------------


@pytest.mark.parametrize("type_", ["membership.created", "membership.updated"])
def test_membership_created_or_updated_needs_a_role(type_: str) -> None:
    rejected(replace(MEMBERSHIP, type=type_, role=""), "role")


def test_membership_deleted_needs_no_role() -> None:
    activity = validate(replace(MEMBERSHIP, type="membership.deleted", role=""))
    assert activity.role is None
    assert msgspec.json.decode(activity.data_json or b"") == {
        "userId": "alice",
        "organizationId": "acme",
        "role": None,
    }


def test_membership_deleted_may_name_the_role_held() -> None:
    activity = validate(replace(MEMBERSHIP, type="membership.deleted", role="admin"))
    assert msgspec.json.decode(activity.data_json or b"")["role"] == "admin"


@pytest.mark.parametrize("role", ["owner", "Admin", "admin ", "*"])
@pytest.mark.parametrize("type_", ["membership.created", "membership.updated", "membership.deleted"])
def test_membership_role_unknown_to_the_policy_is_rejected(type_: str, role: str) -> None:
    message = rejected(replace(MEMBERSHIP, type=type_, role=role), "role")
    assert "not a role of the policy" in message


def test_membership_needs_the_member() -> None:
    assert rejected(replace(MEMBERSHIP, user_id=""), "user_id") == "is required"


def test_membership_has_no_entity_id() -> None:
    rejected(replace(MEMBERSHIP, entity_id="x"), "entity_id")


def test_membership_data_always_holds_member_organization_and_role() -> None:
    activity = validate(MEMBERSHIP)
    assert activity.kind is Kind.MEMBERSHIP
    assert activity.entity_id is None
    assert activity.data_json == b'{"userId":"alice","organizationId":"acme","role":"member"}'


def test_membership_data_keeps_the_callers_keys_verbatim() -> None:
    activity = validate(replace(MEMBERSHIP, data_json='{"invitedBy": "carol", "n": 1.50}'))
    assert (
        activity.data_json
        == b'{"userId":"alice","organizationId":"acme","role":"member","invitedBy": "carol", "n": 1.50}'
    )


def test_membership_data_may_repeat_the_fields_when_they_agree() -> None:
    data = '{"role":"member","userId":"alice","organizationId":"acme"}'
    assert validate(replace(MEMBERSHIP, data_json=data)).data_json == data.encode()


def test_membership_data_adds_only_missing_keys() -> None:
    activity = validate(replace(MEMBERSHIP, data_json='{"role": "member"}'))
    assert msgspec.json.decode(activity.data_json or b"") == {
        "userId": "alice",
        "organizationId": "acme",
        "role": "member",
    }


def test_membership_data_of_an_empty_object_gets_the_fields() -> None:
    activity = validate(replace(MEMBERSHIP, data_json=" { } "))
    assert activity.data_json == b'{"userId":"alice","organizationId":"acme","role":"member"}'


@pytest.mark.parametrize(
    "data",
    ['{"userId":"mallory"}', '{"organizationId":"other"}', '{"role":"admin"}', '{"role":null}', '{"userId":1}'],
)
def test_membership_data_contradicting_the_activity_is_rejected(data: str) -> None:
    message = rejected(replace(MEMBERSHIP, data_json=data), "data_json")
    assert "disagrees" in message


# --- public -----------------------------------------------------------------------------------


def test_public_on_a_public_entity_type_is_kept() -> None:
    assert validate(replace(PAGE, public=True)).public is True
    assert validate(PAGE).public is False


@pytest.mark.parametrize(
    "raw",
    [
        replace(PAGE, type="attachment.created", public=True),
        replace(ORGANIZATION, public=True),
        replace(MEMBERSHIP, public=True),
    ],
    ids=["attachment", "organization", "membership"],
)
def test_public_on_a_type_the_policy_does_not_mark_public_is_rejected(raw: ActivityInput) -> None:
    assert "not marked public" in rejected(raw, "public")


# --- data -------------------------------------------------------------------------------------


def test_absent_data_stays_absent() -> None:
    assert validate(PAGE).data_json is None


@pytest.mark.parametrize(
    "data",
    ['{"a":1}', "{}", '{"nested":{"list":[1,"two",null,true,{"x":[]}]}}', '{"u":"\\u00e9\\n"}', '{"é":"ü 😀"}'],
)
def test_data_objects_are_kept_verbatim(data: str) -> None:
    assert validate(replace(PAGE, data_json=data)).data_json == data.encode()


@pytest.mark.parametrize(
    "number",
    ["12345678901234567890123456789", "0.1000000000000000055511151231257827", "1e400", "-0", "1E-7", "3.0"],
)
def test_data_numbers_are_kept_digit_for_digit(number: str) -> None:
    data = f'{{"n":{number}}}'
    assert validate(replace(PAGE, data_json=data)).data_json == data.encode()


@pytest.mark.parametrize(
    "data",
    [
        "[]",
        "[1,2]",
        '"text"',
        "1",
        "null",
        "true",
        "{",
        "{'a':1}",
        '{"a":1,}',
        '{"a":NaN}',
        '{"a":Infinity}',
        '{"a":01}',
        '{"a":1}{"b":2}',
        '{"a":1} x',
        '{"a":"line\nbreak"}',  # a raw control character inside a string
        "{a:1}",
        "\ufeff{}",
        "not json",
    ],
)
def test_data_that_is_not_a_json_object_is_rejected(data: str) -> None:
    assert "JSON object" in rejected(replace(PAGE, data_json=data), "data_json")


def test_data_whitespace_line_breaks_become_spaces_so_it_fits_one_sse_line() -> None:
    data = '{\r\n  "a": 1,\n  "b": "x\\ny"\n}\n'
    kept = validate(replace(PAGE, data_json=data)).data_json
    assert kept is not None
    assert b"\n" not in kept
    assert b"\r" not in kept
    assert msgspec.json.decode(kept) == {"a": 1, "b": "x\ny"}
    assert len(kept) == len(data.encode())


def test_data_at_the_size_limit_is_accepted_one_byte_more_is_not() -> None:
    limits = Limits(max_data_bytes=100)
    filler = "x" * (100 - len('{"a":""}'))
    validate(replace(PAGE, data_json=f'{{"a":"{filler}"}}'), limits=limits)
    message = rejected(replace(PAGE, data_json=f'{{"a":"{filler}x"}}'), "data_json", limits=limits)
    assert "101 bytes; the limit is 100" in message


def test_data_size_counts_utf8_bytes_not_characters() -> None:
    limits = Limits(max_data_bytes=20)
    rejected(replace(PAGE, data_json='{"a":"éééééééé"}'), "data_json", limits=limits)  # 16 chars, 24 bytes


def test_default_data_limit_is_256_kib() -> None:
    filler = "x" * (256 * 1024 - len('{"a":""}'))
    validate(replace(PAGE, data_json=f'{{"a":"{filler}"}}'))
    rejected(replace(PAGE, data_json=f'{{"a":"{filler}x"}}'), "data_json")


@pytest.mark.parametrize("opener", ["[", "{"])
def test_data_nesting_at_the_limit_is_accepted_one_level_more_is_not(opener: str) -> None:
    limits = Limits(max_data_depth=8)

    def document(depth: int) -> str:
        # depth counts the outer object as level 1
        if opener == "[":
            return '{"a":' + "[" * (depth - 1) + "]" * (depth - 1) + "}"
        return '{"a":' + '{"a":' * (depth - 2) + "{}" + "}" * (depth - 2) + "}"

    validate(replace(PAGE, data_json=document(8)), limits=limits)
    assert "deeper than 8" in rejected(replace(PAGE, data_json=document(9)), "data_json", limits=limits)


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    limits = Limits(max_data_depth=2)
    data = '{"a":"[[[[{{{{\\"[[[[", "b":["]]]]"]}'
    assert validate(replace(PAGE, data_json=data), limits=limits).data_json == data.encode()


@pytest.mark.parametrize("depth", [65, 1000, 100_000])
def test_deeply_nested_data_is_rejected_with_a_clear_error(depth: int) -> None:
    data = '{"a":' + "[" * depth + "]" * depth + "}"
    assert "nested deeper than 64 levels" in rejected(replace(PAGE, data_json=data), "data_json")


# --- changed_keys -----------------------------------------------------------------------------


def test_changed_keys_are_kept_in_order() -> None:
    assert validate(replace(PAGE, changed_keys=("name", "body", "é"))).changed_keys == ("name", "body", "é")


def test_no_changed_keys_is_null() -> None:
    assert validate(PAGE).changed_keys is None


def test_empty_changed_key_is_rejected() -> None:
    rejected(replace(PAGE, changed_keys=("name", "")), "changed_keys[1]")


def test_overlong_changed_key_is_rejected() -> None:
    validate(replace(PAGE, changed_keys=("k" * 256,)))
    rejected(replace(PAGE, changed_keys=("ok", "k" * 257)), "changed_keys[1]")


def test_too_many_changed_keys_are_rejected() -> None:
    validate(replace(PAGE, changed_keys=tuple(f"k{i}" for i in range(1024))))
    rejected(replace(PAGE, changed_keys=tuple(f"k{i}" for i in range(1025))), "changed_keys")


def test_changed_keys_have_a_total_size_budget() -> None:
    keys = tuple("k" * 200 for _ in range(100))  # 20,000 characters in all
    assert "characters in all" in rejected(replace(PAGE, changed_keys=keys), "changed_keys")


# --- tx ---------------------------------------------------------------------------------------


def test_tx_fields_are_kept() -> None:
    tx = Tx(transaction_id="t1", source_id="tab-7", changed_field="name")
    assert validate(replace(PAGE, tx=tx)).tx == tx


def test_tx_empty_fields_become_null() -> None:
    assert validate(replace(PAGE, tx=Tx(source_id="tab-7", transaction_id="", changed_field=""))).tx == Tx(
        None, "tab-7", None
    )


def test_tx_with_nothing_in_it_is_null() -> None:
    assert validate(replace(PAGE, tx=Tx("", "", ""))).tx is None
    assert validate(replace(PAGE, tx=Tx())).tx is None


@pytest.mark.parametrize("field", ["transaction_id", "source_id", "changed_field"])
def test_overlong_tx_field_is_rejected(field: str) -> None:
    validate(replace(PAGE, tx=Tx(**{field: "t" * 256})))
    rejected(replace(PAGE, tx=Tx(**{field: "t" * 257})), f"tx.{field}")


# --- idempotency_key --------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["k", "k" * 128, "order-42/line 3", "clé-ü-😀", "a b"])
def test_idempotency_keys_up_to_128_characters_are_accepted(key: str) -> None:
    assert validate(replace(PAGE, idempotency_key=key)).idempotency_key == key


def test_no_idempotency_key_is_none() -> None:
    assert validate(PAGE).idempotency_key is None


def test_idempotency_key_over_128_characters_is_rejected() -> None:
    assert "128" in rejected(replace(PAGE, idempotency_key="k" * 129), "idempotency_key")


@pytest.mark.parametrize(
    "key",
    ["a\nb", "a\rb", "a\r\nNats-Msg-Id: x", "a\x00", "\tk", "k\x7f", "k\x85", "k\u2028", " k", "k ", "k\u00a0"],
)
def test_idempotency_key_with_control_characters_or_surrounding_space_is_rejected(key: str) -> None:
    rejected(replace(PAGE, idempotency_key=key), "idempotency_key")


# --- created_at -------------------------------------------------------------------------------


def test_created_at_defaults_to_now() -> None:
    assert validate(PAGE).created_at == NOW


def test_created_at_defaults_to_the_clock_when_no_now_is_given() -> None:
    before = datetime.now(UTC)
    created = validate_activity(PAGE, POLICY, LIMITS).created_at
    assert before <= created <= datetime.now(UTC)


def test_created_at_is_kept_and_normalised_to_utc() -> None:
    moment = datetime(2025, 6, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    created = validate(replace(PAGE, created_at=moment)).created_at
    assert created == moment
    assert created.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "moment",
    [datetime(1, 1, 1, tzinfo=UTC), datetime(1970, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)],
)
def test_created_at_across_the_timestamp_range_is_accepted(moment: datetime) -> None:
    assert validate(replace(PAGE, created_at=moment)).created_at == moment


def test_created_at_without_a_time_zone_is_rejected() -> None:
    rejected(replace(PAGE, created_at=datetime(2025, 1, 1)), "created_at")  # noqa: DTZ001


# --- order of checks -------------------------------------------------------------------------


def test_the_type_is_checked_first() -> None:
    rejected(ActivityInput(type="bogus", entity_id="", organization_id=""), "type")
