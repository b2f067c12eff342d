"""The load generator's HTTP/SSE parsing: chunked bodies and frames split anywhere."""

from __future__ import annotations

import pytest

from benchmarks._wire import Dechunker, FrameSplitter, frame_fields, parse_head


def _chunked(*parts: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in parts) + b"0\r\n\r\n"


def test_head_is_parsed() -> None:
    head = parse_head(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nTransfer-Encoding: chunked")
    assert head.status == 200
    assert head.chunked
    assert head.headers["content-type"] == "text/event-stream"


def test_a_non_http_answer_is_refused() -> None:
    with pytest.raises(ValueError, match="not an HTTP response"):
        parse_head(b"SSH-2.0-OpenSSH")


@pytest.mark.parametrize("cut", [1, 2, 3, 5, 7, 11, 64])
def test_dechunking_survives_any_split(cut: int) -> None:
    body = _chunked(b"event: change\nid: 1\n", b"data: {}\n\n", b"x" * 300)
    dechunker = Dechunker()
    out = b"".join(dechunker.feed(body[i : i + cut]) for i in range(0, len(body), cut))
    assert out == b"event: change\nid: 1\ndata: {}\n\n" + b"x" * 300
    assert dechunker.ended


def test_frames_are_cut_at_blank_lines_and_crlf_is_read_as_lf() -> None:
    splitter = FrameSplitter()
    stream = b"retry: 3000\r\n\r\nid: 5\r\nevent: change\r\ndata: {}\r\n\r\nevent: ping\ndata: {}\n\npartial"
    frames: list[bytes] = []
    for i in range(len(stream)):  # one byte at a time: a CRLF split across reads too
        frames += splitter.feed(stream[i : i + 1])
    assert frames == [b"retry: 3000", b"id: 5\nevent: change\ndata: {}", b"event: ping\ndata: {}"]


def test_fields_of_a_frame() -> None:
    assert frame_fields(b'event: change\nid: 42\ndata: {"a":1}') == (b"change", b"42", b'{"a":1}')
    assert frame_fields(b"data: a\ndata: b") == (b"message", None, b"a\nb")
    assert frame_fields(b"retry: 3000") == (b"message", None, None)
