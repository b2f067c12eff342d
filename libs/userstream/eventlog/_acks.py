"""JetStream acknowledgements for pipelined publishes, collected on one wildcard inbox.

nats-py's ``publish_async`` costs one task, one future, random bytes and one
socket write per message (it yields to the loop on every call, so its flusher
writes each message alone). The recorder instead publishes a whole batch
without yielding — nats-py then writes it in one go — with reply subjects
``<inbox>.<batch>.<index>``; this inbox files each acknowledgement under its
batch and wakes the batch's single future when the last one arrives.
"""

from __future__ import annotations

import asyncio
import itertools

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

# nats-py puts a status line's code under this header (503: no stream listens on the subject).
_STATUS_HEADER = "Status"
_NO_RESPONDERS = "503"


class ApiError(msgspec.Struct):
    code: int = 0
    err_code: int = 0
    description: str = ""


class PubAck(msgspec.Struct):
    """JetStream's answer to one publish: where it was stored, or why not."""

    stream: str = ""
    seq: int = 0
    duplicate: bool = False
    error: ApiError | None = None


_DECODER = msgspec.json.Decoder(PubAck)
NO_RESPONDERS = PubAck(error=ApiError(code=503, description="no stream listens on the subject"))
_UNREADABLE = PubAck(error=ApiError(code=500, description="unreadable acknowledgement"))


class PendingBatch:
    """Acknowledgements expected for one batch; ``done`` resolves when all have arrived."""

    __slots__ = ("_remaining", "acks", "done", "prefix", "token")

    def __init__(self, token: str, prefix: str, size: int) -> None:
        self.token = token
        self.prefix = prefix
        self.acks: list[PubAck | None] = [None] * size
        self._remaining = size
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if size == 0:
            self.done.set_result(None)

    def reply(self, index: int) -> str:
        return f"{self.prefix}{index}"

    def expire(self) -> None:
        """Give up waiting: ``done`` fails with TimeoutError unless every acknowledgement is in."""
        if not self.done.done():
            self.done.set_exception(TimeoutError(f"{self._remaining} of {len(self.acks)} acknowledgements missing"))

    def arrive(self, index: int, ack: PubAck) -> None:
        if not 0 <= index < len(self.acks) or self.acks[index] is not None:
            return  # not ours, or a redelivery
        self.acks[index] = ack
        self._remaining -= 1
        if self._remaining == 0 and not self.done.done():
            self.done.set_result(None)


class AckInbox:
    """One subscription per connection that receives every acknowledgement of its recorder."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self._prefix = client.new_inbox() + "."
        self._batches: dict[str, PendingBatch] = {}
        self._tokens = itertools.count()
        self._subscription: Subscription | None = None
        self._starting: asyncio.Lock = asyncio.Lock()

    async def open(self, size: int) -> PendingBatch:
        """Register a batch of ``size`` publishes; close it when done, whatever happened."""
        if self._subscription is None:
            async with self._starting:
                if self._subscription is None:
                    # nats-py re-subscribes after a reconnect, so one subscription serves the connection's life.
                    self._subscription = await self.client.subscribe(self._prefix + "*.*", cb=self._on_ack)
        token = format(next(self._tokens), "x")
        batch = PendingBatch(token, f"{self._prefix}{token}.", size)
        self._batches[token] = batch
        return batch

    def close(self, batch: PendingBatch) -> None:
        """Forget ``batch``: acknowledgements arriving later are dropped."""
        self._batches.pop(batch.token, None)

    async def _on_ack(self, msg: Msg) -> None:
        token, _, index = msg.subject[len(self._prefix) :].partition(".")
        batch = self._batches.get(token)
        if batch is None or not index.isdigit():
            return
        if msg.headers and msg.headers.get(_STATUS_HEADER) == _NO_RESPONDERS:
            batch.arrive(int(index), NO_RESPONDERS)
            return
        try:
            ack = _DECODER.decode(msg.data)
        except msgspec.DecodeError:
            ack = _UNREADABLE
        batch.arrive(int(index), ack)
