"""Domain errors as gRPC status with google.rpc details (AIP-193)."""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from services.common.errors import (
    AlreadyExists,
    DomainError,
    EtagMismatch,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
)

ERROR_DOMAIN = "sitenet"

# A status travels in response headers (grpc-message percent-encoded, the details
# base64-encoded), and clients refuse headers over 8 KiB with RESOURCE_EXHAUSTED instead of
# showing the error. Error texts can quote what the client sent (a 5,000-character name, a
# file's many bad rows), so they are clipped to fit: at worst 3x for the message, 4/3 for
# the details.
MAX_MESSAGE_BYTES = 600
MAX_TEXT_BYTES = 300
MAX_DETAILS_BYTES = 3500


def _clip(text: str, limit: int = MAX_TEXT_BYTES) -> str:
    raw = text.encode("utf-8")
    if len(raw) <= limit:
        return text
    return raw[:limit - 3].decode("utf-8", errors="ignore") + "..."


def _within_budget(items: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """(field, description) pairs, clipped, as many as fit; then a note of how many more."""
    out: list[tuple[str, str]] = []
    used = 0
    for number, (field, description) in enumerate(items):
        item = (_clip(field, 200), _clip(description))
        size = sum(len(t.encode("utf-8")) for t in item) + 8
        if used + size > MAX_DETAILS_BYTES:
            out.append(("request", f"... and {len(items) - number} more problem(s)"))
            break
        out.append(item)
        used += size
    return out

_CODES: list[tuple[type[DomainError], int]] = [
    (InvalidArgument, code_pb2.INVALID_ARGUMENT),
    (NotFound, code_pb2.NOT_FOUND),
    (AlreadyExists, code_pb2.ALREADY_EXISTS),
    (FailedPrecondition, code_pb2.FAILED_PRECONDITION),
    (EtagMismatch, code_pb2.ABORTED),
    (PermissionDenied, code_pb2.PERMISSION_DENIED),
    (Unauthenticated, code_pb2.UNAUTHENTICATED),
    (Unavailable, code_pb2.UNAVAILABLE),
]


def _pack(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)  # type: ignore[arg-type]
    return packed


def to_status(error: DomainError) -> grpc.Status:
    code = next((c for cls, c in _CODES if isinstance(error, cls)), code_pb2.UNKNOWN)
    details = [_pack(error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN))]
    if isinstance(error, InvalidArgument):
        details.append(_pack(error_details_pb2.BadRequest(field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=f, description=d)
            for f, d in _within_budget([(v.field, v.description) for v in error.violations])
        ])))
    elif isinstance(error, FailedPrecondition):
        kept = _within_budget([(v.subject, v.description) for v in error.violations])
        details.append(_pack(error_details_pb2.PreconditionFailure(violations=[
            error_details_pb2.PreconditionFailure.Violation(
                type=v.type, subject=subject, description=description)
            for v, (subject, description) in zip(error.violations, kept, strict=False)
        ])))
    elif isinstance(error, (NotFound, AlreadyExists)):
        details.append(_pack(error_details_pb2.ResourceInfo(
            resource_name=_clip(error.resource), description=_clip(error.message))))
    elif isinstance(error, EtagMismatch):
        details.append(_pack(error_details_pb2.PreconditionFailure(violations=[
            error_details_pb2.PreconditionFailure.Violation(
                type="ETAG", subject=_clip(error.resource), description=_clip(error.message))
        ])))
    status = status_pb2.Status(code=code, message=_clip(error.message, MAX_MESSAGE_BYTES),
                               details=details)
    return rpc_status.to_status(status)


def plain_status(code: int, message: str, reason: str) -> grpc.Status:
    status = status_pb2.Status(
        code=code,
        message=message,
        details=[_pack(error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN))],
    )
    return rpc_status.to_status(status)
