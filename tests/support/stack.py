"""A whole userstream in this process: activity, acl and edge against a test's nats-server."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from tests.conftest import RunningActivity, service_env, start_activity
from tests.support.edge import RunningEdge, edge_settings, start_edge
from tests.support.sse import SSEStream, open_stream
from userstream.acl.service import AclService
from userstream.acl.settings import AclSettings
from userstream.events import ActivityInput
from userstream.rpc.acl import AclClient
from userstream.rpc.activity import RecordResult
from userstream.tokens import issue_token

SECRET = "test-secret-that-is-long-enough-for-hs256"


@dataclass
class Stack:
    nats_url: str
    activity: RunningActivity
    acl_service: AclService
    acl: AclClient
    edge: RunningEdge

    @property
    def base_url(self) -> str:
        return self.edge.base_url

    def token(self, user_id: str, ttl: float = 3600) -> str:
        return issue_token(user_id, SECRET, ttl, now=time.time())

    def auth(self, user_id: str, ttl: float = 3600) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(user_id, ttl)}"}

    async def record(self, type: str, organization_id: str, **fields: object) -> str:  # mirrors the field
        result: RecordResult = await self.activity.client.record(
            ActivityInput(type=type, organization_id=organization_id, **fields)  # type: ignore[arg-type]
        )
        return result.cursor

    async def page(self, organization_id: str, entity_id: str = "p1", action: str = "updated", **fields: object) -> str:
        return await self.record(f"page.{action}", organization_id, entity_id=entity_id, **fields)

    async def entity(self, entity_type: str, organization_id: str, action: str = "updated", **fields: object) -> str:
        """A product or organization event (``entity_id`` defaults to ``e-<type>``)."""
        if entity_type != "organization":
            fields.setdefault("entity_id", f"e-{entity_type}")
        return await self.record(f"{entity_type}.{action}", organization_id, **fields)

    async def membership(self, user_id: str, organization_id: str, action: str = "created", role: str = "") -> str:
        """A membership event recorded straight through activity (as a CDC feed would), not through acl."""
        return await self.record(f"membership.{action}", organization_id, user_id=user_id, role=role)

    async def head(self) -> str:
        return await self.activity.client.get_cursor()

    async def stream(self, user_id: str, *, last_event_id: str | None = None, **kwargs: Any) -> SSEStream:
        """``user_id``'s /me/stream, resuming after ``last_event_id`` when given."""
        headers = {**self.auth(user_id), **kwargs.pop("headers", {})}
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        return await open_stream(self.base_url, headers=headers, **kwargs)

    async def stop(self) -> None:
        await self.edge.stop()
        await self.acl.close()
        await self.acl_service.stop()
        await self.activity.client.close()
        await self.activity.service.stop()


async def start_acl_service(nats_url: str, **env: str) -> AclService:
    service = AclService(AclSettings.load(port=0, env=service_env(nats_url, **env)))
    await service.start()
    await service.wait_ready()
    return service


async def start_stack(nats_url: str, edge_env: dict[str, str] | None = None, **env: str) -> Stack:
    """activity, acl and an edge; ``env`` (no ``USERSTREAM_`` prefix) goes to all three, ``edge_env`` to the edge."""
    activity = await start_activity(nats_url, **env)
    acl_service = await start_acl_service(nats_url, **env)
    acl_addr = f"127.0.0.1:{acl_service.port}"
    edge = await start_edge(edge_settings(nats_url, acl_addr, SECRET, **{**env, **(edge_env or {})}))
    return Stack(nats_url, activity, acl_service, AclClient(acl_addr), edge)


async def start_another_edge(stack: Stack, **env: str) -> RunningEdge:
    """A second edge process's worth of state (its own NATS connection, channels, registry) on the same stack."""
    return await start_edge(edge_settings(stack.nats_url, f"127.0.0.1:{stack.acl_service.port}", SECRET, **env))
