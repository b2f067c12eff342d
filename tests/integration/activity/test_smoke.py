from __future__ import annotations

import pytest

from tests.conftest import RunningActivity
from userstream.events import ActivityInput

pytestmark = pytest.mark.integration


async def test_record_returns_increasing_cursors(activity: RunningActivity) -> None:
    first = await activity.client.record(ActivityInput(type="page.created", entity_id="p1", organization_id="acme"))
    second = await activity.client.record(ActivityInput(type="page.updated", entity_id="p1", organization_id="acme"))
    assert int(second.cursor) == int(first.cursor) + 1
    assert await activity.client.get_cursor() == second.cursor
