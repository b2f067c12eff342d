"""A small local view of what the user may see, kept current by the stream.

The Python counterpart of the original frontend's unified message handler:
membership events change the user's memberships (losing one drops that
organization from the view), organization events the organization's data,
and every other event one product entity (create / update / delete).
Updates merge ``data`` into what is known; a delete removes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from userstream.client.events import Change


@dataclass
class Entity:
    """A product entity as last seen: its type, id, organization, data, and the cursor of its last change."""

    entity_type: str
    entity_id: str
    organization_id: str
    data: dict[str, Any]
    cursor: str


@dataclass
class LocalCache:
    """The user's memberships (organization → role), organizations and product entities."""

    memberships: dict[str, str] = field(default_factory=dict)
    organizations: dict[str, dict[str, Any]] = field(default_factory=dict)
    entities: dict[tuple[str, str], Entity] = field(default_factory=dict)
    cursor: str | None = None

    def apply(self, change: Change) -> None:
        """Apply one change from the stream."""
        self.cursor = change.cursor
        if change.is_membership:
            self._apply_membership(change)
        elif change.is_organization:
            self._apply_organization(change)
        elif change.entity_type is not None and change.entity_id is not None:
            self._apply_entity(change, change.entity_type, change.entity_id)

    def entity(self, entity_type: str, entity_id: str) -> Entity | None:
        return self.entities.get((entity_type, entity_id))

    def entities_of(self, organization_id: str, entity_type: str | None = None) -> list[Entity]:
        """The known entities of one organization (of one type, if given), in the order they were first seen."""
        return [
            entity
            for entity in self.entities.values()
            if entity.organization_id == organization_id and entity_type in (None, entity.entity_type)
        ]

    def clear(self) -> None:
        """Forget everything (after ``must-refetch``, before loading the state again)."""
        self.memberships.clear()
        self.organizations.clear()
        self.entities.clear()
        self.cursor = None

    def _apply_membership(self, change: Change) -> None:
        data = change.data or {}
        organization_id = str(data.get("organizationId") or change.organization_id)
        if change.action == "delete":
            self.memberships.pop(organization_id, None)
            self._forget_organization(organization_id)
        else:
            self.memberships[organization_id] = str(data.get("role") or "")

    def _apply_organization(self, change: Change) -> None:
        organization_id = change.organization_id
        if change.action == "delete":
            self._forget_organization(organization_id)
            return
        known = self.organizations.setdefault(organization_id, {})
        known.update(change.data or {})

    def _apply_entity(self, change: Change, entity_type: str, entity_id: str) -> None:
        key = (entity_type, entity_id)
        if change.action == "delete":
            self.entities.pop(key, None)
            return
        known = self.entities.get(key)
        if known is None or change.action == "create":
            self.entities[key] = Entity(
                entity_type, entity_id, change.organization_id, dict(change.data or {}), change.cursor
            )
            return
        known.data.update(change.data or {})
        known.cursor = change.cursor

    def _forget_organization(self, organization_id: str) -> None:
        self.organizations.pop(organization_id, None)
        for key in [key for key, entity in self.entities.items() if entity.organization_id == organization_id]:
            del self.entities[key]
