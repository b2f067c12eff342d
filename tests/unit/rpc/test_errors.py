"""The one mapping between domain errors and gRPC status codes, both ways."""

from __future__ import annotations

import grpc
import pytest

from userstream.errors import (
    AlreadyExistsError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    UnavailableError,
    UserstreamError,
)
from userstream.rpc.errors import error_of, status_of


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (InvalidArgumentError("type", "bad"), grpc.StatusCode.INVALID_ARGUMENT),
        (NotFoundError("x"), grpc.StatusCode.NOT_FOUND),
        (AlreadyExistsError("x"), grpc.StatusCode.ALREADY_EXISTS),
        (UnavailableError("x"), grpc.StatusCode.UNAVAILABLE),
        (FailedPreconditionError("x"), grpc.StatusCode.FAILED_PRECONDITION),
        (UserstreamError("x"), grpc.StatusCode.INTERNAL),
    ],
)
def test_status_of(error: UserstreamError, code: grpc.StatusCode) -> None:
    assert status_of(error) is code


@pytest.mark.parametrize("kind", [NotFoundError, AlreadyExistsError, UnavailableError, FailedPreconditionError])
def test_error_of_inverts_status_of(kind: type[UserstreamError]) -> None:
    error = error_of(status_of(kind("details")), "details")
    assert type(error) is kind
    assert str(error) == "details"


def test_invalid_argument_keeps_the_field() -> None:
    original = InvalidArgumentError("activities[2].type", "must be `<name>.<created|updated|deleted>`")
    error = error_of(grpc.StatusCode.INVALID_ARGUMENT, str(original))
    assert isinstance(error, InvalidArgumentError)
    assert (error.field, error.message) == (original.field, original.message)


def test_invalid_argument_field_from_metadata_wins() -> None:
    error = error_of(grpc.StatusCode.INVALID_ARGUMENT, "something: odd", field="activity.role")
    assert isinstance(error, InvalidArgumentError)
    assert error.field == "activity.role"


@pytest.mark.parametrize("code", [grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED])
def test_deadline_and_cancel_are_unavailable_outcome_unknown(code: grpc.StatusCode) -> None:
    assert isinstance(error_of(code, "deadline"), UnavailableError)


def test_other_codes_are_plain_errors_with_the_code_named() -> None:
    error = error_of(grpc.StatusCode.RESOURCE_EXHAUSTED, "too big")
    assert type(error) is UserstreamError
    assert str(error) == "RESOURCE_EXHAUSTED: too big"


def test_within_nests_the_field() -> None:
    error = InvalidArgumentError("tx.source_id", "too long").within("activities[3]")
    assert error.field == "activities[3].tx.source_id"
    assert str(error) == "activities[3].tx.source_id: too long"
