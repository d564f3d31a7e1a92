"""Errors the domain raises, in the domain's words; the API layer maps them to gRPC status.

They follow AIP-193: each carries what a client needs to act (which field is
wrong and why, what precondition failed), never internal detail.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


@dataclass(frozen=True)
class PreconditionViolation:
    type: str  # e.g. "MILESTONE", "ETAG", "SITE_STATUS"
    subject: str  # e.g. "studies/s1/sites/snuh/milestones/irb-submitted"
    description: str


class DomainError(Exception):
    reason: str = "ERROR"  # ErrorInfo.reason: UPPER_SNAKE_CASE, stable for clients

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if reason:
            self.reason = reason


class InvalidArgument(DomainError):
    reason = "INVALID_ARGUMENT"

    def __init__(self, violations: list[FieldViolation], message: str | None = None) -> None:
        self.violations = violations
        text = message or "; ".join(f"{v.field}: {v.description}" for v in violations)
        super().__init__(text)


class NotFound(DomainError):
    reason = "NOT_FOUND"

    def __init__(self, resource: str) -> None:
        self.resource = resource
        super().__init__(f"{resource} not found")


class AlreadyExists(DomainError):
    reason = "ALREADY_EXISTS"

    def __init__(self, resource: str, message: str | None = None) -> None:
        self.resource = resource
        super().__init__(message or f"{resource} already exists")


class FailedPrecondition(DomainError):
    reason = "FAILED_PRECONDITION"

    def __init__(self, violations: list[PreconditionViolation], message: str | None = None) -> None:
        self.violations = violations
        super().__init__(message or "; ".join(v.description for v in violations))


class EtagMismatch(DomainError):
    """The caller's etag is stale: someone else changed the resource (AIP-154: ABORTED)."""

    reason = "ETAG_MISMATCH"

    def __init__(self, resource: str) -> None:
        self.resource = resource
        super().__init__(f"etag of {resource} does not match; read it again and retry")


class PermissionDenied(DomainError):
    reason = "PERMISSION_DENIED"


class Unauthenticated(DomainError):
    reason = "UNAUTHENTICATED"


class Unavailable(DomainError):
    reason = "UNAVAILABLE"
