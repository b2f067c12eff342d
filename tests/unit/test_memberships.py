"""``apply_membership_event``: the one rule for membership state (CONTRACT §2), idempotent."""

from __future__ import annotations

import pytest

from userstream.events.model import Action
from userstream.memberships import apply_membership_event


def test_created_makes_a_member() -> None:
    memberships: dict[str, str] = {}
    assert apply_membership_event(memberships, Action.CREATE, "acme", "member") is None
    assert memberships == {"acme": "member"}


def test_created_for_an_existing_member_sets_the_role() -> None:
    memberships = {"acme": "member"}
    assert apply_membership_event(memberships, Action.CREATE, "acme", "admin") == "member"
    assert memberships == {"acme": "admin"}


def test_updated_sets_the_role() -> None:
    memberships = {"acme": "member", "beta": "admin"}
    assert apply_membership_event(memberships, Action.UPDATE, "acme", "admin") == "member"
    assert memberships == {"acme": "admin", "beta": "admin"}


def test_updated_for_a_non_member_makes_them_one() -> None:
    memberships: dict[str, str] = {}
    assert apply_membership_event(memberships, Action.UPDATE, "acme", "member") is None
    assert memberships == {"acme": "member"}


def test_deleted_removes_and_returns_the_role_held() -> None:
    memberships = {"acme": "admin", "beta": "member"}
    assert apply_membership_event(memberships, Action.DELETE, "acme", None) == "admin"
    assert memberships == {"beta": "member"}


def test_deleted_for_a_non_member_changes_nothing() -> None:
    memberships = {"beta": "member"}
    assert apply_membership_event(memberships, Action.DELETE, "acme", "member") is None
    assert memberships == {"beta": "member"}


@pytest.mark.parametrize("action", [Action.CREATE, Action.UPDATE])
def test_created_or_updated_without_a_role_is_a_programming_error(action: Action) -> None:
    memberships: dict[str, str] = {}
    with pytest.raises(ValueError, match="without a role"):
        apply_membership_event(memberships, action, "acme", None)
    assert memberships == {}


@pytest.mark.parametrize(
    "events",
    [
        [(Action.CREATE, "acme", "member")],
        [(Action.CREATE, "acme", "member"), (Action.UPDATE, "acme", "admin")],
        [(Action.CREATE, "acme", "member"), (Action.DELETE, "acme", None), (Action.CREATE, "beta", "admin")],
        [(Action.DELETE, "acme", None)],
    ],
)
def test_applying_the_same_sequence_twice_gives_the_same_state(events: list[tuple[Action, str, str | None]]) -> None:
    once: dict[str, str] = {}
    for action, organization, role in events:
        apply_membership_event(once, action, organization, role)
    twice = dict(once)
    for action, organization, role in events:
        apply_membership_event(twice, action, organization, role)
    assert twice == once
