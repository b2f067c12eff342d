"""Validation of activities from outside (CONTRACT §2).

Every rule raises ``InvalidArgumentError`` naming the field, relative to the
activity (``type``, ``tx.source_id``); callers nest it (``activities[3].type``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

import msgspec

from userstream.errors import InvalidArgumentError
from userstream.events.model import ACTION_BY_SUFFIX, Action, Activity, ActivityInput, Kind, Tx, kind_of
from userstream.policy import ENTITY_NAME, Policy

ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,128}")
_TYPE_PATTERN = re.compile(rf"({ENTITY_NAME.pattern})\.(created|updated|deleted)")
# CONTRACT §2 fixes this one; it becomes the Nats-Msg-Id header.
_MAX_IDEMPOTENCY_KEY = 128
# C0 and C1 controls and the Unicode line separators: none belongs in a header value.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_OBJECT = msgspec.json.Decoder(dict[str, msgspec.Raw])
# A JSON string (skipped whole) or a bracket: enough to measure nesting without decoding.
_STRING_OR_BRACKET = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')
_OPENING = frozenset((b"[", b"{"))
_MEMBERSHIP_KEYS = ("userId", "organizationId", "role")


DEFAULT_MAX_DATA_BYTES = 256 * 1024
# The stream refuses messages over 1 MiB (MAX_MESSAGE_BYTES in eventlog/stream.py);
# data plus the largest metadata the limits below allow must stay under it.
MAX_DATA_BYTES_CEILING = 768 * 1024


@dataclass(frozen=True, slots=True)
class Limits:
    """Size limits on what an activity may carry (the defaults are the documented ones).

    Together they keep an encoded event below the stream's message size limit,
    so an activity that passes validation is never refused by JetStream.
    """

    max_data_bytes: int = DEFAULT_MAX_DATA_BYTES
    # Nesting of `data` (the object itself is level 1). Deeper documents are refused
    # rather than left to whichever parser meets them first.
    max_data_depth: int = 64
    max_changed_keys: int = 1024
    # All changed keys together, in characters.
    max_changed_keys_chars: int = 16 * 1024
    # Each changed key and each `tx` field, in characters.
    max_text_chars: int = 256


def is_valid_id(value: str) -> bool:
    return ID_PATTERN.fullmatch(value) is not None


def validate_activity(raw: ActivityInput, policy: Policy, limits: Limits, *, now: datetime | None = None) -> Activity:
    """Check ``raw`` against every rule of CONTRACT §2 and return the activity to record."""
    name, action = _parse_type(raw.type)
    kind = kind_of(name)
    if kind is Kind.PRODUCT and policy.rule(name) is None:
        raise InvalidArgumentError("type", f"entity type {name!r} is not declared in the policy")
    organization_id = _required_id(raw.organization_id, "organization_id")
    user_id = _optional_id(raw.user_id, "user_id")
    entity_id, role = _check_kind_fields(raw, kind, action, policy, organization_id)
    if kind is Kind.MEMBERSHIP:
        user_id = _required_id(raw.user_id, "user_id")
    _check_public(raw, kind, name, policy)
    data = _parse_data(raw.data_json, limits)
    if kind is Kind.MEMBERSHIP:
        assert user_id is not None
        data = _with_membership_keys(data, user_id, organization_id, role)
    return Activity(
        type=raw.type,
        entity_name=name,
        action=action,
        organization_id=organization_id,
        entity_id=entity_id,
        user_id=user_id,
        role=role,
        data_json=data,
        changed_keys=_check_changed_keys(raw.changed_keys, limits),
        tx=_check_tx(raw.tx, limits),
        idempotency_key=_check_idempotency_key(raw.idempotency_key),
        public=raw.public,
        created_at=_check_created_at(raw.created_at, now),
    )


def _parse_type(value: str) -> tuple[str, Action]:
    match = _TYPE_PATTERN.fullmatch(value)
    if match is None:
        raise InvalidArgumentError("type", "must be `<name>.<created|updated|deleted>` with a lower-case name")
    return match.group(1), ACTION_BY_SUFFIX[match.group(2)]


def _required_id(value: str, field: str) -> str:
    if not value:
        raise InvalidArgumentError(field, "is required")
    if not is_valid_id(value):
        raise InvalidArgumentError(field, "must match [A-Za-z0-9_-]{1,128}")
    return value


def _optional_id(value: str, field: str) -> str | None:
    return _required_id(value, field) if value else None


def _check_kind_fields(
    raw: ActivityInput, kind: Kind, action: Action, policy: Policy, organization_id: str
) -> tuple[str | None, str | None]:
    """The entity id and role this kind of event carries."""
    if kind is Kind.MEMBERSHIP:
        if raw.entity_id:
            raise InvalidArgumentError("entity_id", "membership events have no entity id; use user_id")
        if not raw.role and action is not Action.DELETE:
            raise InvalidArgumentError("role", "is required for membership.created and membership.updated")
        if raw.role and not policy.knows_role(raw.role):
            raise InvalidArgumentError("role", f"{raw.role!r} is not a role of the policy {policy.organization_roles}")
        return None, raw.role or None
    if raw.role:
        raise InvalidArgumentError("role", "applies only to membership events")
    if kind is Kind.ORGANIZATION:
        if raw.entity_id and raw.entity_id != organization_id:
            raise InvalidArgumentError("entity_id", "of an organization event is its organization_id")
        return organization_id, None
    return _required_id(raw.entity_id, "entity_id"), None


def _check_public(raw: ActivityInput, kind: Kind, name: str, policy: Policy) -> None:
    if not raw.public:
        return
    rule = policy.rule(name)
    if kind is not Kind.PRODUCT or rule is None or not rule.public:
        raise InvalidArgumentError("public", f"entity type {name!r} is not marked public in the policy")


def _parse_data(text: str, limits: Limits) -> bytes | None:
    if not text:
        return None
    data = text.encode()
    if len(data) > limits.max_data_bytes:
        raise InvalidArgumentError("data_json", f"is {len(data)} bytes; the limit is {limits.max_data_bytes}")
    try:
        _OBJECT.decode(data)
    except msgspec.DecodeError as exc:
        raise InvalidArgumentError("data_json", f"must be a JSON object: {exc}") from None
    except RecursionError:
        raise InvalidArgumentError("data_json", f"is nested deeper than {limits.max_data_depth} levels") from None
    if _depth_exceeds(data, limits.max_data_depth):
        raise InvalidArgumentError("data_json", f"is nested deeper than {limits.max_data_depth} levels")
    # Raw line breaks can only be insignificant whitespace in JSON; removing them
    # keeps the text (and every number in it) intact and one SSE line long.
    return data.replace(b"\r", b" ").replace(b"\n", b" ")


def _depth_exceeds(data: bytes, max_depth: int) -> bool:
    """Whether valid JSON ``data`` nests containers deeper than ``max_depth``."""
    if data.count(b"[") + data.count(b"{") <= max_depth:
        return False  # the common case, decided at C speed
    depth = 0
    for match in _STRING_OR_BRACKET.finditer(data):
        token = match.group()
        if token in _OPENING:
            depth += 1
            if depth > max_depth:
                return True
        elif len(token) == 1:
            depth -= 1
    return False


def _with_membership_keys(data: bytes | None, user_id: str, organization_id: str, role: str | None) -> bytes:
    """Membership data always holds ``userId``, ``organizationId`` and ``role`` (CONTRACT §5)."""
    wanted = {"userId": user_id, "organizationId": organization_id, "role": role}
    present = _OBJECT.decode(data) if data else {}
    missing: dict[str, str | None] = {}
    for key in _MEMBERSHIP_KEYS:
        if key not in present:
            missing[key] = wanted[key]
        elif msgspec.json.decode(present[key]) != wanted[key]:
            raise InvalidArgumentError("data_json", f"`{key}` disagrees with the activity's own field")
    if not missing:
        assert data is not None
        return data
    prefix = msgspec.json.encode(missing)[:-1]  # `{"userId":…` without the closing brace
    if data is None or not present:
        return prefix + b"}"
    body = data.lstrip()[1:]  # the object's members after its opening brace
    return prefix + b"," + body


def _check_changed_keys(keys: tuple[str, ...], limits: Limits) -> tuple[str, ...] | None:
    if not keys:
        return None
    if len(keys) > limits.max_changed_keys:
        raise InvalidArgumentError("changed_keys", f"has {len(keys)} entries; the limit is {limits.max_changed_keys}")
    for index, key in enumerate(keys):
        _check_text(key, f"changed_keys[{index}]", limits, allow_empty=False)
    total = sum(map(len, keys))
    if total > limits.max_changed_keys_chars:
        raise InvalidArgumentError(
            "changed_keys", f"has {total} characters in all; the limit is {limits.max_changed_keys_chars}"
        )
    return keys


def _check_tx(tx: Tx | None, limits: Limits) -> Tx | None:
    if tx is None:
        return None
    fields = {"transaction_id": tx.transaction_id, "source_id": tx.source_id, "changed_field": tx.changed_field}
    for name, value in fields.items():
        if value:
            _check_text(value, f"tx.{name}", limits, allow_empty=True)
    if not any(fields.values()):
        return None
    return Tx(tx.transaction_id or None, tx.source_id or None, tx.changed_field or None)


def _check_text(value: str, field: str, limits: Limits, *, allow_empty: bool) -> None:
    if not value and not allow_empty:
        raise InvalidArgumentError(field, "must not be empty")
    if len(value) > limits.max_text_chars:
        raise InvalidArgumentError(field, f"is longer than {limits.max_text_chars} characters")


def _check_idempotency_key(key: str) -> str | None:
    if not key:
        return None
    if len(key) > _MAX_IDEMPOTENCY_KEY:
        raise InvalidArgumentError("idempotency_key", f"is longer than {_MAX_IDEMPOTENCY_KEY} characters")
    if _CONTROL.search(key) or key != key.strip():
        raise InvalidArgumentError("idempotency_key", "must not contain control characters or surrounding spaces")
    return key


def _check_created_at(value: datetime | None, now: datetime | None) -> datetime:
    if value is None:
        return now or datetime.now(UTC)
    if value.tzinfo is None:
        raise InvalidArgumentError("created_at", "must carry a time zone")
    return value.astimezone(UTC)
