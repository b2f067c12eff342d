"""Whether this replica may answer: NATS connected, memberships caught up, system roles loaded."""

from __future__ import annotations

from userstream.acl.follower import MembershipFollower, SyncState
from userstream.acl.system_roles import SystemRoles
from userstream.errors import UnavailableError
from userstream.nats_connection import NatsConnection


class Readiness:
    def __init__(self, connection: NatsConnection, follower: MembershipFollower, roles: SystemRoles) -> None:
        self._connection = connection
        self._follower = follower
        self._roles = roles

    @property
    def ready(self) -> bool:
        return self._connection.connected and self._follower.synced and self._roles.loaded

    def require(self) -> None:
        """Raise UnavailableError saying why this replica cannot answer now."""
        if self.ready:
            return
        if self._follower.state is SyncState.REFUSED:
            raise UnavailableError(f"this acl replica refuses to serve: {self._follower.refusal}")
        if not self._connection.connected:
            raise UnavailableError("NATS is not connected")
        raise UnavailableError("this acl replica is catching up with the log")
