"""Publishing messages to the log and collecting JetStream's acknowledgements, for the recorder.

Three ways: pipelined (every message written before any acknowledgement is
awaited; the order on the connection is the order in the log), pipelined and
retried while refused as not ready, and as one atomic batch (all stored,
contiguously, or none; JetStream >= 2.12 with ``allow_atomic``).

Not ready: a replicated stream's leader refuses a conditional write, without
comparing (error 10164), while another write checked against the same subject
is still being replicated — for a moment even after that write's
acknowledgement. ``saw_not_ready`` tells the recorder it writes to such a stream.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import Sequence

import nats.errors
import nats.js.errors
import structlog
from nats.aio.client import Client
from nats.js.api import RawStreamMsg

from userstream.errors import UnavailableError
from userstream.eventlog._acks import AckInbox, PubAck
from userstream.eventlog.subjects import BATCH_COMMIT_HEADER, BATCH_ID_HEADER, BATCH_SEQUENCE_HEADER
from userstream.nats_connection import NatsConnection

log = structlog.get_logger("userstream.eventlog")

Message = tuple[str, bytes, dict[str, str]]

# JetStream's error code for a failed Nats-Expected-Last-Subject-Sequence check.
WRONG_LAST_SEQUENCE = 10071
# ... for an atomic batch holding a Nats-Msg-Id seen within the duplicate window.
DUPLICATE_IN_ATOMIC_BATCH = 10201
# ... for a conditional write refused without comparing: another one on the subject is being replicated.
NOT_READY = 10164
# Waits between attempts of a write refused as not ready.
_NOT_READY_FIRST_WAIT = 0.001
_NOT_READY_MAX_WAIT = 0.05


def failed_with(ack: PubAck, code: int) -> bool:
    return ack.error is not None and ack.error.err_code == code


class Publisher:
    def __init__(self, connection: NatsConnection, stream: str, timeout: float) -> None:
        self._connection = connection
        self._stream = stream
        self._timeout = timeout
        self._acks: AckInbox | None = None
        self._batch_ids = itertools.count()
        self._batch_prefix = os.urandom(6).hex()
        self.saw_not_ready = False

    async def publish(self, messages: Sequence[Message]) -> list[PubAck]:
        """Publish pipelined and wait for every acknowledgement (in the request's order)."""
        client = self._connection.client
        acks = self._inbox(client)
        try:
            batch = await acks.open(len(messages))
        except (TimeoutError, nats.errors.Error) as exc:
            raise UnavailableError(f"NATS did not accept the write: {type(exc).__name__}") from exc
        try:
            # These awaits do not suspend while nats-py's buffer has room (2 MiB by default): the
            # batch then reaches the socket in one write. The order on the connection is the order
            # in the log, so the request's order holds either way.
            for index, (subject, body, headers) in enumerate(messages):
                await client.publish(subject, body, reply=batch.reply(index), headers=headers)
            # A plain timer: cheaper than wait_for/timeout() on this per-call path.
            timer = asyncio.get_running_loop().call_later(self._timeout, batch.expire)
            try:
                await batch.done
            finally:
                timer.cancel()
        except (TimeoutError, nats.errors.Error) as exc:
            raise UnavailableError(f"NATS did not acknowledge the write: {type(exc).__name__}") from exc
        finally:
            acks.close(batch)
        return [_arrived(ack) for ack in batch.acks]

    async def publish_retrying(self, messages: Sequence[Message]) -> list[PubAck]:
        """``publish``, then again, one by one in order, each message refused as not ready (until the timeout)."""
        acks = await self.publish(messages)
        pending = [index for index, ack in enumerate(acks) if failed_with(ack, NOT_READY)]
        if not pending:
            return acks
        self._noticed_not_ready()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        for index in pending:
            wait = _NOT_READY_FIRST_WAIT
            while failed_with(acks[index], NOT_READY) and loop.time() < deadline:
                await asyncio.sleep(wait)  # another write of the organization is being replicated
                wait = min(wait * 2, _NOT_READY_MAX_WAIT)
                (acks[index],) = await self.publish([messages[index]])
        return acks

    async def publish_in_order(self, messages: Sequence[Message]) -> list[PubAck]:
        """Messages of distinct subjects' conditions stored in order, on a stream that may answer not ready.

        More than one goes as an atomic batch, sent again whole while refused as not ready: retrying
        single messages could put one after a later message of the batch. If JetStream knows one of the
        idempotency keys already (a retried request), they go one by one instead, each answered as usual.
        A refused batch answers the refusal for each message.
        """
        if len(messages) == 1:
            return await self.publish_retrying(messages)
        ack = await self.publish_atomic(messages)
        if failed_with(ack, DUPLICATE_IN_ATOMIC_BATCH):
            acks: list[PubAck] = []
            for message in messages:
                acks += await self.publish_retrying([message])
            return acks
        if ack.error is not None:
            return [ack] * len(messages)
        first = ack.seq - len(messages) + 1  # stored contiguously; the acknowledgement names the last
        return [PubAck(stream=ack.stream, seq=first + index) for index in range(len(messages))]

    async def publish_atomic(self, messages: Sequence[Message]) -> PubAck:
        """Publish ``messages`` as one atomic batch; returns the commit's acknowledgement (it names the last).

        Refused as not ready, the batch stored nothing and is sent again, until the timeout.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        wait = _NOT_READY_FIRST_WAIT
        ack = await self._publish_atomic_once(messages)
        while failed_with(ack, NOT_READY) and loop.time() < deadline:
            self._noticed_not_ready()
            await asyncio.sleep(wait)
            wait = min(wait * 2, _NOT_READY_MAX_WAIT)
            ack = await self._publish_atomic_once(messages)
        return ack

    async def last_message(self, subject: str) -> RawStreamMsg | None:
        """The last message on ``subject``, asked of the stream leader (None: there is none)."""
        try:
            return await self._connection.manager.get_msg(self._stream, subject=subject)
        except nats.js.errors.NotFoundError:
            return None
        except (nats.errors.Error, TimeoutError) as exc:
            raise UnavailableError(f"cannot read the log: {type(exc).__name__}") from exc

    async def message_at(self, sequence: int) -> RawStreamMsg:
        try:
            return await self._connection.manager.get_msg(self._stream, seq=sequence)
        except (nats.errors.Error, TimeoutError) as exc:
            raise UnavailableError(f"cannot read the log: {type(exc).__name__}") from exc

    async def _publish_atomic_once(self, messages: Sequence[Message]) -> PubAck:
        batch_id = f"{self._batch_prefix}-{next(self._batch_ids):x}"
        client = self._connection.client
        last = len(messages) - 1
        try:
            for index, (subject, body, headers) in enumerate(messages[:last]):
                batch_headers = {**headers, BATCH_ID_HEADER: batch_id, BATCH_SEQUENCE_HEADER: str(index + 1)}
                await client.publish(subject, body, headers=batch_headers)
        except (TimeoutError, nats.errors.Error) as exc:
            raise UnavailableError(f"NATS did not accept the write: {type(exc).__name__}") from exc
        subject, body, headers = messages[last]
        commit = {**headers, BATCH_ID_HEADER: batch_id, BATCH_SEQUENCE_HEADER: str(last + 1), BATCH_COMMIT_HEADER: "1"}
        (ack,) = await self.publish([(subject, body, commit)])
        return ack

    def _noticed_not_ready(self) -> None:
        if not self.saw_not_ready:
            log.info("log.conditional_writes_serialized", stream=self._stream)
            self.saw_not_ready = True

    def _inbox(self, client: Client) -> AckInbox:
        if self._acks is None or self._acks.client is not client:
            self._acks = AckInbox(client)
        return self._acks


def _arrived(ack: PubAck | None) -> PubAck:
    assert ack is not None  # the batch is done only when every acknowledgement arrived
    return ack
