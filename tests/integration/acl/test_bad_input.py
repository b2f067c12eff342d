"""Every bad input is INVALID_ARGUMENT naming the field, records nothing, and leaves acl serving."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import grpc
import pytest

from tests.conftest import RunningActivity
from tests.integration.acl.conftest import RunningAcl, serving
from userstream.errors import InvalidArgumentError
from userstream.proto.acl.v1 import acl_pb2 as pb
from userstream.proto.acl.v1 import acl_pb2_grpc as pb_grpc
from userstream.rpc.acl import AccessQuestion, AclClient

pytestmark = pytest.mark.integration

Call = Callable[[AclClient], Awaitable[object]]
TOO_LONG = "x" * 129

CASES: list[tuple[str, Call, str]] = [
    ("grant without user", lambda c: c.grant_membership("", "acme", "member"), "user_id"),
    ("grant bad user", lambda c: c.grant_membership("al ice", "acme", "member"), "user_id"),
    ("grant long user", lambda c: c.grant_membership(TOO_LONG, "acme", "member"), "user_id"),
    ("grant bad org", lambda c: c.grant_membership("alice", "ac.me", "member"), "organization_id"),
    ("grant without org", lambda c: c.grant_membership("alice", "", "member"), "organization_id"),
    ("grant unknown role", lambda c: c.grant_membership("alice", "acme", "owner"), "role"),
    ("grant without role", lambda c: c.grant_membership("alice", "acme", ""), "role"),
    ("update unknown role", lambda c: c.update_membership("alice", "acme", "root"), "role"),
    ("update bad user", lambda c: c.update_membership("a/b", "acme", "admin"), "user_id"),
    ("revoke bad org", lambda c: c.revoke_membership("alice", "*"), "organization_id"),
    ("revoke without user", lambda c: c.revoke_membership("", "acme"), "user_id"),
    ("subject without user", lambda c: c.get_subject(""), "user_id"),
    ("subject bad user", lambda c: c.get_subject("user.*"), "user_id"),
    ("subject text cursor", lambda c: c.get_subject("alice", "latest"), "at_cursor"),
    ("subject negative cursor", lambda c: c.get_subject("alice", "-1"), "at_cursor"),
    ("subject leading zero", lambda c: c.get_subject("alice", "007"), "at_cursor"),
    ("subject NOW upper case", lambda c: c.get_subject("alice", "NOW"), "at_cursor"),
    ("subject huge cursor", lambda c: c.get_subject("alice", "9" * 40), "at_cursor"),
    ("access bad user", lambda c: c.check_access("", [AccessQuestion("page", "acme")]), "user_id"),
    (
        "access unknown action",
        lambda c: c.check_access("alice", [AccessQuestion("page", "acme"), AccessQuestion("page", "acme", "write")]),
        "items[1].action",
    ),
    ("access empty action", lambda c: c.check_access("alice", [AccessQuestion("page", "acme", "")]), "items[0].action"),
    (
        "access undeclared type",
        lambda c: c.check_access("alice", [AccessQuestion("invoice", "acme")]),
        "items[0].entity_type",
    ),
    (
        "access membership type",
        lambda c: c.check_access("alice", [AccessQuestion("membership", "acme")]),
        "items[0].entity_type",
    ),
    (
        "access bad org",
        lambda c: c.check_access("alice", [AccessQuestion("page", "")]),
        "items[0].organization_id",
    ),
    ("access too many", lambda c: c.check_access("alice", [AccessQuestion("page", "acme")] * 1001), "items"),
    ("role unknown", lambda c: c.set_system_role("alice", "root"), "system_role"),
    ("role empty", lambda c: c.set_system_role("alice", ""), "system_role"),
    ("role bad user", lambda c: c.set_system_role("", "admin"), "user_id"),
]


async def test_bad_input_names_the_field_and_records_nothing(acl: RunningAcl, activity: RunningActivity) -> None:
    # One acl for every case: starting servers per case would cost more than the cases themselves.
    head = await activity.client.get_cursor()
    for name, call, field in CASES:
        with pytest.raises(InvalidArgumentError) as error:
            await call(acl.client)
        assert error.value.field == field, name
    assert await activity.client.get_cursor() == head
    assert (await acl.client.get_subject("alice")).system_role == "user"
    assert await serving(acl.address)


async def test_undecodable_requests_are_invalid(acl: RunningAcl) -> None:
    channel = grpc.aio.insecure_channel(acl.address)
    try:
        method = channel.unary_unary(
            "/userstream.acl.v1.AclService/GetSubject",
            request_serializer=lambda raw: raw,
            response_deserializer=pb.Subject.FromString,
        )
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await method(b"\xff\xff\xff", timeout=5.0)
        assert error.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        # The generated stub and a well-formed request still work on the same channel.
        stub = pb_grpc.AclServiceStub(channel)
        subject = await stub.GetSubject(pb.GetSubjectRequest(user_id="alice"), timeout=5.0)
        assert subject.system_role == "user"
    finally:
        await channel.close()
