"""The activity: one validated change, as every service handles it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum, StrEnum

from userstream.policy import MEMBERSHIP, ORGANIZATION


class Action(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"


# `page.updated` → Action.UPDATE
ACTION_BY_SUFFIX = {"created": Action.CREATE, "updated": Action.UPDATE, "deleted": Action.DELETE}


class Kind(Enum):
    """How an event is routed and who may see it (CONTRACT §2)."""

    MEMBERSHIP = "membership"  # about one user's membership; published to user.<user_id>
    ORGANIZATION = "organization"  # the context entity; published to org.<organization_id>
    PRODUCT = "product"  # pages, attachments, …; published to org.<organization_id>


def kind_of(entity_name: str) -> Kind:
    if entity_name == MEMBERSHIP:
        return Kind.MEMBERSHIP
    if entity_name == ORGANIZATION:
        return Kind.ORGANIZATION
    return Kind.PRODUCT


@dataclass(frozen=True, slots=True)
class Tx:
    """Lets a client recognise the echo of its own write (same ``source_id``)."""

    transaction_id: str | None = None
    source_id: str | None = None
    changed_field: str | None = None


@dataclass(frozen=True, slots=True)
class ActivityInput:
    """An activity exactly as it arrived from outside; empty strings mean absent."""

    type: str = ""
    entity_id: str = ""
    organization_id: str = ""
    user_id: str = ""
    role: str = ""
    data_json: str = ""
    changed_keys: tuple[str, ...] = ()
    tx: Tx | None = None
    idempotency_key: str = ""
    public: bool = False
    created_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Activity:
    """A validated activity. Build one with ``validate_activity``."""

    type: str
    entity_name: str
    action: Action
    organization_id: str
    entity_id: str | None
    user_id: str | None
    role: str | None
    data_json: bytes | None
    changed_keys: tuple[str, ...] | None
    tx: Tx | None
    idempotency_key: str | None
    public: bool
    created_at: datetime

    @property
    def kind(self) -> Kind:
        return kind_of(self.entity_name)
