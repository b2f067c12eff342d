"""Typed face of ``userstream.acl.v1``: message conversion and an async client.

The edge calls ``AclClient.get_subject(user_id, at_cursor)`` when a stream
starts (``"now"``) or resumes (the client's cursor) and gets a ``Subject``. A
cursor acl cannot answer for raises ``CursorRefusedError`` (its ``reason`` is the
``must-refetch`` reason); acl or NATS down raises ``UnavailableError``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import grpc

from userstream.acl_state.subject import CURSOR_UNKNOWN, CursorRefusedError, MembershipChange, Subject
from userstream.errors import FailedPreconditionError
from userstream.permissions import READ
from userstream.proto.acl.v1 import acl_pb2 as pb
from userstream.proto.acl.v1 import acl_pb2_grpc as pb_grpc
from userstream.rpc.channel import call, open_channel
from userstream.tracing import Tracing

__all__ = ["AccessQuestion", "AclClient", "CursorRefusedError", "MembershipChange", "Subject"]

DEFAULT_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class AccessQuestion:
    """May the user perform ``action`` on entities of ``entity_type`` in ``organization_id``?"""

    entity_type: str
    organization_id: str
    action: str = READ


def subject_to_pb(subject: Subject) -> pb.Subject:
    return pb.Subject(
        user_id=subject.user_id,
        system_role=subject.system_role,
        memberships=[
            pb.Membership(user_id=subject.user_id, organization_id=organization_id, role=role)
            for organization_id, role in sorted(subject.memberships.items())
        ],
        cursor=subject.cursor,
    )


def subject_from_pb(message: pb.Subject) -> Subject:
    memberships = {membership.organization_id: membership.role for membership in message.memberships}
    return Subject(message.user_id, message.system_role, memberships, message.cursor)


def membership_change_to_pb(change: MembershipChange) -> pb.MembershipChange:
    membership = pb.Membership(user_id=change.user_id, organization_id=change.organization_id, role=change.role)
    return pb.MembershipChange(membership=membership, cursor=change.cursor)


def membership_change_from_pb(message: pb.MembershipChange) -> MembershipChange:
    membership = message.membership
    return MembershipChange(membership.user_id, membership.organization_id, membership.role, message.cursor)


def subject_result_to_pb(answer: Subject | CursorRefusedError) -> pb.SubjectResult:
    if isinstance(answer, CursorRefusedError):
        return pb.SubjectResult(refusal=str(answer))
    return pb.SubjectResult(subject=subject_to_pb(answer))


def subject_result_from_pb(message: pb.SubjectResult) -> Subject | CursorRefusedError:
    if message.HasField("subject"):
        return subject_from_pb(message.subject)
    return CursorRefusedError.from_message(message.refusal) or CursorRefusedError(CURSOR_UNKNOWN, message.refusal)


class AclClient:
    """Calls the acl service. Errors arrive as domain errors (``userstream.errors``)."""

    def __init__(
        self,
        address: str,
        timeout: float = DEFAULT_TIMEOUT,
        token: str | None = None,
        *,
        tracing: Tracing | None = None,
    ) -> None:
        self._channel = open_channel(address, token, tracing)
        self._stub = pb_grpc.AclServiceStub(self._channel)
        self._timeout = timeout

    async def get_subject(self, user_id: str, at_cursor: str = "") -> Subject:
        """The user's subject: ``at_cursor`` is ``""`` (latest applied), ``"now"`` (the head) or a cursor."""
        request = pb.GetSubjectRequest(user_id=user_id, at_cursor=at_cursor)
        try:
            response = await call(self._stub.GetSubject(request, timeout=self._timeout))
        except FailedPreconditionError as exc:
            raise CursorRefusedError.from_message(str(exc)) or exc from exc.__cause__
        return subject_from_pb(response)

    async def get_subjects(self, requests: Sequence[tuple[str, str]]) -> list[Subject | CursorRefusedError]:
        """Several ``get_subject`` questions (user id, at_cursor) in one call; a refused cursor is its answer."""
        request = pb.GetSubjectsRequest(
            requests=[pb.GetSubjectRequest(user_id=user_id, at_cursor=at_cursor) for user_id, at_cursor in requests]
        )
        response = await call(self._stub.GetSubjects(request, timeout=self._timeout))
        return [subject_result_from_pb(result) for result in response.results]

    async def check_access(self, user_id: str, items: Iterable[AccessQuestion]) -> list[bool]:
        request = pb.CheckAccessRequest(
            user_id=user_id,
            items=[
                pb.CheckAccessRequest.Item(
                    entity_type=item.entity_type, organization_id=item.organization_id, action=item.action
                )
                for item in items
            ],
        )
        response = await call(self._stub.CheckAccess(request, timeout=self._timeout))
        return list(response.allowed)

    async def grant_membership(self, user_id: str, organization_id: str, role: str) -> MembershipChange:
        request = pb.GrantMembershipRequest(user_id=user_id, organization_id=organization_id, role=role)
        return membership_change_from_pb(await call(self._stub.GrantMembership(request, timeout=self._timeout)))

    async def update_membership(self, user_id: str, organization_id: str, role: str) -> MembershipChange:
        request = pb.UpdateMembershipRequest(user_id=user_id, organization_id=organization_id, role=role)
        return membership_change_from_pb(await call(self._stub.UpdateMembership(request, timeout=self._timeout)))

    async def revoke_membership(self, user_id: str, organization_id: str) -> MembershipChange:
        request = pb.RevokeMembershipRequest(user_id=user_id, organization_id=organization_id)
        return membership_change_from_pb(await call(self._stub.RevokeMembership(request, timeout=self._timeout)))

    async def set_system_role(self, user_id: str, system_role: str) -> str:
        request = pb.SetSystemRoleRequest(user_id=user_id, system_role=system_role)
        response = await call(self._stub.SetSystemRole(request, timeout=self._timeout))
        return response.system_role

    @property
    def channel(self) -> grpc.aio.Channel:
        return self._channel

    async def close(self) -> None:
        await self._channel.close()
