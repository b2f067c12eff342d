"""The demo page and the dev-only API, mounted by ``create_app`` only when ``settings.devtools`` is set.

This API mints a token for any user and changes anyone's memberships, so it
must never run in production. Nothing in the environment or in the flags of
``userstream edge`` turns it on: only the dev stack's edge process
(``userstream.dev.edge_process``) sets ``devtools``, and only on a loopback
address. Each request must also name a loopback host (no DNS rebinding) and
changes must be JSON (no cross-site form posts).

    GET    /                                   the demo page (with ``demo.js``)
    GET    /dev/demo                           demo users, organizations and roles
    GET    /dev/token?user=ID                  a stream token for ID
    GET    /dev/users/{id}                     the user's memberships (acl)
    POST   /dev/memberships                    {userId, organizationId, role}: grant, or change the role
    DELETE /dev/memberships/{userId}/{orgId}   revoke
    POST   /dev/changes                        {type, organizationId, entityId?, data?, changedKeys?, sourceId?}
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec
import structlog
from litestar import Litestar, Request, Response, Router, delete, get, post
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.handlers import BaseRouteHandler
from litestar.params import FromPath, FromQuery

from userstream.edge.assets import JAVASCRIPT, static_file
from userstream.edge.errors import BadRequestError, EdgeError, UnavailableHTTPError
from userstream.edge.runtime import EdgeRuntime
from userstream.edge.settings import DevToolsSettings
from userstream.errors import (
    AlreadyExistsError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    UserstreamError,
)
from userstream.events.model import ActivityInput, Tx
from userstream.rpc.activity import ActivityClient
from userstream.tokens import TokenError, issue_token

log = structlog.get_logger("userstream.edge")

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "[::1]", "::1"})
_NO_STORE = {"Cache-Control": "no-store"}
S = TypeVar("S", bound=msgspec.Struct)
R = TypeVar("R")


class ForbiddenError(EdgeError):
    status, code = 403, "forbidden"


class NotFoundHTTPError(EdgeError):
    status, code = 404, "not_found"


class ConflictError(EdgeError):
    status, code = 409, "conflict"


class UnsupportedMediaError(EdgeError):
    status, code = 415, "unsupported_media_type"


class MembershipBody(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    user_id: str
    organization_id: str
    role: str = "member"


class ChangeBody(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    type: str
    organization_id: str
    entity_id: str = ""
    user_id: str = ""
    data: dict[str, Any] | None = None
    changed_keys: list[str] = msgspec.field(default_factory=list)
    source_id: str = ""
    changed_field: str = ""


@dataclass(frozen=True)
class DevTools:
    """What ``create_app`` mounts: the routes, and a lifespan that holds the activity client."""

    router: Router
    lifespan: Callable[[Litestar], AbstractAsyncContextManager[None]]


def mount_devtools(settings: DevToolsSettings, jwt_secret: str, grpc_token: str | None = None) -> DevTools:
    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        app.state.dev_activity = ActivityClient(settings.activity_addr, token=grpc_token)
        try:
            yield
        finally:
            await app.state.dev_activity.close()

    @get("/dev/demo")
    async def demo_info(runtime: NamedDependency[EdgeRuntime]) -> Response[object]:
        roles = list(runtime.settings.policy.organization_roles)
        return Response({"users": [], "organizations": [], **(settings.demo or {}), "roles": roles}, headers=_NO_STORE)

    @get("/dev/token")
    async def token(user: FromQuery[str]) -> Response[object]:
        try:
            minted = issue_token(user, jwt_secret, settings.token_ttl)
        except TokenError as error:
            raise BadRequestError(f"user: {error}") from None
        return Response({"token": minted, "expiresIn": settings.token_ttl}, headers=_NO_STORE)

    route_handlers = [demo_page, demo_script, demo_info, token, user_memberships, grant, revoke, record_change]
    router = Router(
        "/",
        route_handlers=route_handlers,
        guards=[_loopback_only],
        dependencies={"activity": Provide(_activity, sync_to_thread=False)},
        include_in_schema=False,
    )
    return DevTools(router=router, lifespan=lifespan)


@get("/")
async def demo_page() -> Response[bytes]:
    return Response(static_file("demo.html"), media_type="text/html; charset=utf-8", headers=_NO_STORE)


@get("/demo.js")
async def demo_script() -> Response[bytes]:
    return Response(static_file("demo.js"), media_type=JAVASCRIPT, headers=_NO_STORE)


@get("/dev/users/{user_id:str}")
async def user_memberships(user_id: FromPath[str], runtime: NamedDependency[EdgeRuntime]) -> Response[object]:
    subject = await _call(runtime.acl.get_subject(user_id), runtime)
    memberships = [{"organizationId": org, "role": role} for org, role in sorted(subject.memberships.items())]
    body = {"userId": subject.user_id, "systemRole": subject.system_role, "memberships": memberships}
    return Response({**body, "cursor": subject.cursor}, headers=_NO_STORE)


@post("/dev/memberships", status_code=200)
async def grant(request: Request[Any, Any, Any], runtime: NamedDependency[EdgeRuntime]) -> dict[str, str]:
    body = await _json_body(request, MembershipBody)
    try:
        change = await _call(runtime.acl.grant_membership(body.user_id, body.organization_id, body.role), runtime)
    except ConflictError:
        change = await _call(runtime.acl.update_membership(body.user_id, body.organization_id, body.role), runtime)
    return {
        "userId": change.user_id,
        "organizationId": change.organization_id,
        "role": change.role,
        "cursor": change.cursor,
    }


@delete("/dev/memberships/{user_id:str}/{organization_id:str}", status_code=200)
async def revoke(
    user_id: FromPath[str], organization_id: FromPath[str], runtime: NamedDependency[EdgeRuntime]
) -> dict[str, str]:
    change = await _call(runtime.acl.revoke_membership(user_id, organization_id), runtime)
    return {
        "userId": change.user_id,
        "organizationId": change.organization_id,
        "role": change.role,
        "cursor": change.cursor,
    }


@post("/dev/changes", status_code=200)
async def record_change(
    request: Request[Any, Any, Any], activity: NamedDependency[ActivityClient], runtime: NamedDependency[EdgeRuntime]
) -> dict[str, str]:
    body = await _json_body(request, ChangeBody)
    tx = Tx(transaction_id=uuid.uuid4().hex, source_id=body.source_id or None, changed_field=body.changed_field or None)
    result = await _call(
        activity.record(
            ActivityInput(
                type=body.type,
                organization_id=body.organization_id,
                entity_id=body.entity_id,
                user_id=body.user_id,
                data_json="" if body.data is None else json.dumps(body.data),
                changed_keys=tuple(body.changed_keys),
                tx=tx,
            )
        ),
        runtime,
    )
    return {"cursor": result.cursor}


def _activity(state: State) -> ActivityClient:
    client: ActivityClient = state.dev_activity
    return client


def _loopback_only(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Refuse requests that name another host: a page elsewhere must not reach this API by DNS rebinding."""
    host = connection.headers.get("host", "")
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    if name not in LOOPBACK_HOSTS:
        raise ForbiddenError("the dev API answers only requests to a loopback host")


async def _json_body(request: Request[Any, Any, Any], kind: type[S]) -> S:
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        raise UnsupportedMediaError("send the body as application/json")
    try:
        return msgspec.json.decode(await request.body(), type=kind)
    except msgspec.ValidationError as error:
        raise BadRequestError(f"invalid body: {error}") from None
    except msgspec.DecodeError:
        raise BadRequestError("the body is not JSON") from None


async def _call(pending: Awaitable[R], runtime: EdgeRuntime) -> R:
    """Await a gRPC client call, answering its domain errors as HTTP errors."""
    try:
        result: R = await pending
    except InvalidArgumentError as error:
        raise BadRequestError(str(error)) from None
    except AlreadyExistsError as error:
        raise ConflictError(str(error)) from None
    except NotFoundError as error:
        raise NotFoundHTTPError(str(error)) from None
    except FailedPreconditionError as error:  # e.g. a write into a deleted organization
        raise ConflictError(str(error)) from None
    except UserstreamError as error:
        # The gRPC details (status, the service's address) go to the log, not into the response.
        log.warning("devtools.call_failed", error=str(error))
        raise UnavailableHTTPError("the service did not answer", runtime.settings.retry_after) from None
    return result
