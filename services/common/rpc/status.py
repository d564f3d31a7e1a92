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
            error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
            for v in error.violations
        ])))
    elif isinstance(error, FailedPrecondition):
        details.append(_pack(error_details_pb2.PreconditionFailure(violations=[
            error_details_pb2.PreconditionFailure.Violation(
                type=v.type, subject=v.subject, description=v.description)
            for v in error.violations
        ])))
    elif isinstance(error, (NotFound, AlreadyExists)):
        details.append(_pack(error_details_pb2.ResourceInfo(
            resource_name=error.resource, description=error.message)))
    elif isinstance(error, EtagMismatch):
        details.append(_pack(error_details_pb2.PreconditionFailure(violations=[
            error_details_pb2.PreconditionFailure.Violation(
                type="ETAG", subject=error.resource, description=error.message)
        ])))
    status = status_pb2.Status(code=code, message=error.message, details=details)
    return rpc_status.to_status(status)


def plain_status(code: int, message: str, reason: str) -> grpc.Status:
    status = status_pb2.Status(
        code=code,
        message=message,
        details=[_pack(error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN))],
    )
    return rpc_status.to_status(status)
