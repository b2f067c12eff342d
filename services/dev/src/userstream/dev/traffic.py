"""Demo traffic: a gentle flow of page, attachment and organization changes, and now and then a membership.

Every change goes through the ordinary write path (the activity and acl
services), exactly as an app backend would send it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import uuid

import structlog

from userstream.dev.demo import ORGANIZATIONS, SOURCE_ID, TOGGLED_MEMBERSHIP, DemoOrganization, json_text
from userstream.errors import AlreadyExistsError, NotFoundError, UserstreamError
from userstream.events.model import ActivityInput, Tx
from userstream.rpc.acl import AclClient
from userstream.rpc.activity import ActivityClient

log = structlog.get_logger("userstream.dev")

_WORDS = ("draft", "review", "ship", "polish", "budget", "timeline", "notes", "risks", "goals", "retro")


class DemoTraffic:
    """Records one demo change every ``interval`` seconds until cancelled."""

    def __init__(
        self,
        activity: ActivityClient,
        acl: AclClient,
        *,
        interval: float,
        membership_every: int,
        rng: random.Random | None = None,
    ) -> None:
        self._activity = activity
        self._acl = acl
        self._interval = interval
        self._membership_every = membership_every
        self._rng = rng or random.Random()  # noqa: S311  # demo content, not security
        self._revisions: dict[str, int] = {}
        self._attachments: dict[str, list[str]] = {organization.id: [] for organization in ORGANIZATIONS}
        self._serial = itertools.count(1)

    async def run(self) -> None:
        for tick in itertools.count(1):
            await asyncio.sleep(self._interval)
            try:
                if tick % self._membership_every == 0:
                    await self._toggle_membership()
                else:
                    await self._activity.record(self.next_change())
            except UserstreamError as error:
                # A service restarting: the demo goes on with the next change.
                with contextlib.suppress(OSError):  # stderr may be a closed pipe
                    log.warning("dev.traffic_failed", error=str(error))

    def next_change(self) -> ActivityInput:
        """One random change in one of the demo organizations."""
        organization = self._rng.choice(ORGANIZATIONS)
        roll = self._rng.random()
        if roll < 0.6:
            return self._page_update(organization)
        if roll < 0.9:
            return self._attachment_change(organization)
        return ActivityInput(
            type="organization.updated",
            organization_id=organization.id,
            data_json=json_text({"name": organization.name, "motto": self._words(3)}),
            changed_keys=("motto",),
            tx=self._tx("motto"),
        )

    def _page_update(self, organization: DemoOrganization) -> ActivityInput:
        page_id, title = self._rng.choice(organization.pages)
        revision = self._revisions.get(page_id, 1) + 1
        self._revisions[page_id] = revision
        return ActivityInput(
            type="page.updated",
            organization_id=organization.id,
            entity_id=page_id,
            data_json=json_text({"title": title, "body": self._words(6), "revision": revision}),
            changed_keys=("body", "revision"),
            tx=self._tx("body"),
        )

    def _attachment_change(self, organization: DemoOrganization) -> ActivityInput:
        attachments = self._attachments[organization.id]
        if len(attachments) >= 3 or (attachments and self._rng.random() < 0.4):
            attachment_id = attachments.pop(0)
            return ActivityInput(
                type="attachment.deleted", organization_id=organization.id, entity_id=attachment_id, tx=self._tx(None)
            )
        attachment_id = f"{organization.id}-file-{next(self._serial)}"
        attachments.append(attachment_id)
        page_id, _ = self._rng.choice(organization.pages)
        return ActivityInput(
            type="attachment.created",
            organization_id=organization.id,
            entity_id=attachment_id,
            data_json=json_text({"name": f"{self._rng.choice(_WORDS)}.pdf", "pageId": page_id}),
            tx=self._tx(None),
        )

    async def _toggle_membership(self) -> None:
        user_id, organization_id, role = TOGGLED_MEMBERSHIP
        try:
            await self._acl.grant_membership(user_id, organization_id, role)
        except AlreadyExistsError:
            # NotFound: revoked meanwhile (from the demo page); the next toggle grants.
            with contextlib.suppress(NotFoundError):
                await self._acl.revoke_membership(user_id, organization_id)

    def _tx(self, changed_field: str | None) -> Tx:
        return Tx(transaction_id=uuid.uuid4().hex, source_id=SOURCE_ID, changed_field=changed_field)

    def _words(self, count: int) -> str:
        return " ".join(self._rng.choice(_WORDS) for _ in range(count))
