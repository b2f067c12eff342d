"""``userstream.acl.v1.AclService``: messages in, domain calls, messages out. Errors map at the boundary."""

from __future__ import annotations

from userstream.acl._validation import require_id, require_system_role
from userstream.acl.mutations import MembershipMutations
from userstream.acl.queries import SubjectQueries
from userstream.acl.readiness import Readiness
from userstream.acl.system_roles import SystemRoles
from userstream.proto.acl.v1 import acl_pb2 as pb
from userstream.proto.acl.v1 import acl_pb2_grpc as pb_grpc
from userstream.rpc.acl import membership_change_to_pb, subject_result_to_pb, subject_to_pb
from userstream.rpc.server import Context

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["AclService"].full_name


class AclServicer(pb_grpc.AclServiceServicer):
    def __init__(
        self, queries: SubjectQueries, mutations: MembershipMutations, roles: SystemRoles, readiness: Readiness
    ) -> None:
        self._queries = queries
        self._mutations = mutations
        self._roles = roles
        self._readiness = readiness

    async def GetSubject(self, request: pb.GetSubjectRequest, context: Context) -> pb.Subject:  # noqa: N802
        return subject_to_pb(await self._queries.get_subject(request.user_id, request.at_cursor))

    async def GetSubjects(  # noqa: N802  # gRPC method name
        self, request: pb.GetSubjectsRequest, context: Context
    ) -> pb.GetSubjectsResponse:
        answers = await self._queries.get_subjects([(item.user_id, item.at_cursor) for item in request.requests])
        return pb.GetSubjectsResponse(results=[subject_result_to_pb(answer) for answer in answers])

    async def CheckAccess(  # noqa: N802  # gRPC method name
        self, request: pb.CheckAccessRequest, context: Context
    ) -> pb.CheckAccessResponse:
        return pb.CheckAccessResponse(allowed=self._queries.check_access(request.user_id, request.items))

    async def GrantMembership(  # noqa: N802  # gRPC method name
        self, request: pb.GrantMembershipRequest, context: Context
    ) -> pb.MembershipChange:
        change = await self._mutations.grant(request.user_id, request.organization_id, request.role)
        return membership_change_to_pb(change)

    async def UpdateMembership(  # noqa: N802  # gRPC method name
        self, request: pb.UpdateMembershipRequest, context: Context
    ) -> pb.MembershipChange:
        change = await self._mutations.update(request.user_id, request.organization_id, request.role)
        return membership_change_to_pb(change)

    async def RevokeMembership(  # noqa: N802  # gRPC method name
        self, request: pb.RevokeMembershipRequest, context: Context
    ) -> pb.MembershipChange:
        change = await self._mutations.revoke(request.user_id, request.organization_id)
        return membership_change_to_pb(change)

    async def SetSystemRole(  # noqa: N802  # gRPC method name
        self, request: pb.SetSystemRoleRequest, context: Context
    ) -> pb.SetSystemRoleResponse:
        user_id = require_id(request.user_id, "user_id")
        role = require_system_role(request.system_role)
        self._readiness.require()
        await self._roles.set(user_id, role)
        return pb.SetSystemRoleResponse(user_id=user_id, system_role=role)
