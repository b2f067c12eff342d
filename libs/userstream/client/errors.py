"""Why a stream cannot go on: these end the iteration; everything else is retried."""

from __future__ import annotations


class StreamError(Exception):
    """The stream cannot continue; ``status`` and ``code`` are the server's answer when there was one."""

    def __init__(self, message: str, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class AuthenticationError(StreamError):
    """The server refuses the token (401) and no refresh callback gave one it accepts."""
