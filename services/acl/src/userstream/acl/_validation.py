"""Checks of request fields, each raising InvalidArgumentError naming the field."""

from __future__ import annotations

from userstream.errors import InvalidArgumentError
from userstream.events.validation import is_valid_id
from userstream.permissions import SYSTEM_ROLES
from userstream.policy import Policy


def require_id(value: str, field: str) -> str:
    if not value:
        raise InvalidArgumentError(field, "is required")
    if not is_valid_id(value):
        raise InvalidArgumentError(field, "must match [A-Za-z0-9_-]{1,128}")
    return value


def require_role(policy: Policy, role: str, field: str = "role") -> str:
    if not role:
        raise InvalidArgumentError(field, "is required")
    if not policy.knows_role(role):
        raise InvalidArgumentError(field, f"{role!r} is not a role of the policy {list(policy.organization_roles)}")
    return role


def require_system_role(role: str, field: str = "system_role") -> str:
    if role not in SYSTEM_ROLES:
        raise InvalidArgumentError(field, f"must be one of {list(SYSTEM_ROLES)}")
    return role
