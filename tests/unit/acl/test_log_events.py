"""Membership events read back from the bodies the recorder stores."""

from __future__ import annotations

import pytest

from userstream.acl_state.log_events import MembershipEvent, NotAMembershipEventError, decode_membership_event
from userstream.events import ActivityInput, Limits, encode_body, validate_activity
from userstream.events.model import Action
from userstream.policy import default_policy


def body(**fields: str) -> bytes:
    return encode_body(validate_activity(ActivityInput(**fields), default_policy(), Limits()))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("type_", "role", "action"),
    [("membership.created", "member", Action.CREATE), ("membership.updated", "admin", Action.UPDATE)],
)
def test_created_and_updated_carry_the_role(type_: str, role: str, action: Action) -> None:
    data = body(type=type_, user_id="alice", organization_id="acme", role=role)
    assert decode_membership_event("user.alice", data) == MembershipEvent("alice", action, "acme", role)


def test_deleted_carries_the_role_it_had_or_none() -> None:
    with_role = body(type="membership.deleted", user_id="alice", organization_id="acme", role="admin")
    without = body(type="membership.deleted", user_id="alice", organization_id="acme")
    assert decode_membership_event("user.alice", with_role).role == "admin"
    assert decode_membership_event("user.alice", without) == MembershipEvent("alice", Action.DELETE, "acme", None)


@pytest.mark.parametrize(
    ("subject", "data"),
    [
        ("user.alice", b"not json"),
        ("user.alice", b"{}"),
        ("user.bob", body(type="membership.created", user_id="alice", organization_id="acme", role="member")),
        ("user.alice", body(type="page.created", entity_id="p1", organization_id="acme", user_id="alice")),
        (
            "user.alice",
            b'{"type":"membership.created","entityType":null,"resourceType":"membership","organizationId":"acme",'
            b'"userId":"alice","data":{"userId":"alice","organizationId":"other","role":"member"}}',
        ),
        (
            "user.alice",
            b'{"type":"membership.created","entityType":null,"resourceType":"membership","organizationId":"acme",'
            b'"userId":"alice","data":{"userId":"alice","organizationId":"acme"}}',
        ),
    ],
)
def test_anything_else_is_refused(subject: str, data: bytes) -> None:
    with pytest.raises(NotAMembershipEventError):
        decode_membership_event(subject, data)
