"""The barrier's two questions to the stream leader, asked cheaply: up to a thousand rounds a second.

The same questions as ``EventLog.bounds()`` (STREAM.INFO) and
``LogReader.last_sequence()`` (STREAM.MSG.GET ``last_by_subj``), both answered
by the stream leader, but only the fields the barrier needs are decoded, with
msgspec: nats-py builds its whole StreamInfo object graph and base64-decodes
the message, which together cost about as much CPU as the round trips.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TypeVar

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
    err_code: int = 0
    description: str = ""


class _Info(msgspec.Struct):
    state: _State | None = None
    created: str | None = None
    error: _Error | None = None


class _Stored(msgspec.Struct):
    seq: int = 0


class _Message(msgspec.Struct):
    message: _Stored | None = None
    error: _Error | None = None


_INFO = msgspec.json.Decoder(_Info)
_MESSAGE = msgspec.json.Decoder(_Message)
_NO_MESSAGE = 10037  # JetStream's error code for "no message found"
T = TypeVar("T")


class LeaderProbe:
    def __init__(self, connection: NatsConnection, stream: str) -> None:
        self._connection = connection
        self._info_subject = f"$JS.API.STREAM.INFO.{stream}"
        self._get_subject = f"$JS.API.STREAM.MSG.GET.{stream}"
        self._timeout = connection.request_timeout

    async def bounds(self) -> LogBounds:
        """The log's identity and retained range (raises UnavailableError)."""
        info = _decode(_INFO, await self._request(self._info_subject, b""))
        if info.error is not None or info.state is None or info.created is None:
            detail = info.error.description if info.error is not None else "no state in the answer"
            raise UnavailableError(f"cannot read the log's state: {detail}")
        return LogBounds(_log_id(info.created), info.state.first_seq, info.state.last_seq)

    async def last_sequence(self, subject: str) -> int:
        """The sequence of the last message on ``subject`` (wildcards allowed); 0 when none is retained."""
        request = b'{"last_by_subj":"' + subject.encode() + b'"}'
        answer = _decode(_MESSAGE, await self._request(self._get_subject, request))
        if answer.error is not None:
            if answer.error.err_code == _NO_MESSAGE:
                return 0
            raise UnavailableError(f"cannot read the log's last event on {subject}: {answer.error.description}")
        return 0 if answer.message is None else answer.message.seq

    async def _request(self, subject: str, payload: bytes) -> bytes:
        if not self._connection.connected:
            raise UnavailableError("NATS is not connected")
        try:
            reply = await self._connection.client.request(subject, payload, timeout=self._timeout)
        except (nats.errors.Error, TimeoutError) as exc:
            raise UnavailableError(f"cannot read the log's state: {type(exc).__name__}") from exc
        return reply.data


def _decode(decoder: msgspec.json.Decoder[T], data: bytes) -> T:
    try:
        return decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise UnavailableError(f"unexpected answer from JetStream: {exc}") from None


def _log_id(created: str) -> int:
    """Whole seconds of the stream's creation time, as ``eventlog.stream.log_id_of`` computes them."""
    return int(datetime.fromisoformat(created[:19]).replace(tzinfo=UTC).timestamp())
