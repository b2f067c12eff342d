"""The write side of a reliability run: product events in batches, and membership churn, all seeded.

Every recorded activity carries an idempotency key, and a call that fails with
UNAVAILABLE (NATS, activity or acl down) is retried with the same keys until it
succeeds: the contract says the outcome was unknown and a retry never records
twice, and the oracle then finds each key exactly once in the log.

Organizations get deleted now and then (each deletion its own call), and the
workload then tries every kind of write into the deleted organization —
through activity, alone and in a batch, and through acl — expecting each to be
refused (CONTRACT §2: ``organization.deleted`` is final) and nothing recorded.
"""

from __future__ import annotations

import asyncio
import json
import random
import string
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import psycopg

from userstream.errors import AlreadyExistsError, FailedPreconditionError, NotFoundError, UnavailableError
from userstream.events import ActivityInput
from userstream.events.model import Tx
from userstream.outbox import record
from userstream.rpc.acl import AclClient
from userstream.rpc.activity import ActivityClient, RecordResult

# Every user is a member of this organization and nobody leaves it: one page there is the
# last event of the run for everyone (the marker the clients wait for).
MARKER_ORG = "everyone"
ROLES = ("admin", "member", "viewer")
# Seconds a call is retried while a dependency is down, and between two attempts.
RETRY_FOR = 90.0
RETRY_WAIT = 0.2
T = TypeVar("T")


@dataclass(frozen=True)
class Shape:
    """How much a run does. ``events`` counts product, organization and direct membership events."""

    users: int = 50
    orgs: int = 10
    events: int = 50_000
    batch: tuple[int, int] = (50, 400)
    # acl membership mutations (grant, role change, revoke) between two batches
    churn: tuple[int, int] = (0, 4)
    # seconds between batches (0: as fast as the services take them)
    pause: float = 0.0
    # share of initial memberships: each user joins each organization with this probability
    density: float = 0.3
    # chance, after each batch, that an organization is deleted (at most half of them are)
    deletions: float = 0.05


@dataclass
class Workload:
    shape: Shape
    seed: int
    activity: ActivityClient
    acl: AclClient
    run_id: str = "w"
    rng: random.Random = field(init=False)
    users: list[str] = field(init=False)
    orgs: list[str] = field(init=False)
    recorded: int = 0
    batches: int = 0
    duplicate_checks: int = 0
    stats: Counter[str] = field(default_factory=Counter)
    # The workload's belief about memberships, only to choose sensible mutations (the oracle uses the log).
    members: dict[tuple[str, str], str] = field(default_factory=dict)
    cursors: list[str] = field(default_factory=list)
    # Every idempotency key recorded (each call is retried until it succeeds: all must be in the log, once).
    keys: list[str] = field(default_factory=list)
    # False while a fault has taken acl down: churn waits, events keep being recorded.
    acl_available: bool = True
    # Organizations deleted: nothing more may be recorded in them (see `_delete_organization`).
    deleted: set[str] = field(default_factory=set)
    # Idempotency keys of writes that were refused: none may be in the log.
    refused_keys: list[str] = field(default_factory=list)
    # The outbox variant: this share of the batches is inserted into the PostgreSQL outbox (one transaction
    # each) instead of RecordActivities; the relay records them, with the same idempotency keys.
    outbox_dsn: str | None = None
    outbox_share: float = 0.0
    _keys: int = 0
    _last_batch: list[ActivityInput] = field(default_factory=list)
    _last_results: list[RecordResult] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.users = [f"u{index:02d}" for index in range(self.shape.users)]
        self.orgs = [f"o{index}" for index in range(self.shape.orgs)]

    @property
    def admin(self) -> str:
        """The one system admin (set before any stream opens: role changes take effect at the next connect)."""
        return self.users[0]

    async def setup(self) -> None:
        await self._retrying(lambda: self.acl.set_system_role(self.admin, "admin"))
        for user in self.users:
            await self._grant(user, MARKER_ORG, "member")
            for org in self.orgs:
                if self.rng.random() < self.shape.density:
                    await self._grant(user, org, self.rng.choice(ROLES))

    async def step(self) -> None:
        """One batch, then some membership churn through acl."""
        size = self.rng.randint(*self.shape.batch)
        batch = [self._item() for _ in range(min(size, max(1, self.shape.events - self.recorded)))]
        if self.outbox_dsn is not None and self.rng.random() < self.outbox_share:
            await asyncio.to_thread(self._insert_into_outbox, self.outbox_dsn, batch)
            self.recorded += len(batch)
            self.batches += 1
            self.stats["outbox rows"] += len(batch)
            await self._after_batch()
            return
        results = await self._retrying(lambda: self.activity.record_many(batch))
        self._check_results(batch, results)
        self.recorded += len(batch)
        self.batches += 1
        self.cursors.append(results[-1].cursor)
        if self.rng.random() < 0.05 and self._last_batch:
            await self._resend_last()
        self._last_batch, self._last_results = batch, results
        await self._after_batch()

    async def _after_batch(self) -> None:
        if self.rng.random() < self.shape.deletions and len(self.deleted) < len(self.orgs) // 2:
            await self._delete_organization()
        for _ in range(self.rng.randint(*self.shape.churn)):
            if self.acl_available:
                await self._churn()
        if self.shape.pause:
            await asyncio.sleep(self.shape.pause)

    @staticmethod
    def _insert_into_outbox(dsn: str, batch: list[ActivityInput]) -> None:
        with psycopg.connect(dsn) as connection, connection.transaction():
            for item in batch:
                record(connection, item)

    async def outbox_drained(self, timeout: float = 120.0) -> None:
        """Until the relay has recorded every committed row (before the marker, which must come last)."""
        if self.outbox_dsn is None:
            return
        deadline = asyncio.get_running_loop().time() + timeout
        while await asyncio.to_thread(_outbox_rows, self.outbox_dsn):
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"the relay left rows in the outbox for {timeout} s")
            await asyncio.sleep(0.1)

    async def _retrying(self, call: Callable[[], Awaitable[T]]) -> T:
        return await retrying(call, self.stats)

    @property
    def done(self) -> bool:
        return self.recorded >= self.shape.events

    async def marker(self) -> str:
        """One event every user may see, recorded last: when a client has it, it must have everything."""
        item = ActivityInput(
            type="page.updated",
            organization_id=MARKER_ORG,
            entity_id="marker",
            public=True,  # the public stream ends with it too
            idempotency_key=self._key(),
        )
        (result,) = await self._retrying(lambda: self.activity.record_many([item]))
        return result.cursor

    # -- what gets recorded ------------------------------------------------------------------------

    def _key(self) -> str:
        self._keys += 1
        key = f"{self.run_id}-{self.seed}-{self._keys}"
        self.keys.append(key)
        return key

    def _item(self) -> ActivityInput:
        roll = self.rng.random()
        org = self._org()
        if roll < 0.03:
            return self._direct_membership(org)
        if roll < 0.08:
            self.stats["organization.updated"] += 1
            return ActivityInput(
                type="organization.updated", organization_id=org, data_json=self._data(), idempotency_key=self._key()
            )
        name = "page" if roll < 0.78 else "attachment" if roll < 0.93 else "secret"
        action = self.rng.choice(("created", "updated", "updated", "updated", "deleted"))
        self.stats[name] += 1
        public = name == "page" and self.rng.random() < 0.2
        return ActivityInput(
            type=f"{name}.{action}",
            organization_id=org,
            entity_id=f"{name[0]}{self.rng.randint(1, 500)}",
            user_id=self.rng.choice(("", *self.users[:5])),
            data_json=self._data() if self.rng.random() < 0.9 else "",
            changed_keys=("title", "n") if action == "updated" else (),
            tx=Tx("t" + str(self.rng.randint(1, 10**9)), "s" + str(self.rng.randint(1, 9)), "title")
            if self.rng.random() < 0.3
            else None,
            public=public,
            idempotency_key=self._key(),
        )

    async def _delete_organization(self) -> None:
        """Delete an organization (alone: a batch that also held earlier events of it could not be resent as a
        whole once it is deleted), then try every kind of later write into it: each must be refused."""
        # Rows committed to the outbox before the deletion must land before it (else the relay rejects them).
        await self.outbox_drained()
        org = self._org()
        self.deleted.add(org)
        item = ActivityInput(
            type="organization.deleted", organization_id=org, data_json=self._data(), idempotency_key=self._key()
        )
        (result,) = await self._retrying(lambda: self.activity.record_many([item]))
        self.stats["organization.deleted"] += 1
        self.recorded += 1
        self.cursors.append(result.cursor)
        self._last_batch = []  # a resend from before the deletion would now be refused, not answered as duplicates
        live = self._org()
        refused = self._refused
        attempts: list[tuple[str, Callable[[], Awaitable[object]]]] = [
            ("page", lambda: self.activity.record(refused(org, type="page.updated", entity_id="late"))),
            ("organization", lambda: self.activity.record(refused(org, type="organization.updated"))),
            ("second deletion", lambda: self.activity.record(refused(org, type="organization.deleted"))),
            (
                "membership",
                lambda: self.activity.record(
                    refused(org, type="membership.created", user_id=self.users[1], role="admin")
                ),
            ),
            (
                "batch",
                lambda: self.activity.record_many(
                    [
                        refused(live, type="page.updated", entity_id="late"),
                        refused(org, type="page.updated", entity_id="late"),
                    ]
                ),
            ),
        ]
        if self.acl_available:
            attempts.append(("grant", lambda: self.acl.grant_membership(self.users[1], org, "member")))
        for name, attempt in attempts:
            try:
                await self._retrying(attempt)
            except FailedPreconditionError:
                self.stats["refused after deletion"] += 1
            else:
                raise AssertionError(f"a {name} write into the deleted organization {org} was recorded")

    def _refused(self, org: str, **fields: str) -> ActivityInput:
        """A write expected to be refused: its key is remembered, to check that the log never holds it."""
        self._keys += 1
        key = f"{self.run_id}-{self.seed}-refused-{self._keys}"
        self.refused_keys.append(key)
        return ActivityInput(organization_id=org, idempotency_key=key, **fields)  # type: ignore[arg-type]  # str fields

    def _direct_membership(self, org: str) -> ActivityInput:
        """A membership event recorded straight through activity (CONTRACT §2: the same effect as acl's)."""
        user = self.rng.choice(self.users)
        action = self.rng.choice(("created", "updated", "deleted"))
        self.stats[f"membership.{action}(direct)"] += 1
        if action == "deleted":
            self.members.pop((user, org), None)
            return ActivityInput(
                type="membership.deleted", organization_id=org, user_id=user, idempotency_key=self._key()
            )
        role = self.rng.choice(ROLES)
        self.members[(user, org)] = role
        return ActivityInput(
            type=f"membership.{action}", organization_id=org, user_id=user, role=role, idempotency_key=self._key()
        )

    def _data(self) -> str:
        title = "".join(self.rng.choices(string.ascii_letters + " éü✓", k=self.rng.randint(5, 300)))
        number = self.rng.choice((self.rng.randint(-(2**60), 2**60), self.rng.random(), 12345678901234567890))
        return f'{{"title": {_json_string(title)}, "n": {number}, "nested": {{"list": [1, 2.5, null, true]}}}}'

    def _check_results(self, batch: list[ActivityInput], results: list[RecordResult]) -> None:
        if len(results) != len(batch):
            raise AssertionError(f"{len(batch)} activities recorded, {len(results)} results")
        positions = [int(result.cursor) for result in results]
        if positions != sorted(positions):
            raise AssertionError("a batch's cursors are not in the request's order")
        self.stats["duplicate answers"] += sum(result.duplicate for result in results)

    async def _resend_last(self) -> None:
        """The same batch again (a client retrying after a lost answer): nothing new, the same cursors."""
        batch, first = self._last_batch, self._last_results
        again = await self._retrying(lambda: self.activity.record_many(batch))
        if [r.cursor for r in again] != [r.cursor for r in first] or not all(r.duplicate for r in again):
            raise AssertionError("a resent batch recorded something new")
        self.duplicate_checks += 1

    # -- membership churn through acl ----------------------------------------------------------------

    def _org(self) -> str:
        return self.rng.choice([org for org in self.orgs if org not in self.deleted])

    async def _churn(self) -> None:
        user, org = self.rng.choice(self.users), self._org()
        role = self.members.get((user, org))
        if role is None:
            await self._grant(user, org, self.rng.choice(ROLES))
        elif self.rng.random() < 0.5:
            await self._revoke(user, org)
        else:
            await self._update(user, org, self.rng.choice([r for r in ROLES if r != role]))

    async def _grant(self, user: str, org: str, role: str) -> None:
        self.members[(user, org)] = role
        try:
            await self._retrying(lambda: self.acl.grant_membership(user, org, role))
            self.stats["grant"] += 1
        except AlreadyExistsError:
            self.stats["grant: already a member"] += 1

    async def _update(self, user: str, org: str, role: str) -> None:
        self.members[(user, org)] = role
        try:
            await self._retrying(lambda: self.acl.update_membership(user, org, role))
            self.stats["role change"] += 1
        except NotFoundError:
            self.stats["role change: not a member"] += 1

    async def _revoke(self, user: str, org: str) -> None:
        self.members.pop((user, org), None)
        try:
            await self._retrying(lambda: self.acl.revoke_membership(user, org))
            self.stats["revoke"] += 1
        except NotFoundError:
            self.stats["revoke: not a member"] += 1


def _outbox_rows(dsn: str) -> int:
    with psycopg.connect(dsn) as connection:
        row = connection.execute("SELECT count(*) FROM userstream.outbox").fetchone()
    return int(row[0]) if row else 0


async def retrying(call: Callable[[], Awaitable[T]], stats: Counter[str] | None = None) -> T:
    """Await ``call()`` until it does not fail with UNAVAILABLE; give up after ``RETRY_FOR`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + RETRY_FOR
    while True:
        try:
            return await call()
        except UnavailableError:
            if loop.time() > deadline:
                raise
            if stats is not None:
                stats["calls retried after UNAVAILABLE"] += 1
            await asyncio.sleep(RETRY_WAIT)


def _json_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)
