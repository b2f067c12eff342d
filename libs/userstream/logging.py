"""One logging setup for every process: structlog key-value events.

JSON lines in production, aligned console output in dev. Ids (request,
connection, user) are bound per task through contextvars. Values of keys that
can carry credentials are replaced before anything is written.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from userstream.settings import LoggingSettings

_SECRET_KEYS = frozenset(
    {"token", "access_token", "authorization", "cookie", "jwt", "secret", "jwt_secret", "password", "userstream_token"}
)
REDACTED = "[redacted]"


def redact_secrets(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Never log a token or secret, whatever key it was passed under."""
    for key in event.keys() & _SECRET_KEYS:
        event[key] = REDACTED
    return event


def configure_logging(settings: LoggingSettings, service: str) -> None:
    """Route structlog and the standard library (uvicorn, grpc, nats) through one renderer."""
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_secrets,
    ]
    renderer: structlog.types.Processor
    if settings.format == "console":
        renderer = structlog.dev.ConsoleRenderer(
            colors=sys.stderr.isatty(), exception_formatter=structlog.dev.plain_traceback
        )
    else:
        renderer = structlog.processors.JSONRenderer()
    level = logging.getLevelName(settings.level.upper())
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # uvicorn's access log would print query strings, which may hold access_token.
    logging.getLogger("uvicorn.access").disabled = True
