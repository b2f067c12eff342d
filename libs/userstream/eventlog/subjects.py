"""Subject and header names of the log (CONTRACT §2, ARCHITECTURE "live path")."""

from __future__ import annotations

from userstream.events.model import Activity, Kind

USER_PREFIX = "user."
ORG_PREFIX = "org."
LIVE_PREFIX = "live."
STREAM_SUBJECTS = ("user.*", "org.*")

# Set by JetStream on every republished message.
SEQUENCE_HEADER = "Nats-Sequence"
LAST_SEQUENCE_HEADER = "Nats-Last-Sequence"  # the previous sequence on the same subject
SUBJECT_HEADER = "Nats-Subject"
TIMESTAMP_HEADER = "Nats-Time-Stamp"  # when the stream stored the message, RFC 3339 in UTC
# Set by userstream when recording.
MSG_ID_HEADER = "Nats-Msg-Id"
EXPECTED_STREAM_HEADER = "Nats-Expected-Stream"
EXPECTED_LAST_SUBJECT_SEQUENCE_HEADER = "Nats-Expected-Last-Subject-Sequence"
PUBLIC_HEADER = "Userstream-Public"


def user_subject(user_id: str) -> str:
    return USER_PREFIX + user_id


def org_subject(organization_id: str) -> str:
    return ORG_PREFIX + organization_id


def live_subject(subject: str) -> str:
    """Where the stream republishes what it stored under ``subject``."""
    return LIVE_PREFIX + subject


def subject_of(activity: Activity) -> str:
    """Membership events go to the member's subject, everything else to the organization's."""
    if activity.kind is Kind.MEMBERSHIP:
        assert activity.user_id is not None
        return user_subject(activity.user_id)
    return org_subject(activity.organization_id)
