"""The load generator's per-connection checks, fed bytes as the socket would deliver them."""

from __future__ import annotations

import json

from benchmarks._client import Session, StreamClient

HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"


class _Transport:
    def __init__(self) -> None:
        self.written = b""
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _change(cursor: int, org: str, step: int, sent: float) -> bytes:
    data = {"activityId": str(cursor), "organizationId": org, "data": {"s": step, "t": sent, "pad": "x"}}
    return b"event: change\nid: %d\ndata: %s\n\n" % (cursor, json.dumps(data).encode())


def _client(now: float = 100.0) -> tuple[StreamClient, Session]:
    session = Session()
    client = StreamClient(session, frozenset({"o1", "o2"}), b"GET / HTTP/1.1\r\n\r\n", clock=lambda: now)
    client.connection_made(_Transport())  # type: ignore[arg-type]
    return client, session


def test_an_exact_delivery_passes_and_latency_is_measured() -> None:
    client, session = _client(now=100.010)
    session.begin(7)
    client.begin()
    client.data_received(
        HEAD + _chunk(b'retry: 3000\n\nevent: offset\nid: 10\ndata: {"cursor":"10","resumed":false}\n\n')
    )
    body = _change(11, "o1", 7, 100.0) + _change(12, "o2", 7, 100.0) + _change(13, "o1", 7, 100.0)
    for i in range(0, len(body), 17):  # frames split across chunks
        client.data_received(_chunk(body[i : i + 17]))
    assert client.offset_cursor == 10
    assert client.resumed is False
    assert client.shortfall({"o1": 2, "o2": 1, "o3": 5}) == (0, 0)
    assert client.out_of_order == 0
    assert client.foreign == 0
    assert session.histogram.count == 3
    p50 = session.histogram.percentile(0.5)
    assert p50 is not None
    assert 9.9 < p50 < 10.2


def test_loss_duplicates_foreign_events_and_stale_steps_are_counted() -> None:
    client, session = _client()
    session.begin(2)
    client.begin()
    frames = (
        _change(5, "o1", 2, 99.0)
        + _change(5, "o1", 2, 99.0)  # duplicate: cursor not above the last one
        + _change(6, "o3", 2, 99.0)  # not one of the user's organizations
        + _change(7, "o2", 1, 99.0)  # an event of an earlier step
    )
    client.data_received(HEAD + _chunk(frames))
    assert client.out_of_order == 1
    assert client.foreign == 1
    assert client.stale == 1
    # o1: published 3, received 2 (one of them twice); o2: published 1, received none of this step.
    assert client.shortfall({"o1": 3, "o2": 1}) == (2, 0)
    assert client.shortfall({"o1": 1}) == (0, 1)


def test_an_error_status_closes_and_keeps_the_body() -> None:
    client, _ = _client()
    client.data_received(b'HTTP/1.1 503 Service Unavailable\r\ncontent-length: 9\r\n\r\n{"e":1}')
    assert client.status == 503
    assert client.error_body.startswith(b'{"e"')
    assert client.transport is not None
    assert client.transport.closed  # type: ignore[attr-defined]


def test_close_events_are_recorded() -> None:
    client, _ = _client()
    client.data_received(HEAD + _chunk(b'event: close\ndata: {"reason":"slow-consumer"}\n\n'))
    assert client.close_reason == "close:slow-consumer"
