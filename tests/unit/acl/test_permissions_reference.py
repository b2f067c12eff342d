"""``userstream.permissions`` against a deliberately simple reference, over random policies (CONTRACT §4).

The reference reads the raw tables the policy text was written from, not the
loaded ``Policy``, so the loader and the decision are checked together.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

from userstream.permissions import (
    SYSTEM_ROLES,
    may_read_entity,
    may_read_public,
    may_receive_membership_event,
)
from userstream.policy import parse_policy

ROLE_NAMES = ["owner", "editor", "viewer", "admin", "member"]
ENTITY_NAMES = ["organization", "page", "attachment", "invoice", "post"]


@dataclass(frozen=True)
class RawPolicy:
    roles: list[str]
    # entity → (read roles, public)
    entities: dict[str, tuple[list[str], bool]]

    def toml(self) -> str:
        lines = ["[roles]", f"organization = {self.roles!r}".replace("'", '"')]
        for name, (read, public) in self.entities.items():
            lines += [f"[entities.{name}]", f"read = {read!r}".replace("'", '"')]
            if public:
                lines.append("public = true")
        return "\n".join(lines) + "\n"


@st.composite
def raw_policies(draw: st.DrawFn) -> RawPolicy:
    roles = draw(st.lists(st.sampled_from(ROLE_NAMES), min_size=1, max_size=4, unique=True))
    entities: dict[str, tuple[list[str], bool]] = {}
    for name in draw(st.lists(st.sampled_from(ENTITY_NAMES), max_size=4, unique=True)):
        read = draw(st.lists(st.sampled_from(roles), min_size=1, unique=True))
        public = name != "organization" and draw(st.booleans())
        entities[name] = (read, public)
    return RawPolicy(roles, entities)


def reference_may_read(raw: RawPolicy, system_role: str, membership_role: str | None, entity_type: str) -> bool:
    """Members only; then the entity's read list, which a system admin bypasses; undeclared types never."""
    if membership_role is None:
        return False
    if entity_type == "organization" and entity_type not in raw.entities:
        read = raw.roles  # the context entity defaults to every role
    elif entity_type in raw.entities:
        read = raw.entities[entity_type][0]
    else:
        return False
    if system_role == "admin":
        return True
    return membership_role in read


def reference_may_read_public(raw: RawPolicy, entity_type: str, marked_public: bool) -> bool:
    return marked_public and entity_type in raw.entities and raw.entities[entity_type][1]


@given(
    raw_policies(),
    st.sampled_from(SYSTEM_ROLES),
    st.none() | st.sampled_from(ROLE_NAMES),
    st.sampled_from([*ENTITY_NAMES, "membership", "unknown"]),
)
def test_may_read_entity_matches_reference(
    raw: RawPolicy, system_role: str, membership_role: str | None, entity_type: str
) -> None:
    policy = parse_policy(raw.toml(), source="generated")
    expected = reference_may_read(raw, system_role, membership_role, entity_type)
    assert may_read_entity(policy, system_role, membership_role, entity_type) is expected


@given(raw_policies(), st.sampled_from([*ENTITY_NAMES, "unknown"]), st.booleans())
def test_may_read_public_matches_reference(raw: RawPolicy, entity_type: str, marked_public: bool) -> None:
    policy = parse_policy(raw.toml(), source="generated")
    expected = reference_may_read_public(raw, entity_type, marked_public)
    assert may_read_public(policy, entity_type, marked_public=marked_public) is expected


@given(st.sampled_from(["alice", "bob", "carol"]), st.sampled_from(["alice", "bob", "carol"]))
def test_membership_events_reach_exactly_their_member(user_id: str, member_id: str) -> None:
    assert may_receive_membership_event(user_id, member_id) is (user_id == member_id)
