"""Logging: secrets never written, whatever key or text they arrive in; one renderer for all."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from userstream.logging import REDACTED, configure_logging, redact_secrets, redact_text
from userstream.settings import LoggingSettings

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"


def redact(**event: object) -> dict[str, object]:
    return dict(redact_secrets(None, "info", dict(event)))


@pytest.mark.parametrize(
    "key",
    [
        "token",
        "access_token",
        "Authorization",
        "cookie",
        "jwt",
        "secret",
        "JWT_SECRET",
        "password",
        "userstream_token",
        "refresh_token",
        "api_secret_key",
        "db_passwd",
        "credentials",
    ],
)
def test_values_under_secret_keys_are_replaced(key: str) -> None:
    assert redact(**{key: "s3cr3t"})[key] == REDACTED


def test_other_values_are_kept() -> None:
    event = {"event": "stream.open", "user_id": "alice", "cursor": "57", "count": 3, "ok": True}
    assert redact(**event) == event


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            f"GET /me/stream?offset=now&access_token={JWT} HTTP/1.1",
            "GET /me/stream?offset=now&access_token=[redacted] HTTP/1.1",
        ),
        ("/me/stream?access_token=abc123&offset=5", "/me/stream?access_token=[redacted]&offset=5"),
        (f"header Authorization: Bearer {JWT}", "header Authorization: Bearer [redacted]"),
        ("authorization: bearer opaque-value, next", "authorization: bearer [redacted], next"),
        (f"decoding {JWT} failed", "decoding [redacted] failed"),
        ("nothing to hide here", "nothing to hide here"),
    ],
)
def test_credentials_inside_text_are_replaced(text: str, expected: str) -> None:
    assert redact_text(text) == expected


def test_nested_values_are_redacted() -> None:
    event = redact(
        request={"headers": {"Authorization": "Bearer x", "Accept": "text/event-stream"}, "url": f"/?token={JWT}"}
    )
    assert event["request"] == {
        "headers": {"Authorization": REDACTED, "Accept": "text/event-stream"},
        "url": "/?token=[redacted]",
    }
    assert redact(args=("a", JWT))["args"] == ["a", REDACTED]


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        structlog.reset_defaults()
        structlog.contextvars.clear_contextvars()
        root.handlers[:] = handlers
        root.setLevel(level)
        logging.getLogger("uvicorn.access").disabled = False


def lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.mark.usefixtures("restore_logging")
def test_json_logs_from_structlog_and_the_standard_library_are_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(LoggingSettings(format="json", level="info"), "test")
    structlog.get_logger("t").info("stream.open", user_id="alice", token=JWT, url=f"/me/stream?access_token={JWT}")
    structlog.get_logger("t").debug("hidden.below_level")
    logging.getLogger("some.library").warning("request to %s failed", f"/x?access_token={JWT}", extra={"jwt": JWT})
    try:
        raise ValueError(f"bad token {JWT}")
    except ValueError:
        structlog.get_logger("t").exception("rpc.failed")
    output = capsys.readouterr().err
    assert JWT not in output
    first, library, failure = lines(output)
    assert first["event"] == "stream.open"
    assert first["service"] == "test"
    assert first["level"] == "info"
    assert first["user_id"] == "alice"
    assert first["token"] == REDACTED
    assert first["url"] == "/me/stream?access_token=[redacted]"
    assert library["event"] == "request to /x?access_token=[redacted] failed"
    assert library["jwt"] == REDACTED
    assert "bad token [redacted]" in str(failure["exception"])


@pytest.mark.usefixtures("restore_logging")
def test_console_logs_are_redacted_too(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(LoggingSettings(format="console", level="debug"), "test")
    structlog.get_logger("t").debug("stream.open", authorization=f"Bearer {JWT}")
    output = capsys.readouterr().err
    assert "stream.open" in output
    assert JWT not in output


@pytest.mark.usefixtures("restore_logging")
def test_uvicorn_access_log_is_off() -> None:
    configure_logging(LoggingSettings(), "test")
    assert logging.getLogger("uvicorn.access").disabled
