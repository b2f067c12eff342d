"""The edge's small pure parts: start positions, token extraction, limits, SSE frames, timestamps."""

from __future__ import annotations

import calendar
import time

import pytest

from userstream.auth.keys import secret_key
from userstream.auth.verifier import TokenVerifier
from userstream.cursor import Cursor
from userstream.edge import sse
from userstream.edge._timestamps import TimestampParser
from userstream.edge.auth import find_token
from userstream.edge.errors import BadRequestError, TooManyStreamsError, UnauthorizedError, UnavailableHTTPError
from userstream.edge.registry import StreamRegistry
from userstream.edge.routes import _parse_start
from userstream.tokens import issue_token

SECRET = "unit-test-secret-long-enough-for-hs256"
VERIFIER = TokenVerifier([secret_key(SECRET, "test")])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("now", None),
        ("0", Cursor(0, 0)),
        ("57", Cursor(0, 57)),
        ("1796012345000000000057", Cursor(1796012345, 57)),
    ],
)
def test_start_positions(text: str, expected: Cursor | None) -> None:
    assert _parse_start(text, "the offset parameter") == expected


@pytest.mark.parametrize("text", ["", "-1", "abc", "01", "1.0", "1e3", "Now", "9" * 26, "١"])
def test_malformed_start_positions_are_bad_requests(text: str) -> None:
    with pytest.raises(BadRequestError) as raised:
        _parse_start(text, "the Last-Event-ID header")
    assert "Last-Event-ID" in raised.value.message


def test_token_precedence_header_then_cookie_then_query() -> None:
    assert find_token("Bearer a", "b", "c") == "a"
    assert find_token(None, "b", "c") == "b"
    assert find_token(None, None, "c") == "c"
    assert find_token("bearer  a ", None, None) == "a"


@pytest.mark.parametrize(("authorization", "cookie", "query"), [(None, None, None), ("", "", "")])
def test_no_token_at_all(authorization: str | None, cookie: str | None, query: str | None) -> None:
    assert find_token(authorization, cookie, query) is None  # the session hook's case, or 401 without one


@pytest.mark.parametrize(
    ("authorization", "cookie", "query"),
    [("Basic abc", None, None), ("Bearer", None, None), ("Token x", "c", "q")],
)
def test_malformed_authorization(authorization: str | None, cookie: str | None, query: str | None) -> None:
    with pytest.raises(UnauthorizedError):
        find_token(authorization, cookie, query)


async def test_expiry_is_reported_in_the_principal() -> None:
    now = time.time()
    principal = await VERIFIER.verify(issue_token("alice", SECRET, 120, now=now))
    assert principal.expires_at == int(now + 120)


def test_registry_limits_per_user_and_per_worker() -> None:
    registry = StreamRegistry(max_per_user=2, max_per_worker=3, retry_after=7)
    registry.reserve("alice")
    registry.reserve("alice")
    with pytest.raises(TooManyStreamsError):
        registry.reserve("alice")
    registry.reserve(None)  # the public stream counts towards the worker only
    with pytest.raises(UnavailableHTTPError) as full:
        registry.reserve("bob")
    assert full.value.headers == {"Retry-After": "7"}
    registry.unreserve("alice")
    assert registry.streams_of("alice") == 1
    registry.reserve("bob")
    assert registry.streams_of("bob") == 1


def test_small_frames() -> None:
    assert sse.PING == b"event: ping\ndata: {}\n\n"
    assert sse.retry_frame(3000) == b"retry: 3000\n\n"
    assert sse.offset_frame("42", resumed=True) == b'event: offset\nid: 42\ndata: {"cursor":"42","resumed":true}\n\n'
    assert sse.close_frame("shutdown") == b'event: close\ndata: {"reason":"shutdown"}\n\n'
    assert sse.must_refetch_frame("cursor-expired") == b'event: must-refetch\ndata: {"reason":"cursor-expired"}\n\n'


def test_timestamps_of_the_log() -> None:
    parser = TimestampParser()
    base = calendar.timegm((2026, 3, 4, 5, 6, 7, 0, 0, 0))
    assert parser.seconds("2026-03-04T05:06:07.123456789Z") == pytest.approx(base + 0.123456789)
    assert parser.seconds("2026-03-04T05:06:07.5Z") == pytest.approx(base + 0.5)  # cached second
    assert parser.seconds("2026-03-04T05:06:08Z") == pytest.approx(base + 1)
    assert parser.seconds("garbage") is None
