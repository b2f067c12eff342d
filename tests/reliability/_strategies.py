"""Hypothesis strategies for everything that enters userstream from outside: activities, acl requests, HTTP.

Each strategy mixes values the contract accepts with near misses (one character
too long, a control character, the wrong case, a neighbouring type) and plain
garbage, so both the accepting and the refusing paths are exercised.
"""

from __future__ import annotations

import json
import time
import warnings
from typing import Any

import jwt
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import strategies as st
from jwt.warnings import InsecureKeyLengthWarning

from userstream.proto.acl.v1 import acl_pb2
from userstream.proto.activity.v1 import activity_pb2

ROLES = ["admin", "member", "viewer"]
ENTITY_NAMES = ["page", "attachment", "secret", "organization", "membership", "comment", "Page", "page_"]
SUFFIXES = ["created", "updated", "deleted", "removed", "Created", ""]

valid_ids = st.from_regex(r"[A-Za-z0-9_-]{1,128}", fullmatch=True)
bad_ids = st.one_of(
    st.sampled_from(["", " ", "a b", "a.b", "a*", ">", "ü", "a" * 129, "a\n", "a\x00b", "user.x", "org.*"]),
    st.text(max_size=140),
)
ids = st.one_of(valid_ids, valid_ids, bad_ids)
roles = st.one_of(
    st.sampled_from(ROLES),
    st.sampled_from(ROLES),
    st.sampled_from(["", "Admin", "owner", " member"]),
    st.text(max_size=70),
)
types = st.one_of(
    st.builds(lambda name, suffix: f"{name}.{suffix}", st.sampled_from(ENTITY_NAMES), st.sampled_from(SUFFIXES)),
    st.text(max_size=40),
)
texts = st.one_of(st.text(max_size=40), st.text(min_size=250, max_size=300), st.just(""))

_json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
)
_json_values = st.recursive(
    _json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
data_json = st.one_of(
    st.just(""),
    st.dictionaries(st.text(max_size=10), _json_values, max_size=6).map(json.dumps),
    _json_values.map(json.dumps),  # arrays and scalars: not an object
    st.sampled_from(
        [
            "{",
            "{}",
            "{} {}",
            '{"a": 1e400}',
            '{"a": 123456789012345678901234567890}',
            '{"a":"\\ud800"}',
            '{"a": NaN}',
            '{"a": 1,}',
            "[" * 70 + "]" * 70,
            '{"a":' * 70 + "1" + "}" * 70,
            '{"x": "' + "y" * 300_000 + '"}',
            '{"userId": "someone-else"}',
            '{"role": 7}',
        ]
    ),
    st.text(max_size=60),
)
timestamps = st.builds(
    lambda seconds, nanos: Timestamp(seconds=seconds, nanos=nanos),
    st.one_of(st.integers(min_value=-(2**63), max_value=2**63 - 1), st.integers(min_value=0, max_value=2**33)),
    st.one_of(st.integers(min_value=-(2**31), max_value=2**31 - 1), st.integers(min_value=0, max_value=999_999_999)),
)


@st.composite
def valid_activities(draw: st.DrawFn) -> activity_pb2.Activity:
    """An activity the contract accepts (under the reliability policy)."""
    name = draw(st.sampled_from(["page", "attachment", "secret", "organization", "membership"]))
    suffix = draw(st.sampled_from(["created", "updated", "deleted"]))
    organization = draw(valid_ids)
    message = activity_pb2.Activity(
        type=f"{name}.{suffix}",
        organization_id=organization,
        data_json=draw(
            st.one_of(st.just(""), st.dictionaries(st.text(max_size=10), _json_values, max_size=5).map(json.dumps))
        ),
        changed_keys=draw(st.lists(st.text(min_size=1, max_size=20), max_size=3)),
        idempotency_key=draw(st.one_of(st.just(""), valid_ids)),
    )
    if name == "membership":
        message.user_id = draw(valid_ids)
        message.role = draw(st.sampled_from(ROLES)) if suffix != "deleted" else draw(st.sampled_from(["", *ROLES]))
    else:
        message.user_id = draw(st.one_of(st.just(""), valid_ids))
        message.entity_id = organization if name == "organization" and draw(st.booleans()) else ""
        if name != "organization":
            message.entity_id = draw(valid_ids)
        message.public = name == "page" and draw(st.booleans())
    if draw(st.booleans()):
        message.tx.CopyFrom(activity_pb2.Tx(transaction_id=draw(st.text(max_size=30)), source_id="s", changed_field=""))
    if draw(st.booleans()):
        message.created_at.CopyFrom(Timestamp(seconds=draw(st.integers(0, 4_000_000_000)), nanos=0))
    return message


_MUTATIONS: dict[str, st.SearchStrategy[Any]] = {
    "type": types,
    "entity_id": ids,
    "organization_id": ids,
    "user_id": ids,
    "role": roles,
    "data_json": data_json,
    "idempotency_key": st.one_of(st.text(max_size=140), st.sampled_from([" k", "k\n", "k" * 129, "\x7f"])),
    "public": st.booleans(),
}


@st.composite
def activities(draw: st.DrawFn) -> activity_pb2.Activity:
    """A valid activity, often with one or two fields replaced by a near miss or garbage."""
    message = draw(valid_activities())
    for field in draw(st.lists(st.sampled_from([*_MUTATIONS, "changed_keys", "tx", "created_at"]), max_size=2)):
        if field == "changed_keys":
            message.changed_keys[:] = draw(st.lists(texts, min_size=1, max_size=4))
        elif field == "tx":
            message.tx.CopyFrom(
                activity_pb2.Tx(transaction_id=draw(texts), source_id=draw(texts), changed_field=draw(texts))
            )
        elif field == "created_at":
            message.created_at.CopyFrom(draw(timestamps))
        else:
            setattr(message, field, draw(_MUTATIONS[field]))
    return message


cursors = st.one_of(
    st.sampled_from(["", "now", "0", "-1", "01", " 1", "1e3", "9" * 25, "9" * 26, "NaN"]),
    st.integers(min_value=0, max_value=10**25).map(str),
    st.text(max_size=30),
)


def acl_requests() -> st.SearchStrategy[tuple[str, Any]]:
    """(method, request) for every AclService method."""
    item = st.builds(
        acl_pb2.CheckAccessRequest.Item,
        entity_type=st.one_of(st.sampled_from(ENTITY_NAMES), st.sampled_from(ENTITY_NAMES), st.text(max_size=20)),
        organization_id=ids,
        action=st.one_of(st.just("read"), st.just("read"), st.sampled_from(["write", "", "READ"]), st.text(max_size=9)),
    )
    return st.one_of(
        st.tuples(st.just("GetSubject"), st.builds(acl_pb2.GetSubjectRequest, user_id=ids, at_cursor=cursors)),
        st.tuples(
            st.just("CheckAccess"),
            st.builds(acl_pb2.CheckAccessRequest, user_id=ids, items=st.lists(item, max_size=5)),
        ),
        st.tuples(
            st.just("GrantMembership"),
            st.builds(acl_pb2.GrantMembershipRequest, user_id=ids, organization_id=ids, role=roles),
        ),
        st.tuples(
            st.just("UpdateMembership"),
            st.builds(acl_pb2.UpdateMembershipRequest, user_id=ids, organization_id=ids, role=roles),
        ),
        st.tuples(
            st.just("RevokeMembership"),
            st.builds(acl_pb2.RevokeMembershipRequest, user_id=ids, organization_id=ids),
        ),
        st.tuples(
            st.just("SetSystemRole"),
            st.builds(
                acl_pb2.SetSystemRoleRequest,
                user_id=ids,
                system_role=st.one_of(st.sampled_from(["admin", "user", "Admin", "root", ""]), st.text(max_size=10)),
            ),
        ),
    )


# -- HTTP -------------------------------------------------------------------------------------------

# Header-safe text: printable ASCII without the characters HTTP/1.1 framing would split on.
header_text = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=60)


@st.composite
def tokens(draw: st.DrawFn, secret: str) -> tuple[str, bool]:
    """(token, whether the edge must accept it)."""
    now = int(time.time())
    user = draw(st.one_of(valid_ids.map(lambda user: "f" + user[:100]), ids))
    user_ok = (
        isinstance(user, str) and 0 < len(user) <= 128 and all(c.isascii() and (c.isalnum() or c in "_-") for c in user)
    )
    kind = draw(
        st.sampled_from(
            [
                "valid",
                "expired",
                "no-exp",
                "no-sub",
                "sub-number",
                "wrong-secret",
                "hs512",
                "none",
                "garbage",
                "tampered",
            ]
        )
    )
    claims: dict[str, Any] = {"sub": user, "exp": now + 600, "iat": now}
    if kind == "valid":
        return jwt.encode(claims, secret, algorithm="HS256"), user_ok
    if kind == "expired":
        return jwt.encode({**claims, "exp": now - 60}, secret, algorithm="HS256"), False
    if kind == "no-exp":
        return jwt.encode({"sub": user}, secret, algorithm="HS256"), False
    if kind == "no-sub":
        return jwt.encode({"exp": now + 600}, secret, algorithm="HS256"), False
    if kind == "sub-number":
        return jwt.encode({**claims, "sub": 42}, secret, algorithm="HS256"), False
    if kind == "wrong-secret":
        return jwt.encode(claims, secret + "x", algorithm="HS256"), False
    if kind == "hs512":
        with warnings.catch_warnings():  # the right secret, but too short for HS512: exactly the point
            warnings.simplefilter("ignore", InsecureKeyLengthWarning)
            return jwt.encode(claims, secret, algorithm="HS512"), False
    if kind == "none":
        return jwt.encode(claims, None, algorithm="none"), False
    if kind == "tampered":
        header, payload, signature = jwt.encode(claims, secret, algorithm="HS256").split(".")
        return f"{header}.{payload}.{signature[::-1]}", False
    return draw(header_text), False
