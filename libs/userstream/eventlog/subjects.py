"""Subject and header names of the log (CONTRACT §2, ARCHITECTURE "live path")."""

from __future__ import annotations

from userstream.events.model import Activity, Kind

USER_PREFIX = "user."
ORG_PREFIX = "org."
LIVE_PREFIX = "live."
# Bookkeeping subjects, never delivered to clients: ``tombstone.<org>.<lane>`` holds one message per
# lane once the organization is deleted (recorded atomically with its ``organization.deleted``), and
# every later write of that organization is conditional on its lane being empty; ``fence.<org>``
# carries the message that puts that condition on an acl mutation whose own condition is on the
# member's subject (see ``deletions``).
TOMBSTONE_PREFIX = "tombstone."
FENCE_PREFIX = "fence."
STREAM_SUBJECTS = ("user.*", "org.*", TOMBSTONE_PREFIX + "*.*", FENCE_PREFIX + "*")

# Set by JetStream on every republished message.
SEQUENCE_HEADER = "Nats-Sequence"
LAST_SEQUENCE_HEADER = "Nats-Last-Sequence"  # the previous sequence on the same subject
SUBJECT_HEADER = "Nats-Subject"
TIMESTAMP_HEADER = "Nats-Time-Stamp"  # when the stream stored the message, RFC 3339 in UTC
# Set by userstream when recording.
MSG_ID_HEADER = "Nats-Msg-Id"
EXPECTED_STREAM_HEADER = "Nats-Expected-Stream"
EXPECTED_LAST_SUBJECT_SEQUENCE_HEADER = "Nats-Expected-Last-Subject-Sequence"
# The subject (filter) that expectation is checked against, when not the message's own (NATS >= 2.11).
EXPECTED_LAST_SUBJECT_SEQUENCE_SUBJECT_HEADER = "Nats-Expected-Last-Subject-Sequence-Subject"
# Atomic batch publishing (NATS >= 2.12, stream option allow_atomic): all messages stored, or none.
BATCH_ID_HEADER = "Nats-Batch-Id"
BATCH_SEQUENCE_HEADER = "Nats-Batch-Sequence"
BATCH_COMMIT_HEADER = "Nats-Batch-Commit"
PUBLIC_HEADER = "Userstream-Public"


def user_subject(user_id: str) -> str:
    return USER_PREFIX + user_id


def org_subject(organization_id: str) -> str:
    return ORG_PREFIX + organization_id


def tombstone_subject(organization_id: str, lane: int) -> str:
    return f"{TOMBSTONE_PREFIX}{organization_id}.{lane}"


def organization_of_tombstone(subject: str) -> tuple[str, int]:
    """``tombstone.<org>.<lane>`` → (org, lane)."""
    organization_id, _, lane = subject[len(TOMBSTONE_PREFIX) :].rpartition(".")
    return organization_id, int(lane)


def fence_subject(organization_id: str) -> str:
    return FENCE_PREFIX + organization_id


def live_subject(subject: str) -> str:
    """Where the stream republishes what it stored under ``subject``."""
    return LIVE_PREFIX + subject


def subject_of(activity: Activity) -> str:
    """Membership events go to the member's subject, everything else to the organization's."""
    if activity.kind is Kind.MEMBERSHIP:
        assert activity.user_id is not None
        return user_subject(activity.user_id)
    return org_subject(activity.organization_id)
