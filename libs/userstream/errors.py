"""Domain errors shared by every service.

Each service maps them to its transport (gRPC status, HTTP status) in exactly
one place: ``userstream.rpc.errors`` for gRPC, the edge's exception handlers for HTTP.
"""

from __future__ import annotations


class UserstreamError(Exception):
    """Base of every error userstream raises on purpose."""


class InvalidArgumentError(UserstreamError):
    """Input from outside failed validation. ``field`` names the offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message

    def within(self, prefix: str) -> InvalidArgumentError:
        """The same error with its field nested under ``prefix`` (e.g. ``activities[3]``)."""
        return InvalidArgumentError(f"{prefix}.{self.field}", self.message)


class NotFoundError(UserstreamError):
    """The thing the request refers to does not exist."""


class AlreadyExistsError(UserstreamError):
    """The thing the request would create exists already."""


class UnavailableError(UserstreamError):
    """A dependency (NATS, another service) cannot be reached; the outcome is unknown."""


class FailedPreconditionError(UserstreamError):
    """The system is not in a state that allows the request (e.g. history no longer retained)."""


class OrganizationDeletedError(FailedPreconditionError):
    """The organization was deleted (``organization.deleted`` is final, CONTRACT §2): it accepts no further event."""

    def __init__(self, organization_id: str) -> None:
        super().__init__(f"organization {organization_id!r} is deleted: it accepts no further events")
        self.organization_id = organization_id
