"""Cursor refusals survive the trip through a gRPC status message."""

from __future__ import annotations

import pytest

from userstream.acl_state import CURSOR_EXPIRED, CURSOR_UNKNOWN, CursorRefusedError
from userstream.errors import FailedPreconditionError


@pytest.mark.parametrize("reason", [CURSOR_EXPIRED, CURSOR_UNKNOWN])
def test_reason_round_trips(reason: str) -> None:
    error = CursorRefusedError(reason, "position 4: history before 9 is gone")  # type: ignore[arg-type]
    assert isinstance(error, FailedPreconditionError)
    parsed = CursorRefusedError.from_message(str(error))
    assert parsed is not None
    assert (parsed.reason, parsed.detail) == (reason, error.detail)


@pytest.mark.parametrize("message", ["", "refusing to serve", "cursor-expired", "other: cursor-expired: x"])
def test_other_messages_are_not_refusals(message: str) -> None:
    assert CursorRefusedError.from_message(message) is None
