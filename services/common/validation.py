"""Pydantic at the edge: one place turns validation errors into field violations."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from services.common.errors import FieldViolation, InvalidArgument

M = TypeVar("M", bound=BaseModel)


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
