"""Permission decisions: the one place that says whether a user may see an event.

Pure functions over a ``Policy``; the acl service answers ``CheckAccess`` with
them and the edge applies them to every event it delivers. Rules (CONTRACT §4),
first match wins:

1. ``membership.*`` reaches only the member it concerns.
2. Everything else reaches members of the event's organization whose role is in
   the entity type's ``read`` list. A system admin who is a member may read
   every entity type in the organization; membership is still required.
"""

from __future__ import annotations

from userstream.policy import Policy

SYSTEM_ADMIN = "admin"
SYSTEM_USER = "user"
SYSTEM_ROLES = (SYSTEM_ADMIN, SYSTEM_USER)
READ = "read"


def may_read_entity(policy: Policy, system_role: str, membership_role: str | None, entity_type: str) -> bool:
    """Whether a user holding ``membership_role`` in an organization may read ``entity_type`` there.

    ``membership_role`` is None when the user is not a member of the organization.
    """
    if membership_role is None:
        return False
    rule = policy.entities.get(entity_type)
    if rule is None:
        return False
    return system_role == SYSTEM_ADMIN or membership_role in rule.read


def may_receive_membership_event(user_id: str, member_id: str) -> bool:
    """Membership events reach only the member they concern."""
    return user_id == member_id


def may_read_public(policy: Policy, entity_type: str, *, marked_public: bool) -> bool:
    """Whether an anonymous client of the public stream may see this change."""
    rule = policy.entities.get(entity_type)
    return marked_public and rule is not None and rule.public
