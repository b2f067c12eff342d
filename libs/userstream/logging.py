"""One logging setup for every process: structlog key-value events.

JSON lines in production, aligned console output in dev. Ids (request,
connection, user) are bound per task through contextvars. Values of keys that
can carry credentials, and credential-shaped text anywhere (JWTs, bearer values,
``token=`` query parameters), are replaced before anything is written.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any, TextIO

import structlog

from userstream.settings import LoggingSettings

# A key naming any of these (in any case, as part of a longer name too) has its value replaced.
_SECRET_KEY_PARTS = ("token", "secret", "password", "passwd", "authorization", "cookie", "jwt", "credential")
# Credentials inside free text: a JWT (three base64url parts, the first `{"` encoded), a bearer
# value, or a token in a query string (EventSource clients pass `access_token=` in the URL).
_SECRET_IN_TEXT = re.compile(
    r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"
    r"|(?<=[Bb]earer )[^\s\"',;]+"
    r"|(?<=token=)[^\s&\"',;]+"
)
REDACTED = "[redacted]"


def is_secret_key(key: str) -> bool:
    lowered = key.lower()
    return any(part in lowered for part in _SECRET_KEY_PARTS)


def redact_text(text: str) -> str:
    """``text`` with every credential-shaped part replaced."""
    return _SECRET_IN_TEXT.sub(REDACTED, text)


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {key: REDACTED if is_secret_key(str(key)) else _redact_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(item) for item in value]
    return value


def redact_secrets(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Never log a token or secret, whatever key it was passed under or text it hides in."""
    for key, value in event.items():
        if is_secret_key(key):
            event[key] = REDACTED
        elif isinstance(value, str | Mapping | list | tuple):
            event[key] = _redact_value(value)
    return event


class _QuietOnClosedPipe:
    """stderr for log lines: a reader that went away (`| tee`, then Ctrl-C) must not turn a log call
    into an exception in the middle of, say, an orderly shutdown."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except (BrokenPipeError, ValueError):  # ValueError: the stream was closed
            return 0

    def flush(self) -> None:
        with contextlib.suppress(BrokenPipeError, ValueError):
            self._stream.flush()

    def isatty(self) -> bool:
        return self._stream.isatty()


def configure_logging(settings: LoggingSettings, service: str) -> None:
    """Route structlog and the standard library (uvicorn, grpc, nats) through one renderer."""
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    # Redaction runs last before rendering, so that it also sees exception text and stdlib extras.
    final: list[structlog.types.Processor] = [structlog.processors.format_exc_info, redact_secrets]
    renderer: structlog.types.Processor
    if settings.format == "console":
        renderer = structlog.dev.ConsoleRenderer(
            colors=sys.stderr.isatty(), exception_formatter=structlog.dev.plain_traceback
        )
    else:
        renderer = structlog.processors.JSONRenderer()
    level = logging.getLevelName(settings.level.upper())
    structlog.configure(
        processors=[*shared, *final, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=_QuietOnClosedPipe(sys.stderr)),  # type: ignore[arg-type]  # a TextIO stand-in
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)
    handler = logging.StreamHandler(_QuietOnClosedPipe(sys.stderr))
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *final, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # uvicorn's access log would print query strings, which may hold access_token.
    logging.getLogger("uvicorn.access").disabled = True
