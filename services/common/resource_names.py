"""AIP-122 resource names and ids, parsed in one place."""

from __future__ import annotations

import re
import uuid

from services.common.errors import FieldViolation, InvalidArgument

ID_PATTERN = re.compile(r"^[a-z][a-z0-9-]{0,61}[a-z0-9]$|^[a-z]$")
ID_RULE = "must be 1-63 characters of a-z, 0-9 and '-', start with a letter, not end with '-'"


def check_id(value: str, field: str) -> str:
    if not ID_PATTERN.match(value):
        raise InvalidArgument([FieldViolation(field, f"{value!r} {ID_RULE}")])
    return value


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def parse(name: str, pattern: str, field: str = "name") -> list[str]:
    """Ids of `name` against `pattern` like 'studies/{study}/sites/{site}'."""
    parts = name.split("/")
    pattern_parts = pattern.split("/")
    if len(parts) == len(pattern_parts):
        ids = []
        for part, want in zip(parts, pattern_parts, strict=True):
            if want.startswith("{"):
                if not ID_PATTERN.match(part):
                    break
                ids.append(part)
            elif part != want:
                break
        else:
            return ids
    shown = name if len(name) <= 80 else name[:77] + "..."
    raise InvalidArgument([FieldViolation(field, f"{shown!r} is not a resource name of the form "
                                                 f"{pattern!r}")])
