"""Reading ranges of the log back from JetStream: catch-up, gap repair, resume.

Every read is bounded by a sequence that is known to exist on the subject
(``until``, obtained from the stream leader or from a republished message's
``Nats-Last-Sequence``), so a read is complete once it has seen ``until`` —
even when the replica answering lags behind the leader.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

from userstream.errors import UnavailableError
from userstream.eventlog.subjects import PUBLIC_HEADER
from userstream.nats_connection import NatsConnection

# Up to this many messages are fetched one request each from the leader; longer
# ranges switch to an ordered consumer, which streams them.
_SINGLE_GET_LIMIT = 8
# Seconds an abandoned ordered consumer lingers on the server.
_CONSUMER_INACTIVE_THRESHOLD = 10.0
# A page is asked of the stream's direct-get API (any replica answers: `allow_direct`), as one batch.
_DIRECT_GET = "$JS.API.DIRECT.GET."
# Status of the message that ends a direct-get batch ("EOB"), and of "no message at or after that sequence".
_END_OF_BATCH = "204"
_NO_MESSAGE = "404"
# Seconds between asking again when the replica answering has not stored the range's end yet.
_LAGGING_REPLICA_WAIT = 0.05


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """One event as the log holds it: its sequence, original subject and body."""

    sequence: int
    subject: str
    data: bytes
    public: bool


class LogReader:
    def __init__(self, connection: NatsConnection, stream: str) -> None:
        self._connection = connection
        self._stream = stream
        self._timeout = connection.request_timeout

    async def last_sequence(self, subject: str) -> int:
        """The sequence of the last message on ``subject`` (wildcards allowed), 0 if none; asked of the leader."""
        try:
            message = await self._connection.manager.get_msg(self._stream, subject=subject)
        except nats.js.errors.NotFoundError:
            return 0
        except (nats.errors.Error, TimeoutError) as exc:
            raise UnavailableError(f"cannot read the log: {type(exc).__name__}") from exc
        return int(message.seq or 0)

    async def read(self, subject: str, after: int, until: int) -> list[StoredMessage]:
        """Every message on ``subject`` with ``after < sequence <= until``, in order.

        ``until`` must be 0 or the sequence of a message on ``subject`` (or one
        at which the caller stops caring); the read ends when it is reached.
        """
        if until <= after:
            return []
        try:
            messages = await self._read_singly(subject, after, until)
            if messages and messages[-1].sequence < until:
                messages += await self._read_with_consumer(subject, messages[-1].sequence, until)
        except (nats.errors.Error, TimeoutError) as exc:
            raise UnavailableError(f"cannot read the log: {type(exc).__name__}") from exc
        return messages

    async def read_page(self, subject: str, after: int, until: int, limit: int, max_bytes: int) -> list[StoredMessage]:
        """The first messages on ``subject`` with ``after < sequence <= until``: at most ``limit`` of them.

        One batched direct get, so a catch-up of any length costs one page of
        memory at a time (``Channel`` reads the next page when the client has
        taken the last). ``max_bytes`` bounds the page's size too (the server
        always sends at least one message). Empty only when nothing is left on
        the subject up to ``until`` (or ``until <= after``).
        """
        if until <= after:
            return []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        while True:
            try:
                messages, more = await self._direct_batch(subject, after, until, limit, max_bytes)
            except (nats.errors.Error, TimeoutError) as exc:
                raise UnavailableError(f"cannot read the log: {type(exc).__name__}") from exc
            if messages or not more:
                return messages
            # The replica that answered has not stored `until` yet (it follows the leader): ask again.
            if loop.time() > deadline:
                raise UnavailableError(f"the log replicas have not stored sequence {until} of {subject}")
            await asyncio.sleep(_LAGGING_REPLICA_WAIT)

    async def _direct_batch(
        self, subject: str, after: int, until: int, limit: int, max_bytes: int
    ) -> tuple[list[StoredMessage], bool]:
        """One batch; also whether the range may hold more than this replica returned (it may lag)."""
        client = self._connection.client
        inbox = client.new_inbox()
        batch = _Batch(until)
        # A callback, not next_msg(): next_msg costs a task and a timer per message.
        subscription = await client.subscribe(inbox, cb=batch.on_message)
        request = {"seq": after + 1, "next_by_subj": subject, "batch": limit, "max_bytes": max_bytes}
        try:
            await client.publish(_DIRECT_GET + self._stream, json.dumps(request).encode(), reply=inbox)
            # The timeout applies to silence, not to the whole batch.
            received = -1
            while not batch.done.is_set():
                if batch.seen == received:
                    raise TimeoutError(f"no answer reading {subject} after sequence {after}")
                received = batch.seen
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(batch.done.wait(), self._timeout)
        finally:
            with contextlib.suppress(nats.errors.Error):
                await subscription.unsubscribe()
        if batch.error is not None:
            raise nats.errors.Error(batch.error)
        # Past `until`, or a full batch: the caller goes on from the last message. A short batch that
        # ended before `until` means this replica holds nothing more yet.
        more = batch.last_seen < until and not batch.messages
        return batch.messages, more

    async def _read_singly(self, subject: str, after: int, until: int) -> list[StoredMessage]:
        messages: list[StoredMessage] = []
        position = after
        manager = self._connection.manager
        while position < until and len(messages) < _SINGLE_GET_LIMIT:
            try:
                raw = await manager.get_msg(self._stream, seq=position + 1, subject=subject, next=True)
            except nats.js.errors.NotFoundError:
                break
            sequence = int(raw.seq or 0)
            if sequence > until:
                break
            headers = raw.headers or {}
            messages.append(StoredMessage(sequence, raw.subject or "", raw.data or b"", PUBLIC_HEADER in headers))
            position = sequence
        return messages

    async def _read_with_consumer(self, subject: str, after: int, until: int) -> list[StoredMessage]:
        js: JetStreamContext = self._connection.client.jetstream(timeout=self._timeout)
        config = ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=after + 1,
            inactive_threshold=_CONSUMER_INACTIVE_THRESHOLD,
            mem_storage=True,
        )
        messages: list[StoredMessage] = []
        complete = asyncio.Event()

        async def collect(message: Msg) -> None:
            sequence = _stream_sequence(message)
            if sequence <= until and not complete.is_set():
                headers = message.headers or {}
                messages.append(StoredMessage(sequence, message.subject, message.data, PUBLIC_HEADER in headers))
            if sequence >= until:
                complete.set()

        subscription = await js.subscribe(subject, ordered_consumer=True, config=config, cb=collect)
        try:
            # The timeout applies to silence, not to the whole read: long ranges take as long as they take.
            received = -1
            while not complete.is_set():
                if len(messages) == received:
                    raise TimeoutError(f"no progress reading {subject} after sequence {after}")
                received = len(messages)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(complete.wait(), self._timeout)
        finally:
            await asyncio.shield(_unsubscribe_quietly(subscription))
        return messages


class _Batch:
    """The answers to one batched direct get, up to the status message that ends them."""

    __slots__ = ("done", "error", "last_seen", "messages", "seen", "until")

    def __init__(self, until: int) -> None:
        self.until = until
        self.messages: list[StoredMessage] = []
        self.last_seen = 0
        self.seen = 0
        self.error: str | None = None
        self.done = asyncio.Event()

    async def on_message(self, message: Msg) -> None:
        if self.done.is_set():
            return
        self.seen += 1
        headers = message.headers or {}
        status = headers.get("Status")
        if status is not None:
            if status not in (_END_OF_BATCH, _NO_MESSAGE):
                self.error = f"direct get answered {status} {headers.get('Description', '')}"
            self.done.set()
            return
        sequence = int(headers["Nats-Sequence"])
        self.last_seen = sequence
        if sequence <= self.until:
            self.messages.append(
                StoredMessage(sequence, headers["Nats-Subject"], message.data, PUBLIC_HEADER in headers)
            )


def _stream_sequence(message: Msg) -> int:
    """The stream sequence of a message pushed by a consumer, read from its reply subject.

    ``message.metadata`` parses every field and builds a datetime for each message:
    about a tenth of a long catch-up's cost. The common form is
    ``$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<time>.<pending>``;
    any other (with a domain) is left to nats-py.
    """
    tokens = (message.reply or "").split(".")
    if len(tokens) == 9:
        return int(tokens[5])
    return message.metadata.sequence.stream


async def _unsubscribe_quietly(subscription: JetStreamContext.PushSubscription) -> None:
    # If the connection is gone, the server drops the consumer after its inactive threshold.
    with contextlib.suppress(nats.errors.Error):
        await subscription.unsubscribe()
