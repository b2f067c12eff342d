"""``organization.deleted`` is final (CONTRACT §2): the rule every writer applies, decided by the log.

How the log decides. An ``organization.deleted`` is stored in one atomic batch
with its tombstones, one message on each ``tombstone.<org>.<lane>``; every
write of an event of an organization (its own events on ``org.<org>``,
membership events on ``user.<member>``) carries the JetStream condition "my
lane of ``tombstone.<org>`` is still empty" (``Nats-Expected-Last-Subject-
Sequence: 0`` checked against that subject). JetStream checks conditions in
log order on the stream leader, so a write that races the deletion — from
another replica, another service, the outbox relay — lands before it or is
refused; none can land after it, and a second deletion is refused like any
other later event. A tombstone never changes afterwards, so writers of a live
organization never conflict with each other on a single server: the common
path costs one subject lookup on the server, no extra round trip here.

Why lanes. A replicated stream's leader refuses a conditional write, without
comparing (error 10164), while another write checked against the same subject
is still being replicated — including, for a moment after its
acknowledgement, the caller's own previous one. Writers therefore spread an
organization's writes over several lanes (``WRITE_LANES``, in turn), acl uses
a lane of its own (``ACL_LANE``), and the deletion checks and fills every
lane at once. Lane 0 is the one readers look at: its tombstone is stored
right after the ``organization.deleted``.

``DeletedOrganizations`` is what this process knows of the log's tombstones
(loaded whenever the log opens, then kept current from their republished
copies). It only grows, because a deletion is final. It lets a write that is
already known to be refused fail before anything is sent, which keeps a batch
atomic (nothing recorded) in every case but a deletion racing the batch itself;
the condition on each message stays the authority.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence

import nats.errors
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.manager import JetStreamManager

from userstream.errors import OrganizationDeletedError
from userstream.eventlog.subjects import (
    EXPECTED_LAST_SUBJECT_SEQUENCE_HEADER,
    EXPECTED_LAST_SUBJECT_SEQUENCE_SUBJECT_HEADER,
    LIVE_PREFIX,
    TOMBSTONE_PREFIX,
    live_subject,
    organization_of_tombstone,
    tombstone_subject,
)
from userstream.events.model import Action, Activity
from userstream.policy import ORGANIZATION

log = structlog.get_logger("userstream.eventlog")

TOMBSTONES = TOMBSTONE_PREFIX + "*.*"
# The lanes of the activity service and other writers, taken in turn per organization; acl's own lane.
WRITE_LANES = (0, 1, 2, 3)
ACL_LANE = 4
LANES = (*WRITE_LANES, ACL_LANE)


def is_deletion(activity: Activity) -> bool:
    """Whether ``activity`` is an ``organization.deleted``."""
    return activity.action is Action.DELETE and activity.entity_name == ORGANIZATION


def still_open_condition(organization_id: str, lane: int = 0) -> dict[str, str]:
    """The headers that make a write land only while ``organization_id`` has no tombstone (in ``lane``)."""
    return {
        EXPECTED_LAST_SUBJECT_SEQUENCE_HEADER: "0",
        EXPECTED_LAST_SUBJECT_SEQUENCE_SUBJECT_HEADER: tombstone_subject(organization_id, lane),
    }


def refuse_later_events(activities: Sequence[Activity], deleted: Iterable[str] | DeletedOrganizations) -> bool:
    """Raise ``OrganizationDeletedError`` if any item is an event of an organization deleted before it.

    Deleted before it: known to be deleted in the log, or deleted by an earlier item of the same batch.
    A deletion with an idempotency key of a known-deleted organization is left to the log: it may be
    the retry of the very deletion that made it known, which answers as a duplicate.
    Returns whether the batch holds a deletion.
    """
    deleting: set[str] = set()
    for activity in activities:
        organization_id = activity.organization_id
        deletion = is_deletion(activity)
        if organization_id in deleted and not (deletion and activity.idempotency_key is not None):
            raise OrganizationDeletedError(organization_id)
        if deleting and organization_id in deleting:
            raise OrganizationDeletedError(organization_id)
        if deletion:
            deleting.add(organization_id)
    return bool(deleting)


class DeletedOrganizations:
    """The organizations this process knows to be deleted (a subset of the log's tombstones, never wrong)."""

    def __init__(self) -> None:
        self._known: set[str] = set()
        self._subscription: Subscription | None = None

    def __contains__(self, organization_id: object) -> bool:
        return organization_id in self._known

    def __len__(self) -> int:
        return len(self._known)

    def add(self, organization_id: str) -> None:
        self._known.add(organization_id)

    def forget(self) -> None:
        """Start over: the log was recreated, and its deletions are not the old log's."""
        self._known.clear()

    async def refresh(self, client: Client, manager: JetStreamManager, stream: str) -> None:
        """Follow new tombstones, then read every tombstone the log holds (in that order: none missed)."""
        if self._subscription is None:
            # nats-py renews the subscription after a reconnect; what was missed meanwhile is read below,
            # as this runs again whenever the log reopens.
            self._subscription = await client.subscribe(live_subject(TOMBSTONES), cb=self._on_tombstone)
        # Lane 0 is enough: every deletion fills all lanes at once.
        info = await manager.stream_info(stream, subjects_filter=tombstone_subject("*", LANES[0]))
        subjects = info.state.subjects or {}
        before = len(self._known)
        self._known.update(organization_of_tombstone(subject)[0] for subject in subjects)
        log.info("log.deleted_organizations", known=len(self._known), new=len(self._known) - before)

    async def close(self) -> None:
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            # If the connection is closing, the subscription goes with it.
            with contextlib.suppress(nats.errors.Error):
                await subscription.unsubscribe()

    async def _on_tombstone(self, msg: Msg) -> None:
        organization_id, _ = organization_of_tombstone(msg.subject.removeprefix(LIVE_PREFIX))
        self._known.add(organization_id)
