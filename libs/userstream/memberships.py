"""How membership events change a user's memberships (CONTRACT §2), as one pure rule.

acl projects the log with it; the edge applies it to each connection in order.
Applying is idempotent: ``created`` for an existing member sets the role,
``updated`` for a non-member makes them one, ``deleted`` for a non-member
changes nothing.
"""

from __future__ import annotations

from collections.abc import MutableMapping

from userstream.events.model import Action


def apply_membership_event(
    memberships: MutableMapping[str, str], action: Action, organization_id: str, role: str | None
) -> str | None:
    """Apply one event to ``memberships`` (organization → role); returns the role held before."""
    previous = memberships.get(organization_id)
    if action is Action.DELETE:
        memberships.pop(organization_id, None)
    else:
        if role is None:
            raise ValueError(f"membership {action.value} without a role")
        memberships[organization_id] = role
    return previous
