"""An ordered JetStream consumer that a replica owns alone and restarts where it left off.

Each acl replica reads the whole membership history itself, so it uses an
*ordered* consumer (ephemeral, in memory, no acks) rather than a shared durable:
a durable shared by replicas would split the messages between them, and one
durable per replica would be left behind on the server by every pod that goes
away. The server deletes an ordered consumer nobody reads after
``inactive_threshold``.

nats-py recreates an ordered consumer after a missed heartbeat or a sequence
gap; the feed additionally restarts it explicitly (``restart``) after a NATS
reconnect, from the sequence after the last one handled, so a replica never
depends on the old consumer having survived.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import nats.errors
import structlog
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.client import JetStreamContext

from userstream.nats_connection import NatsConnection

log = structlog.get_logger("userstream.acl")

Handler = Callable[[int, Msg], Awaitable[None]]


class OrderedFeed:
    """Delivers the messages of ``subjects`` in ``stream`` to ``handler(sequence, msg)``, in log order, each once.

    ``last`` is the stream sequence of the last message handled; messages at or
    before it (redelivered after a restart) are skipped.
    """

    def __init__(
        self,
        connection: NatsConnection,
        stream: str,
        subjects: tuple[str, ...],
        handler: Handler,
        *,
        heartbeat: float,
        inactive_threshold: float,
    ) -> None:
        self._connection = connection
        self._stream = stream
        self._subjects = subjects
        self._handler = handler
        self._heartbeat = heartbeat
        self._inactive_threshold = inactive_threshold
        self._subscription: JetStreamContext.PushSubscription | None = None
        self.last = 0

    async def start(self, after: int, *, last_per_subject: bool = False) -> None:
        """(Re)subscribe from the message after sequence ``after`` (or each subject's last message)."""
        await self.stop()
        self.last = after
        if last_per_subject:
            config = ConsumerConfig(deliver_policy=DeliverPolicy.LAST_PER_SUBJECT)
        else:
            config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=after + 1)
        config.inactive_threshold = self._inactive_threshold
        if len(self._subjects) > 1:
            config.filter_subjects = list(self._subjects)
        self._subscription = await self._connection.jetstream.subscribe(
            self._subjects[0],
            stream=self._stream,
            cb=self._on_message,
            ordered_consumer=True,
            config=config,
            idle_heartbeat=self._heartbeat,
            # Unbounded client-side queue: nats-py drops what does not fit, which would be a silent
            # gap; the server's flow control bounds what is in flight instead.
            pending_msgs_limit=0,
            pending_bytes_limit=0,
        )
        if not last_per_subject:
            self._resume_internal_resets_from(after)

    async def restart(self) -> None:
        """Resubscribe after the last message handled."""
        await self.start(self.last)

    async def stop(self) -> None:
        subscription, self._subscription = self._subscription, None
        if subscription is None:
            return
        try:
            await subscription.unsubscribe()
        except (nats.errors.Error, TimeoutError) as exc:
            # The connection is gone or going; the server drops the consumer after inactive_threshold.
            log.debug("acl.feed_unsubscribe_failed", subjects=self._subjects, error=repr(exc))

    async def _on_message(self, msg: Msg) -> None:
        sequence = msg.metadata.sequence.stream
        if sequence <= self.last:
            return  # redelivered by a restarted consumer
        try:
            await self._handler(sequence, msg)
        except Exception:
            # One bad message must not stop the feed; the handler decides what skipping means.
            log.exception("acl.feed_handler_failed", subject=msg.subject, sequence=sequence)
        self.last = sequence

    def _resume_internal_resets_from(self, after: int) -> None:
        # nats-py restarts an ordered consumer from the last sequence *it* saw plus one, which is
        # 0 until a first message arrives: the whole history would be replayed. Start it at ours.
        jsi = self._subscription._sub._jsi if self._subscription is not None else None
        if jsi is not None:
            jsi._sseq = after
