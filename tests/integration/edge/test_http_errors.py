"""Every error status of /me/stream in the one JSON shape, and the token and offset rules (CONTRACT §5)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
import pytest

from tests.support.sse import HTTPResponse, SSEStream, request, request_error
from tests.support.stack import SECRET, Stack

pytestmark = pytest.mark.integration


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    return ".".join([_b64(json.dumps(header).encode()), _b64(json.dumps(claims).encode()), _b64(signature)])


def _signed(claims: dict[str, Any], alg: str = "HS256") -> str:
    """Signed with the right secret, built by hand (pyjwt refuses some of these claims and keys)."""
    digest = {"HS256": hashlib.sha256, "HS512": hashlib.sha512}[alg]
    header = json.dumps({"alg": alg, "typ": "JWT"}).encode()
    signing_input = ".".join([_b64(header), _b64(json.dumps(claims).encode())])
    signature = hmac.new(SECRET.encode(), signing_input.encode(), digest).digest()
    return signing_input + "." + _b64(signature)


def _bad_tokens() -> dict[str, str]:
    now = int(time.time())
    good = {"sub": "alice", "exp": now + 3600}
    return {
        "malformed": "not-a-jwt",
        "three garbage parts": "a.b.c",
        "expired": jwt.encode({"sub": "alice", "exp": now - 10}, SECRET, algorithm="HS256"),
        "wrong secret": jwt.encode(good, "another-secret-that-is-also-long-enough", algorithm="HS256"),
        "alg none": _unsigned({"alg": "none", "typ": "JWT"}, good),
        "alg None with a signature": _unsigned({"alg": "None", "typ": "JWT"}, good, b"x"),
        "HS512 with the right secret": _signed(good, "HS512"),
        "RS256 header, HMAC signature": _unsigned({"alg": "RS256", "typ": "JWT"}, good, b"\x00" * 32),
        "no exp": jwt.encode({"sub": "alice"}, SECRET, algorithm="HS256"),
        "no sub": jwt.encode({"exp": now + 3600}, SECRET, algorithm="HS256"),
        "sub with a space": jwt.encode({"sub": "al ice", "exp": now + 3600}, SECRET, algorithm="HS256"),
        "sub empty": jwt.encode({"sub": "", "exp": now + 3600}, SECRET, algorithm="HS256"),
        "sub too long": jwt.encode({"sub": "a" * 129, "exp": now + 3600}, SECRET, algorithm="HS256"),
        "sub not a string": _signed({"sub": 42, "exp": now + 3600}),
        "exp not a number": jwt.encode({"sub": "alice", "exp": "tomorrow"}, SECRET, algorithm="HS256"),
    }


def _assert_error(response: HTTPResponse, status: int, code: str) -> str:
    assert response.status == status, response.body
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == code
    message: str = body["error"]["message"]
    assert message
    return message


async def test_removed_organization_stream_is_gone(stack: Stack) -> None:
    response = await request_error(stack.base_url, "/organizations/acme/sync/stream", headers=stack.auth("alice"))
    message = _assert_error(response, 410, "gone")
    assert "/me/stream" in message


async def test_malformed_start_positions_are_400_in_header_and_query(stack: Stack) -> None:
    bad = ["", "-1", "-0", "abc", "12abc", "1.5", "0x10", "01", " 7 7", "9" * 26, "١٢", "now ", "NOW", "+5"]
    for value in bad:
        by_query = await request_error(stack.base_url, query={"offset": value}, headers=stack.auth("alice"))
        _assert_error(by_query, 400, "bad_request")
        if value.strip() != value or value == "":
            continue  # an HTTP header value cannot carry surrounding spaces
        by_header = await request_error(stack.base_url, headers={**stack.auth("alice"), "Last-Event-ID": value})
        _assert_error(by_header, 400, "bad_request")
    empty_header = await request_error(stack.base_url, headers={**stack.auth("alice"), "Last-Event-ID": ""})
    _assert_error(empty_header, 400, "bad_request")
    # The public stream reads its start the same way.
    public = await request_error(stack.base_url, "/public/stream", query={"offset": "garbage"})
    _assert_error(public, 400, "bad_request")


async def test_bad_tokens_are_401_by_header_cookie_and_query(stack: Stack) -> None:
    for name, token in _bad_tokens().items():
        for where in ("header", "cookie", "query"):
            kwargs: dict[str, Any] = {}
            if where == "header":
                kwargs["headers"] = {"Authorization": f"Bearer {token}"}
            elif where == "cookie":
                kwargs["headers"] = {"Cookie": f"userstream_token={token}"}
            else:
                kwargs["query"] = {"access_token": token}
            response = await request_error(stack.base_url, **kwargs)
            try:
                _assert_error(response, 401, "unauthorized")
            except AssertionError as error:
                raise AssertionError(f"{name} by {where}: {error}") from error
            assert response.headers["www-authenticate"].startswith("Bearer")


async def test_missing_and_malformed_authorization_are_401(stack: Stack) -> None:
    cases: list[dict[str, Any]] = [
        {},
        {"headers": {"Authorization": "Bearer"}},
        {"headers": {"Authorization": "Bearer   "}},
        {"headers": {"Authorization": f"Basic {stack.token('alice')}"}},
        {"headers": {"Authorization": stack.token("alice")}},
        {"headers": {"Cookie": "userstream_token="}},
        {"query": {"access_token": ""}},
    ]
    for kwargs in cases:
        _assert_error(await request_error(stack.base_url, **kwargs), 401, "unauthorized")


async def test_a_valid_token_works_by_header_cookie_and_query(stack: Stack) -> None:
    token = stack.token("alice")
    for kwargs in (
        {"headers": {"Authorization": f"Bearer {token}"}},
        {"headers": {"Authorization": f"bearer {token}"}},
        {"headers": {"Cookie": f"other=1; userstream_token={token}"}},
        {"query": {"access_token": token}},
    ):
        result = await request(stack.base_url, "/me/stream", **kwargs)  # type: ignore[arg-type]
        assert isinstance(result, SSEStream), kwargs
        assert (await result.next_event()).event == "offset"
        await result.close()


async def test_stream_response_headers(stack: Stack) -> None:
    async with await stack.stream("alice") as stream:
        headers = stream.response.headers
        assert stream.response.status == 200
        assert headers["content-type"].split(";")[0] == "text/event-stream"
        assert headers["cache-control"] == "no-cache"
        assert headers["x-accel-buffering"] == "no"


async def test_unknown_path_and_method_use_the_json_shape(stack: Stack) -> None:
    _assert_error(await request_error(stack.base_url, "/nope"), 404, "not_found")
    _assert_error(await request_error(stack.base_url, "/me/stream", method="POST"), 405, "method_not_allowed")


async def test_tokens_are_never_logged(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    token = stack.token("alice")
    result = await request(stack.base_url, "/me/stream", query={"access_token": token})
    assert isinstance(result, SSEStream)
    await result.next_event()
    await result.close()
    bad = await request_error(stack.base_url, query={"access_token": token + "x"})
    _assert_error(bad, 401, "unauthorized")
    captured = capsys.readouterr()
    signature = token.rsplit(".", 1)[1]
    assert signature not in captured.out + captured.err
