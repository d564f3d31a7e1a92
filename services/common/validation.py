"""Pydantic at the edge: one place turns validation errors into field violations."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from services.common.errors import FieldViolation, InvalidArgument

M = TypeVar("M", bound=BaseModel)

MAX_REASON = 500


def check_reason(reason: str, required: bool = False, field: str = "reason") -> str:
    """The reason a caller gives for a change, as the audit trail keeps it: trimmed, at
    most MAX_REASON characters, present when the change needs one."""
    text = reason.strip()
    if required and not text:
        raise InvalidArgument([FieldViolation(field, "is required")])
    if len(text) > MAX_REASON:
        raise InvalidArgument([FieldViolation(field, f"longer than {MAX_REASON} characters")])
    return text


def violations_from(error: ValidationError, prefix: str = "") -> list[FieldViolation]:
    out = []
    for item in error.errors():
        path = ".".join(str(p) for p in item["loc"] if not isinstance(p, int))
        field = f"{prefix}.{path}" if prefix and path else (prefix or path)
        message = item["msg"]
        if message.startswith("Value error, "):
            message = message[len("Value error, "):]
        out.append(FieldViolation(field or "request", message))
    return out


def build(model: type[M], data: dict[str, Any], prefix: str = "") -> M:
    """Validate `data` as `model`; bad input raises InvalidArgument naming every bad field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidArgument(violations_from(exc, prefix)) from exc
