"""The log's bounds, read cheaply: the barrier asks for them up to a thousand times a second.

Same question as ``EventLog.bounds()`` (STREAM.INFO, answered by the stream
leader), but only ``state`` and ``created`` are decoded, with msgspec: nats-py
builds its whole StreamInfo object graph, which costs more than the round
trip itself.
"""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import nats.errors
from userstream.cursor import LogBounds
from userstream.errors import UnavailableError
from userstream.nats_connection import NatsConnection


class _State(msgspec.Struct):
    first_seq: int = 0
    last_seq: int = 0


class _Error(msgspec.Struct):
    code: int = 0
    description: str = ""


class _Info(msgspec.Struct):
    state: _State | None = None
    created: str | None = None
    error: _Error | None = None


_DECODER = msgspec.json.Decoder(_Info)


class HeadReader:
    def __init__(self, connection: NatsConnection, stream: str) -> None:
        self._connection = connection
        self._subject = f"$JS.API.STREAM.INFO.{stream}"
        self._timeout = connection.request_timeout

    async def bounds(self) -> LogBounds:
        """The log's identity and retained range (raises UnavailableError)."""
        if not self._connection.connected:
            raise UnavailableError("NATS is not connected")
        try:
            reply = await self._connection.client.request(self._subject, b"", timeout=self._timeout)
            info = _DECODER.decode(reply.data)
        except (nats.errors.Error, TimeoutError, msgspec.DecodeError) as exc:
            raise UnavailableError(f"cannot read the log's state: {type(exc).__name__}") from exc
        if info.error is not None or info.state is None or info.created is None:
            detail = info.error.description if info.error is not None else "no state in the answer"
            raise UnavailableError(f"cannot read the log's state: {detail}")
        return LogBounds(_log_id(info.created), info.state.first_seq, info.state.last_seq)


def _log_id(created: str) -> int:
    """Whole seconds of the stream's creation time, as ``eventlog.stream.log_id_of`` computes them."""
    return int(datetime.fromisoformat(created[:19]).replace(tzinfo=UTC).timestamp())
