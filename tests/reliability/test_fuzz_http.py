"""Fuzzing the edge over HTTP with hypothesis: paths, query strings, headers and tokens.

Each request's answer is predicted from CONTRACT §5 alone — token precedence
(header, cookie, query), strict HS256 with ``exp`` and a valid ``sub``, the start
position (``Last-Event-ID``, else ``offset``, else now), the 410 of the removed
per-org stream — and must match: the same status, the one JSON error shape with
the code that goes with it, never a 5xx (a 503 only with Retry-After, under load).
Garbage that is not HTTP at all is refused or dropped; the edge stays up.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlencode

import jwt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.reliability._deployment import SECRET
from tests.reliability._strategies import cursors, header_text, tokens
from tests.reliability.conftest import Deploy
from userstream.embedded_nats import NatsServerProcess

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

EXAMPLES = 400
TIMEOUT = 10.0
CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    410: "gone",
    429: "too_many_streams",
    503: "unavailable",
}
_TOKEN_SAFE = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-", max_size=40)
_RESERVED_HEADERS = {"host", "authorization", "cookie", "last-event-id", "content-length", "transfer-encoding",
                     "connection", "accept", "expect", "upgrade", "te", "origin"}  # fmt: skip


@dataclass
class Request:
    path: str
    query: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    expected: int = 200


def _is_cursor(text: str) -> bool:
    """CONTRACT §5: `now`, or a cursor as the stream sends it (decimal, no sign, no leading zero)."""
    if text == "now":
        return True
    return 0 < len(text) <= 25 and text.isascii() and text.isdigit() and (text == "0" or text[0] != "0")


@st.composite
def stream_requests(draw: st.DrawFn) -> Request:
    kind = draw(st.sampled_from(["me", "me", "me", "me", "public", "gone", "other"]))
    if kind == "gone":
        return Request(f"/organizations/{draw(_TOKEN_SAFE.filter(bool))}/sync/stream", expected=410)
    if kind == "other":
        return Request(
            "/" + draw(_TOKEN_SAFE.filter(lambda p: p not in ("healthz", "readyz", "metrics"))), expected=404
        )
    request = Request("/me/stream" if kind == "me" else "/public/stream")
    for name, value in draw(st.dictionaries(_TOKEN_SAFE.filter(bool), header_text, max_size=2)).items():
        if name.lower() not in _RESERVED_HEADERS:
            request.headers[name] = value
    request.query = {
        key: value
        for key, value in draw(st.dictionaries(_TOKEN_SAFE.filter(bool), st.text(max_size=10), max_size=2)).items()
        if key not in ("offset", "access_token")
    }
    expected = 200
    if kind == "me":
        expected = _place_token(draw, request)
    start = draw(st.sampled_from(["none", "offset", "last-event-id", "both"]))
    start_ok = True
    if start in ("last-event-id", "both"):
        value = draw(cursors.filter(lambda c: "\n" not in c and "\r" not in c and c.isprintable()))
        request.headers["Last-Event-ID"] = value
        start_ok = _is_cursor(value.strip(" \t"))
    if start in ("offset", "both"):
        value = draw(cursors)
        request.query["offset"] = value
        if start == "offset":
            start_ok = _is_cursor(value)
    if expected == 200 and not start_ok:
        expected = 400
    request.expected = expected
    return request


def _place_token(draw: st.DrawFn, request: Request) -> int:
    """Put a token where the contract says one may be; returns 200 or 401 as the contract decides."""
    if draw(st.booleans()):  # half the time a good token, so that what follows authentication is fuzzed too
        user = "f" + draw(_TOKEN_SAFE).replace(".", "")[:100]
        token, valid = jwt.encode({"sub": user, "exp": int(time.time()) + 600}, SECRET, algorithm="HS256"), True
    else:
        token, valid = draw(tokens(SECRET))
    if "." not in token:
        token = draw(_TOKEN_SAFE)  # garbage, but nothing a cookie or header could split on
    where = draw(st.sampled_from(["header", "cookie", "query", "none", "other-scheme", "header-over-query"]))
    if where == "header":
        request.headers["Authorization"] = f"{draw(st.sampled_from(['Bearer', 'bearer', 'BEARER']))} {token}"
    elif where == "cookie":
        request.headers["Cookie"] = f"userstream_token={token}"
    elif where == "query":
        request.query["access_token"] = token
    elif where == "other-scheme":
        request.headers["Authorization"] = f"{draw(st.sampled_from(['Basic', 'Token', 'Bearer', 'JWT']))}{token}"
        return 401  # no space after the scheme, or not Bearer: the header is not `Bearer <token>`
    elif where == "header-over-query":
        other, _ = draw(tokens(SECRET))
        request.headers["Authorization"] = f"Bearer {token}"
        request.query["access_token"] = other if "." in other else "x"
    else:
        return 401
    return 200 if valid and token else 401


def send(base_url: str, request: Request) -> tuple[int, dict[str, str], bytes]:
    """One GET over a fresh socket; an event stream is closed as soon as its head has arrived."""
    host, port = base_url.removeprefix("http://").split(":")
    target = request.path + ("?" + urlencode(request.query) if request.query else "")
    lines = [f"GET {target} HTTP/1.1", f"Host: {host}:{port}", *(f"{k}: {v}" for k, v in request.headers.items())]
    with socket.create_connection((host, int(port)), timeout=TIMEOUT) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        return _read_response(sock)


def _read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a full response head: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in header_lines)}
    if headers.get("content-type", "").startswith("text/event-stream"):
        return int(status_line.split()[1]), headers, body
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(status_line.split()[1]), headers, body


def fuzz_edge(base_url: str, seen: Counter[str]) -> None:
    @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
    @given(request=stream_requests())
    def one(request: Request) -> None:
        status, headers, body = send(base_url, request)
        route = request.path if request.path in ("/me/stream", "/public/stream") else request.path.split("/")[1]
        route = route if route in ("/me/stream", "/public/stream", "organizations") else "other paths"
        seen[f"{route}: expected {request.expected}, got {status}"] += 1
        if request.expected == 200 and status in (429, 503):
            pass  # the user's stream limit or a slow acl under load: allowed answers to a valid request
        else:
            assert status == request.expected, (request, status, body[:300])
        assert status < 500 or (status == 503 and "retry-after" in headers), (status, body[:300])
        if status == 200 and request.path != "/readyz":
            assert headers.get("content-type", "").startswith("text/event-stream"), headers
            assert headers.get("cache-control") == "no-cache"
            return
        error = json.loads(body)["error"]
        assert error["code"] == CODES[status], error
        assert isinstance(error["message"], str), error
        if status == 401:
            assert "www-authenticate" in headers

    @settings(max_examples=EXAMPLES // 4, deadline=None, database=None)
    @given(raw=st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode)))
    def garbage(raw: bytes) -> None:
        host, port = base_url.removeprefix("http://").split(":")
        seen["not HTTP at all"] += 1
        with socket.create_connection((host, int(port)), timeout=TIMEOUT) as sock:
            sock.sendall(raw + b"\r\n\r\n")
            sock.shutdown(socket.SHUT_WR)
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        if answer:
            status = int(answer.split(b" ", 2)[1])
            assert status < 500, answer[:300]

    one()
    garbage()


async def test_fuzz_http_inputs(deploy: Deploy, nats_server: NatsServerProcess) -> None:
    async with deploy(nats_server.url, edges=1) as deployment:
        edge = deployment.edges[0]
        seen: Counter[str] = Counter()
        await asyncio.to_thread(fuzz_edge, edge.base_url, seen)
        print(json.dumps(dict(sorted(seen.items())), indent=2))
        assert edge.running, edge.log_text()[-2000:]
        status, _, _ = await asyncio.to_thread(send, edge.base_url, Request("/healthz"))
        assert status == 200
        assert "edge.unexpected_error" not in edge.log_text()
