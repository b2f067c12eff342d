"""The one mapping from domain errors to gRPC status codes, for every gRPC service."""

from __future__ import annotations

import grpc

from userstream.errors import (
    AlreadyExistsError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    UnavailableError,
    UserstreamError,
)

# Trailing metadata key naming the invalid field, for clients that want it without parsing the message.
FIELD_METADATA_KEY = "userstream-field"

_CODES: list[tuple[type[UserstreamError], grpc.StatusCode]] = [
    (InvalidArgumentError, grpc.StatusCode.INVALID_ARGUMENT),
    (NotFoundError, grpc.StatusCode.NOT_FOUND),
    (AlreadyExistsError, grpc.StatusCode.ALREADY_EXISTS),
    (UnavailableError, grpc.StatusCode.UNAVAILABLE),
    (FailedPreconditionError, grpc.StatusCode.FAILED_PRECONDITION),
]


def status_of(error: UserstreamError) -> grpc.StatusCode:
    for kind, code in _CODES:
        if isinstance(error, kind):
            return code
    return grpc.StatusCode.INTERNAL


def error_of(code: grpc.StatusCode, details: str, field: str | None = None) -> UserstreamError:
    """The domain error a client raises for a status it received (the inverse of ``status_of``)."""
    if code is grpc.StatusCode.INVALID_ARGUMENT:
        name, _, message = details.partition(": ")
        return InvalidArgumentError(field or name, message or details)
    for kind, mapped in _CODES:
        if mapped is code:
            return kind(details)
    if code in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED):
        return UnavailableError(details)
    return UserstreamError(f"{code.name}: {details}")
