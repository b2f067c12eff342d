"""Permission decisions (CONTRACT §4), pure: membership required, read lists, admins, public."""

from __future__ import annotations

import pytest

from userstream.permissions import may_read_entity, may_read_public, may_receive_membership_event
from userstream.policy import default_policy, parse_policy

POLICY = default_policy()
NARROW = parse_policy(
    '[roles]\norganization = ["admin", "member"]\n[entities.invoice]\nread = ["admin"]\n', source="test"
)


@pytest.mark.parametrize("entity", ["page", "attachment", "organization"])
@pytest.mark.parametrize("role", ["admin", "member"])
def test_members_read_what_the_default_policy_lists(entity: str, role: str) -> None:
    assert may_read_entity(POLICY, "user", role, entity)


@pytest.mark.parametrize("system_role", ["user", "admin"])
def test_non_members_read_nothing_not_even_system_admins(system_role: str) -> None:
    assert not may_read_entity(POLICY, system_role, None, "page")


def test_role_not_in_the_read_list_cannot_read() -> None:
    assert not may_read_entity(NARROW, "user", "member", "invoice")
    assert may_read_entity(NARROW, "user", "admin", "invoice")


def test_system_admin_member_reads_every_declared_type() -> None:
    assert may_read_entity(NARROW, "admin", "member", "invoice")


def test_undeclared_types_are_never_readable() -> None:
    assert not may_read_entity(POLICY, "admin", "admin", "invoice")


def test_membership_events_reach_only_the_member() -> None:
    assert may_receive_membership_event("alice", "alice")
    assert not may_receive_membership_event("bob", "alice")


def test_public_needs_both_the_flag_and_a_public_type() -> None:
    assert may_read_public(POLICY, "page", marked_public=True)
    assert not may_read_public(POLICY, "page", marked_public=False)
    assert not may_read_public(POLICY, "attachment", marked_public=True)
    assert not may_read_public(POLICY, "invoice", marked_public=True)
