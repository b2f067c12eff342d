"""The demo: a few users and organizations, memberships with different roles, and some pages to change.

Loading is idempotent: each start brings the demo users' memberships back to
the ones below (a membership the traffic or a visitor granted is revoked, one
they revoked is granted again), and the first pages are recorded only into an
empty log.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

from userstream.cursor import parse_cursor
from userstream.events.model import ActivityInput, Tx
from userstream.rpc.acl import AclClient
from userstream.rpc.activity import ActivityClient

SOURCE_ID = "userstream-dev"


@dataclass(frozen=True, slots=True)
class DemoUser:
    id: str
    name: str
    about: str


@dataclass(frozen=True, slots=True)
class DemoOrganization:
    id: str
    name: str
    pages: tuple[tuple[str, str], ...]  # (page id, title)


USERS = (
    DemoUser("alice", "Alice", "admin of Acme, member of Globex"),
    DemoUser("bob", "Bob", "member of Acme; the traffic adds him to Globex now and then"),
    DemoUser("carol", "Carol", "admin of Globex and Initech"),
    DemoUser("dave", "Dave", "no memberships: grant him one on the demo page"),
)

ORGANIZATIONS = (
    DemoOrganization("acme", "Acme Corp", (("acme-roadmap", "Roadmap"), ("acme-launch", "Launch plan"))),
    DemoOrganization("globex", "Globex", (("globex-budget", "Budget"), ("globex-hiring", "Hiring"))),
    DemoOrganization("initech", "Initech", (("initech-tps", "TPS reports"),)),
)

# user → organization → role
MEMBERSHIPS: dict[str, dict[str, str]] = {
    "alice": {"acme": "admin", "globex": "member"},
    "bob": {"acme": "member"},
    "carol": {"globex": "admin", "initech": "admin"},
    "dave": {},
}

# The membership the traffic grants and revokes in turn, so that its effect can be watched live.
TOGGLED_MEMBERSHIP = ("bob", "globex", "member")


def organization_ids() -> list[str]:
    return [organization.id for organization in ORGANIZATIONS]


def catalogue() -> dict[str, object]:
    """The demo as the demo page lists it (``GET /dev/demo``)."""
    return {
        "users": [{"id": user.id, "name": user.name, "about": user.about} for user in USERS],
        "organizations": [
            {"id": org.id, "name": org.name, "pages": [{"id": page, "title": title} for page, title in org.pages]}
            for org in ORGANIZATIONS
        ],
    }


async def load_demo(acl: AclClient, activity: ActivityClient) -> None:
    """Bring the demo users' memberships to the demo's; record the organizations and pages into an empty log."""
    empty_log = await _log_is_empty(activity)
    demo_organizations = set(organization_ids())
    for user in USERS:
        wanted = MEMBERSHIPS[user.id]
        current = (await acl.get_subject(user.id)).memberships
        for organization_id, role in wanted.items():
            if organization_id not in current:
                await acl.grant_membership(user.id, organization_id, role)
            elif current[organization_id] != role:
                await acl.update_membership(user.id, organization_id, role)
        for organization_id in sorted(set(current) & demo_organizations - set(wanted)):
            await acl.revoke_membership(user.id, organization_id)
    if empty_log:
        await activity.record_many(_first_entities())


async def _log_is_empty(activity: ActivityClient) -> bool:
    return parse_cursor(await activity.get_cursor()).sequence == 0


def _first_entities() -> list[ActivityInput]:
    tx = Tx(transaction_id=uuid.uuid4().hex, source_id=SOURCE_ID)
    created: list[ActivityInput] = []
    for organization in ORGANIZATIONS:
        created.append(
            ActivityInput(
                type="organization.created",
                organization_id=organization.id,
                data_json=json_text({"name": organization.name}),
                tx=tx,
            )
        )
        created += [
            ActivityInput(
                type="page.created",
                organization_id=organization.id,
                entity_id=page_id,
                data_json=json_text({"title": title, "body": "", "revision": 1}),
                tx=tx,
            )
            for page_id, title in organization.pages
        ]
    return created


def json_text(value: object) -> str:
    """Compact JSON, as ``data_json`` carries it."""
    return json.dumps(value, separators=(",", ":"))
