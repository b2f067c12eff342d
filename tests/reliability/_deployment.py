"""A deployment for reliability runs: activity, acl and N edges as separate processes on one NATS (or cluster)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.reliability.oracle import OraclePolicy
from tests.support.processes import ServiceProcess, clean_environment
from userstream.rpc.acl import AclClient
from userstream.rpc.activity import ActivityClient
from userstream.tokens import issue_token

SECRET = "reliability-secret-that-is-long-enough-for-hs256"

# Three roles and a type only org admins read, so role changes change what a member sees;
# `page` is public so the anonymous stream has something to carry.
POLICY = """\
[roles]
organization = ["admin", "member", "viewer"]

[entities.organization]
read = ["admin", "member", "viewer"]

[entities.page]
read = ["admin", "member", "viewer"]
public = true

[entities.attachment]
read = ["admin", "member"]

[entities.secret]
read = ["admin"]
"""


@dataclass
class Deployment:
    root: Path
    nats_url: str
    activity: ServiceProcess
    acl: ServiceProcess
    edges: list[ServiceProcess]
    policy: OraclePolicy = field(default_factory=lambda: OraclePolicy.from_toml(POLICY))
    _activity_client: ActivityClient | None = None
    _acl_client: AclClient | None = None

    @classmethod
    def plan(
        cls,
        root: Path,
        nats_url: str,
        *,
        edges: int = 2,
        env: dict[str, str] | None = None,
        edge_env: dict[str, str] | None = None,
    ) -> Deployment:
        root.mkdir(parents=True, exist_ok=True)
        policy_file = root / "policy.toml"
        policy_file.write_text(POLICY)
        common = {
            "NATS_URL": nats_url,
            "POLICY": str(policy_file),
            "JWT_SECRET": SECRET,
            "LOG_FORMAT": "json",
            **(env or {}),
        }
        activity = ServiceProcess("activity", clean_environment(**common), root / "activity.log")
        acl = ServiceProcess("acl", clean_environment(**common), root / "acl.log")
        edge_values = {**common, "ACL_ADDR": acl.address, **(edge_env or {})}
        edge_processes = [
            ServiceProcess("edge", clean_environment(**edge_values), root / f"edge{index}.log")
            for index in range(edges)
        ]
        return cls(root, nats_url, activity, acl, edge_processes)

    @property
    def processes(self) -> list[ServiceProcess]:
        return [self.activity, self.acl, *self.edges]

    @property
    def edge_urls(self) -> list[str]:
        return [edge.base_url for edge in self.edges]

    async def start(self) -> None:
        for process in self.processes:
            process.start()
        await asyncio.gather(self.activity.wait_ready(), self.acl.wait_ready())
        acl_addr = self.acl.address
        for edge in self.edges:
            if edge.env["USERSTREAM_ACL_ADDR"] != acl_addr:  # acl had to move to another port
                edge.kill()
                edge.env["USERSTREAM_ACL_ADDR"] = acl_addr
                edge.start()
        await asyncio.gather(*(edge.wait_ready() for edge in self.edges))

    @property
    def activity_client(self) -> ActivityClient:
        if self._activity_client is None:
            self._activity_client = ActivityClient(self.activity.address, timeout=5.0)
        return self._activity_client

    @property
    def acl_client(self) -> AclClient:
        if self._acl_client is None:
            self._acl_client = AclClient(self.acl.address, timeout=5.0)
        return self._acl_client

    def auth(self, user_id: str, ttl: float = 3600) -> dict[str, str]:
        return {"Authorization": f"Bearer {issue_token(user_id, SECRET, ttl, now=time.time())}"}

    async def stop(self) -> None:
        for client in (self._activity_client, self._acl_client):
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.close()
        # All at once: each stops in order on its own (streams drained, snapshot written, NATS drained).
        for process in self.processes:
            process.signal_stop()
        for process in self.processes:
            process.wait_stopped()

    def not_running(self) -> list[str]:
        """Processes that are down (after a run every one must still be up: none may crash on its own)."""
        return [f"{p.command}:{p.port} exited {p.returncode}" for p in self.processes if not p.running]
