"""The rule that ``organization.deleted`` is final, as the Recorder applies it before sending anything."""

from __future__ import annotations

import pytest

from userstream.errors import FailedPreconditionError, OrganizationDeletedError
from userstream.eventlog.deletions import is_deletion, refuse_later_events, still_open_condition
from userstream.eventlog.subjects import organization_of_tombstone
from userstream.events.model import Activity, ActivityInput
from userstream.events.validation import Limits, validate_activity
from userstream.policy import default_policy


def activity(type_: str, organization_id: str, **fields: str) -> Activity:
    return validate_activity(
        ActivityInput(type=type_, organization_id=organization_id, **fields), default_policy(), Limits()
    )


PAGE = ("page.updated", {"entity_id": "p1"})
MEMBERSHIP = ("membership.created", {"user_id": "alice", "role": "member"})
DELETION = ("organization.deleted", {})


@pytest.mark.parametrize(("type_", "fields"), [PAGE, MEMBERSHIP, DELETION, ("organization.updated", {})])
def test_every_kind_of_event_of_a_known_deleted_organization_is_refused(type_: str, fields: dict[str, str]) -> None:
    with pytest.raises(OrganizationDeletedError, match="'acme'") as refused:
        refuse_later_events(
            [activity("page.updated", "globex", entity_id="p"), activity(type_, "acme", **fields)], {"acme"}
        )
    assert refused.value.organization_id == "acme"
    assert isinstance(refused.value, FailedPreconditionError)  # FAILED_PRECONDITION at every gRPC boundary


def test_a_batch_may_not_continue_an_organization_it_deletes() -> None:
    page, deletion = activity(PAGE[0], "acme", **PAGE[1]), activity(DELETION[0], "acme")
    refuse_later_events([page, deletion, activity(PAGE[0], "globex", **PAGE[1])], set())  # before it: fine
    with pytest.raises(OrganizationDeletedError):
        refuse_later_events([deletion, page], set())
    with pytest.raises(OrganizationDeletedError):
        refuse_later_events([deletion, deletion], set())


def test_only_organization_deleted_is_a_deletion() -> None:
    assert is_deletion(activity(DELETION[0], "acme"))
    assert not is_deletion(activity("organization.updated", "acme"))
    assert not is_deletion(activity("membership.deleted", "acme", user_id="alice"))
    assert not is_deletion(activity("page.deleted", "acme", entity_id="p1"))


def test_the_condition_names_the_organizations_tombstone() -> None:
    assert still_open_condition("acme") == {
        "Nats-Expected-Last-Subject-Sequence": "0",
        "Nats-Expected-Last-Subject-Sequence-Subject": "tombstone.acme.0",
    }
    assert still_open_condition("a_b-c", 3)["Nats-Expected-Last-Subject-Sequence-Subject"] == "tombstone.a_b-c.3"
    assert organization_of_tombstone("tombstone.acme.3") == ("acme", 3)


def test_a_keyed_deletion_of_a_known_deleted_organization_is_left_to_the_log() -> None:
    """It may be the retry of the deletion that made it known (the log answers duplicate or refuses)."""
    retry = activity("organization.deleted", "acme", idempotency_key="k")
    refuse_later_events([retry], {"acme"})
    with pytest.raises(OrganizationDeletedError):
        refuse_later_events([activity("organization.deleted", "acme")], {"acme"})
    with pytest.raises(OrganizationDeletedError):
        refuse_later_events([retry, retry], set())
