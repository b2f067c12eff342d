"""Reading the whole log back from JetStream with a plain nats-py client, for the oracle."""

from __future__ import annotations

import asyncio

import nats
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy

from tests.reliability.oracle import LoggedEvent

STREAM = "ACTIVITY"
_PUBLIC_HEADER = "Userstream-Public"
_MSG_ID_HEADER = "Nats-Msg-Id"
_SEQUENCE_SPAN = 10**12  # cursor = log id * 10**12 + sequence (docs/contract.md, "cursor format")


async def read_log(nats_url: str, log_id: int, timeout: float = 60.0) -> list[LoggedEvent]:
    """Every event the stream holds, in order. ``log_id`` comes from any cursor of this log (``log_id_of``)."""
    client = await nats.connect(servers=nats_url.split(","), connect_timeout=5, max_reconnect_attempts=-1)
    try:
        info = await client.jsm(timeout=10).stream_info(STREAM)
        last = info.state.last_seq
        entries: list[LoggedEvent] = []
        if info.state.messages == 0:
            return entries
        done = asyncio.Event()

        async def collect(message: Msg) -> None:
            sequence = message.metadata.sequence.stream
            headers = message.headers or {}
            entries.append(
                LoggedEvent(
                    position=sequence,
                    cursor=str(log_id * _SEQUENCE_SPAN + sequence),
                    subject=message.subject,
                    body=message.data,
                    public=_PUBLIC_HEADER in headers,
                    msg_id=headers.get(_MSG_ID_HEADER),
                )
            )
            if sequence >= last:
                done.set()

        config = ConsumerConfig(deliver_policy=DeliverPolicy.ALL, inactive_threshold=10.0, mem_storage=True)
        subscription = await client.jetstream(timeout=10).subscribe(
            ">", stream=STREAM, ordered_consumer=True, config=config, cb=collect
        )
        try:
            await asyncio.wait_for(done.wait(), timeout)
        finally:
            await subscription.unsubscribe()
        return entries
    finally:
        await client.close()


def log_id_of(cursor: str) -> int:
    return int(cursor) // _SEQUENCE_SPAN


def position_of(cursor: str) -> int:
    return int(cursor) % _SEQUENCE_SPAN
