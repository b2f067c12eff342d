"""What ``userstream tail`` prints for each event."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import datetime
from typing import TextIO

from userstream.client.events import Change, Closed, MustRefetch, Offset, StreamEvent, to_json
from userstream.client.stream import UserStream


async def tail(stream: UserStream, *, as_json: bool = False, out: TextIO | None = None) -> None:
    """Print ``stream`` until interrupted (or a StreamError)."""
    target = out or sys.stdout
    render: Callable[[StreamEvent], str] = _json_line if as_json else readable
    async with stream:
        async for event in stream:
            print(render(event), file=target, flush=True)


def _json_line(event: StreamEvent) -> str:
    return json.dumps(to_json(event), separators=(",", ":"))


def readable(event: StreamEvent) -> str:
    """One line for people: time, cursor, what changed, where, by whom."""
    now = datetime.now().astimezone().strftime("%H:%M:%S")
    if isinstance(event, Offset):
        how = "resumed; live" if event.resumed else "live"
        return f"{now}  -- {how} after cursor {event.cursor}"
    if isinstance(event, Closed):
        return f"{now}  -- closed by the server ({event.reason}); resuming"
    if isinstance(event, MustRefetch):
        return f"{now}  -- must refetch ({event.reason}): history is gone; continuing from now"
    return f"{now}  {event.cursor}  {event.type:<20} {_describe(event)}"


def _describe(change: Change) -> str:
    data = change.data or {}
    if change.is_membership:
        role = data.get("role")
        return f"org={change.organization_id} user={change.user_id}" + (f" role={role}" if role else "")
    parts = [f"org={change.organization_id}"]
    if change.entity_id and not change.is_organization:
        parts.append(f"{change.entity_type}={change.entity_id}")
    if change.changed_keys:
        parts.append("changed=" + ",".join(change.changed_keys))
    if change.user_id:
        parts.append(f"by={change.user_id}")
    if change.tx and change.tx.source_id:
        parts.append(f"source={change.tx.source_id}")
    return " ".join(parts)
