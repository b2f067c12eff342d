"""The reliability oracle: what each client should have received, computed from the log alone.

Written from CONTRACT §2, §4 and §5 without any of the code that serves streams
(no ``userstream.permissions``, ``userstream.memberships`` or ``userstream.edge``):
its own policy reader, its own membership rule, its own permission rule. Given the
log in order (what JetStream holds, read back after the run) and what a client
received, it reports

- **lost**: permitted events in the client's window that never arrived;
- **duplicated**: events that arrived more than once (each extra copy counts);
- **leaked**: events that arrived but the user may not see at their position;
- **outside**: permitted events that arrived although they lie outside the window
  the client asked for (before its start, or after the end of the run);
- **out of order**: arrivals whose cursor is not greater than the one before;
- **corrupted**: events whose payload differs from what was recorded.

Each must be 0. ``organization.deleted`` is final (CONTRACT §2): from it on the
organization has no members, so nothing of it may reach anyone; and the log
itself must hold no event of it after its deletion (``after_deletion``).
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

MEMBERSHIP = "membership"
ORGANIZATION = "organization"
# Subjects of events; the log also holds bookkeeping messages (tombstones, fences) that are none.
EVENT_SUBJECT_PREFIXES = ("user.", "org.")
SYSTEM_ADMIN = "admin"


@dataclass(frozen=True)
class OraclePolicy:
    """Who may read what: entity type → the organization roles that read it, and which types are public."""

    roles: frozenset[str]
    readers: Mapping[str, frozenset[str]]
    public: frozenset[str]

    @classmethod
    def from_toml(cls, text: str) -> OraclePolicy:
        document = tomllib.loads(text)
        roles = frozenset(document["roles"]["organization"])
        readers: dict[str, frozenset[str]] = {}
        public: set[str] = set()
        for name, rule in document.get("entities", {}).items():
            readers[name] = frozenset(rule["read"])
            if rule.get("public", False):
                public.add(name)
        # CONTRACT §4: the context entity is readable by every member unless the policy says otherwise.
        readers.setdefault(ORGANIZATION, roles)
        return cls(roles, readers, frozenset(public))


@dataclass(frozen=True)
class LoggedEvent:
    """One entry of the log as JetStream holds it."""

    position: int  # the JetStream sequence
    cursor: str  # the `id:` a client sees for it
    subject: str
    body: bytes  # the stored JSON (the `change` payload without `activityId`)
    public: bool  # recorded with `public = true`
    msg_id: str | None = None  # the idempotency key, if it had one


@dataclass(frozen=True)
class _Event:
    position: int
    cursor: str
    name: str  # `page` in `page.updated`
    action: str  # created | updated | deleted
    organization_id: str
    user_id: str | None
    role: str | None
    public: bool
    body: dict[str, Any]


def _parse(entry: LoggedEvent) -> _Event:
    body = json.loads(entry.body)
    name, _, suffix = body["type"].partition(".")
    role = None
    if name == MEMBERSHIP:
        role = (body.get("data") or {}).get("role")
    return _Event(
        position=entry.position,
        cursor=entry.cursor,
        name=name,
        action=suffix,
        organization_id=body["organizationId"],
        user_id=body.get("userId"),
        role=role,
        public=entry.public,
        body=body,
    )


@dataclass
class Observation:
    """What one client (a chain of sessions resumed with the last cursor) received.

    ``user_id`` None means the anonymous public stream. The client asked for the
    events after ``after`` (its start cursor, or the first ``offset`` when it
    started at ``now``); the run ended at ``until``.
    """

    name: str
    user_id: str | None
    after: int
    until: int
    received: Sequence[int]  # positions, in arrival order
    payloads: Mapping[int, bytes] = field(default_factory=dict)  # position → the `data:` of its `change`
    system_role: str = "user"


@dataclass
class Verdict:
    name: str
    expected: int
    received: int
    lost: list[int] = field(default_factory=list)
    duplicated: list[int] = field(default_factory=list)
    leaked: list[int] = field(default_factory=list)
    outside: list[int] = field(default_factory=list)
    out_of_order: list[int] = field(default_factory=list)
    corrupted: list[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.leaked or self.outside or self.out_of_order or self.corrupted)

    def summary(self) -> str:
        parts = [f"{self.name}: expected {self.expected}, received {self.received}"]
        for label in ("lost", "duplicated", "leaked", "outside", "out_of_order", "corrupted"):
            values: list[int] = getattr(self, label)
            if values:
                parts.append(f"{label} {len(values)} (first {values[:5]})")
        return "; ".join(parts)


@dataclass
class Report:
    """Every client's verdict, and the totals a run must keep at zero."""

    verdicts: list[Verdict]

    def total(self, label: str) -> int:
        return sum(len(getattr(verdict, label)) for verdict in self.verdicts)

    @property
    def delivered(self) -> int:
        return sum(verdict.received for verdict in self.verdicts)

    @property
    def expected(self) -> int:
        return sum(verdict.expected for verdict in self.verdicts)

    @property
    def ok(self) -> bool:
        return all(verdict.ok for verdict in self.verdicts)

    def totals(self) -> dict[str, int]:
        labels = ("lost", "duplicated", "leaked", "outside", "out_of_order", "corrupted")
        return {"expected": self.expected, "delivered": self.delivered} | {label: self.total(label) for label in labels}

    def describe(self) -> str:
        failing = [verdict.summary() for verdict in self.verdicts if not verdict.ok]
        return f"totals {self.totals()}" + ("".join(f"\n  {line}" for line in failing) if failing else "")


class Oracle:
    """Answers, for any user and window of the log, the exact list of events they must receive."""

    def __init__(self, policy: OraclePolicy, log: Iterable[LoggedEvent]) -> None:
        self.policy = policy
        self.events = [_parse(entry) for entry in log if entry.subject.startswith(EVENT_SUBJECT_PREFIXES)]
        positions = [event.position for event in self.events]
        if positions != sorted(set(positions)):
            raise ValueError("the log must be given in increasing position order, each position once")
        self._by_position = {event.position: event for event in self.events}

    def expected(self, user_id: str | None, system_role: str, after: int, until: int) -> list[int]:
        """Positions of the events in ``(after, until]`` the user may see, in order."""
        return [position for position, _ in self._walk(user_id, system_role, until) if position > after]

    def check(self, observation: Observation) -> Verdict:
        permitted: dict[int, dict[str, Any]] = dict(
            self._walk(observation.user_id, observation.system_role, max(observation.until, self._last))
        )
        expected = [position for position in permitted if observation.after < position <= observation.until]
        verdict = Verdict(observation.name, expected=len(expected), received=len(observation.received))
        seen: set[int] = set()
        previous = -1
        for position in observation.received:
            if position in seen:
                verdict.duplicated.append(position)
            seen.add(position)
            if position <= previous:
                verdict.out_of_order.append(position)
            previous = max(previous, position)
            if position not in permitted:
                verdict.leaked.append(position)
            elif not observation.after < position <= observation.until:
                verdict.outside.append(position)
            elif position in observation.payloads and not _same_payload(
                observation.payloads[position], permitted[position]
            ):
                verdict.corrupted.append(position)
        verdict.lost = [position for position in expected if position not in seen]
        return verdict

    def check_all(self, observations: Iterable[Observation]) -> Report:
        return Report([self.check(observation) for observation in observations])

    def after_deletion(self) -> list[int]:
        """Positions of events of an organization after its ``organization.deleted``: writers must refuse them."""
        deleted: set[str] = set()
        late = []
        for event in self.events:
            if event.organization_id in deleted:
                late.append(event.position)
            elif event.name == ORGANIZATION and event.action == "deleted":
                deleted.add(event.organization_id)
        return late

    @property
    def _last(self) -> int:
        return self.events[-1].position if self.events else 0

    def _walk(self, user_id: str | None, system_role: str, until: int) -> Iterable[tuple[int, dict[str, Any]]]:
        """(position, expected `change` payload) of every event the user may see, from the log's start to ``until``.

        Memberships are replayed from the start of the log, so the decision at each
        position uses the memberships in force there (CONTRACT §4). An organization's
        deletion is decided under the memberships before it; from it on the organization
        has no members and nothing of it is permitted (CONTRACT §2).
        """
        memberships: dict[str, str] = {}
        deleted: set[str] = set()
        for event in self.events:
            if event.position > until:
                return
            if event.organization_id in deleted:
                continue
            if user_id is None:
                if event.name == ORGANIZATION and event.action == "deleted":
                    deleted.add(event.organization_id)
                if event.public and event.name in self.policy.public:
                    yield event.position, _payload(event)
                continue
            if event.name == MEMBERSHIP:
                if event.user_id != user_id:
                    continue  # membership events reach only the member they concern
                held = memberships.get(event.organization_id)
                if event.action == "deleted":
                    memberships.pop(event.organization_id, None)
                else:
                    memberships[event.organization_id] = event.role or ""
                yield event.position, _payload(event, role_held=held)
                continue
            role = memberships.get(event.organization_id)
            if event.name == ORGANIZATION and event.action == "deleted":
                deleted.add(event.organization_id)
                memberships.pop(event.organization_id, None)
            readers = self.policy.readers.get(event.name)
            if role is None or readers is None:
                continue
            if system_role == SYSTEM_ADMIN or role in readers:
                yield event.position, _payload(event)


def _payload(event: _Event, role_held: str | None = None) -> dict[str, Any]:
    """The `change` payload CONTRACT §5 promises: the recorded body with its cursor as ``activityId``.

    A ``membership.deleted`` recorded without a role carries the role the member had.
    """
    payload = {"activityId": event.cursor, **event.body}
    if event.name == MEMBERSHIP and event.action == "deleted" and event.role is None and role_held is not None:
        payload["data"] = {**(payload.get("data") or {}), "role": role_held}
    return payload


def _same_payload(received: bytes, expected: dict[str, Any]) -> bool:
    try:
        return bool(json.loads(received) == expected)
    except ValueError:
        return False
