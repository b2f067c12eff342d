"""After a crash or a failed publish: which rows of the in-flight batch are in the log already.

The duplicate window alone cannot answer this — a relay may be down for longer
than it. The log itself can: every message the relay records carries its row's
``Nats-Msg-Id``, and every message of the batch was stored after
``after_sequence`` and, allowing for clock skew, not long after the last
publish attempt. So the relay reads the log from ``after_sequence`` on, on the
subjects of the batch's rows, until that time bound or the end, and collects
the message ids it finds.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

import nats.errors
import nats.js.errors

from userstream.errors import UnavailableError
from userstream.eventlog.subjects import MSG_ID_HEADER
from userstream.nats_connection import NatsConnection


async def recorded_message_ids(
    connection: NatsConnection, stream: str, wanted: Mapping[str, str], *, after_sequence: int, not_after: datetime
) -> set[str]:
    """Which of ``wanted`` (message id → subject) the log holds after ``after_sequence``.

    Messages stored later than ``not_after`` (plus the request timeout) end the search on a subject.
    """
    found: set[str] = set()
    bound = not_after + timedelta(seconds=connection.request_timeout)
    manager = connection.manager
    try:
        for subject in sorted(set(wanted.values())):
            position = after_sequence
            while len(found) < len(wanted):
                try:
                    message = await manager.get_msg(stream, seq=position + 1, subject=subject, next=True)
                except nats.js.errors.NotFoundError:
                    break  # the end of the subject
                position = int(message.seq or position + 1)
                if message.time is not None and message.time > bound:
                    break
                msg_id = (message.headers or {}).get(MSG_ID_HEADER)
                if isinstance(msg_id, str) and msg_id in wanted:
                    found.add(msg_id)
    except (nats.errors.Error, TimeoutError) as exc:
        raise UnavailableError(f"cannot read the log back: {type(exc).__name__}") from exc
    return found
