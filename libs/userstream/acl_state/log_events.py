"""Reading membership events back from the log's stored bodies (``userstream.events.wire``)."""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from userstream.eventlog.subjects import USER_PREFIX
from userstream.events.model import ACTION_BY_SUFFIX, Action
from userstream.events.wire import MEMBERSHIP_DECODER, MEMBERSHIP_RESOURCE, VIEW_DECODER


class NotAMembershipEventError(ValueError):
    """A message on a user subject that is not a well-formed membership event."""


@dataclass(frozen=True, slots=True)
class MembershipEvent:
    user_id: str
    action: Action
    organization_id: str
    role: str | None


def decode_membership_event(subject: str, body: bytes) -> MembershipEvent:
    """The membership event stored under ``user.<id>``. Raises NotAMembershipEventError otherwise."""
    try:
        view = VIEW_DECODER.decode(body)
        data = MEMBERSHIP_DECODER.decode(view.data) if view.data is not None else None
    except msgspec.DecodeError as exc:
        raise NotAMembershipEventError(f"undecodable body: {exc}") from None
    name, _, suffix = view.type.partition(".")
    action = ACTION_BY_SUFFIX.get(suffix)
    if view.resource_type != MEMBERSHIP_RESOURCE or name != MEMBERSHIP_RESOURCE or action is None:
        raise NotAMembershipEventError(f"{view.type!r} is not a membership event")
    if data is None or view.user_id is None:
        raise NotAMembershipEventError("a membership event without its member")
    if subject != USER_PREFIX + view.user_id or data.user_id != view.user_id:
        raise NotAMembershipEventError(f"member {view.user_id!r} does not match the subject {subject!r}")
    if data.organization_id != view.organization_id:
        raise NotAMembershipEventError("organizationId disagrees between the event and its data")
    if action is not Action.DELETE and not data.role:
        raise NotAMembershipEventError(f"{view.type} without a role")
    return MembershipEvent(view.user_id, action, view.organization_id, data.role)
