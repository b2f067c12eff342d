"""Events and a recording hub for unit tests of the edge's per-connection logic."""

from __future__ import annotations

from userstream.cursor import CursorCodec
from userstream.edge.connection import Connection
from userstream.edge.events import LiveEvent, decode_event
from userstream.edge.hub import HubStats
from userstream.eventlog.reader import StoredMessage
from userstream.eventlog.subjects import org_subject, user_subject
from userstream.events import ActivityInput, Limits, encode_body, validate_activity
from userstream.policy import Policy, default_policy

CODEC = CursorCodec(1_700_000_000)


def event(sequence: int, type_: str, organization: str, user: str = "", role: str = "", **fields: object) -> LiveEvent:
    """The event the edge would decode from the log at ``sequence``."""
    raw = ActivityInput(type=type_, organization_id=organization, user_id=user, role=role, **fields)  # type: ignore[arg-type]
    if not type_.startswith(("membership.", "organization.")):
        raw = ActivityInput(
            type=type_,
            organization_id=organization,
            user_id=user,
            entity_id=f"e{sequence}",
            **fields,  # type: ignore[arg-type]
        )
    activity = validate_activity(raw, default_policy(), Limits())
    subject = user_subject(user) if type_.startswith("membership.") else org_subject(organization)
    decoded = decode_event(StoredMessage(sequence, subject, encode_body(activity), activity.public), CODEC)
    assert decoded is not None
    return decoded


def page(sequence: int, organization: str = "acme", **fields: object) -> LiveEvent:
    return event(sequence, "page.updated", organization, **fields)


class RecordingHub:
    """Stands in for channels.Hub: joins and leaves are recorded; joins hold the connection as the real one does."""

    def __init__(self) -> None:
        self.stats = HubStats()
        self.joined: list[tuple[str, int]] = []
        self.left: list[str] = []
        self.forgotten: list[Connection] = []

    def mark_dirty(self, outbox: object) -> None:
        """Writes are flushed by the event loop in the service; here tests take the outbox themselves."""

    def join(self, connection: Connection, subject: str, after: int) -> None:
        connection.hold()
        connection.channels[subject] = after
        self.joined.append((subject, after))

    def leave(self, connection: Connection, subject: str) -> None:
        connection.channels.pop(subject, None)
        self.left.append(subject)

    def forget(self, connection: Connection) -> None:
        self.forgotten.append(connection)


def connection(
    hub: RecordingHub,
    *,
    user: str | None = "alice",
    memberships: dict[str, str] | None = None,
    position: int = 10,
    target: int = 10,
    resumed: bool = False,
    max_bytes: int = 1_048_576,
    policy: Policy | None = None,
    system_role: str = "user",
) -> Connection:
    """A connection as the runtime opens one, already joined to its channels (and released from the connect)."""
    memberships = dict(memberships or {})
    opened = Connection(
        hub=hub,  # type: ignore[arg-type]  # duck-typed stand-in
        policy=policy or default_policy(),
        user_id=user,
        system_role=system_role,
        memberships=memberships,
        position=position,
        offset_target=target,
        offset_cursor=CODEC.encode(position),
        resumed=resumed,
        max_bytes=max_bytes,
    )
    if user is not None:
        opened.channels[user_subject(user)] = position
        opened.channels.update((org_subject(org), position) for org in memberships)
    else:
        opened.channels["org.*"] = position
    return opened
