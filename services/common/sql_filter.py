"""Filter trees (services.common.filtering) as SQLAlchemy expressions, with bound
parameters only."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import ColumnElement, and_, false, not_, or_, true

from services.common.errors import FieldViolation, InvalidArgument
from services.common.filtering import And, Node, Not, Or, Text


@dataclass(frozen=True)
class FilterField:
    column: Any
    kind: str = "text"  # "text": = and !=; "list": `:` on a JSON list column
    normalise: Callable[[str], str] = str  # e.g. str.upper for codes


def _like_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def to_sql(node: Node | None, fields: Mapping[str, FilterField],
           text_columns: Sequence[Any] = ()) -> ColumnElement[bool]:
    if node is None:
        return true()
    if isinstance(node, And):
        return and_(*(to_sql(t, fields, text_columns) for t in node.terms))
    if isinstance(node, Or):
        return or_(*(to_sql(t, fields, text_columns) for t in node.terms))
    if isinstance(node, Not):
        return not_(to_sql(node.term, fields, text_columns))
    if isinstance(node, Text):
        if not text_columns:
            raise InvalidArgument([FieldViolation("filter", "free text is not supported here")])
        pattern = f"%{_like_escape(node.value.casefold())}%"
        return or_(*(c.ilike(pattern, escape="\\") for c in text_columns))
    field = fields[node.field]
    value = field.normalise(node.value)
    if field.kind == "list":
        if node.op not in (":", "="):
            raise InvalidArgument([FieldViolation(
                "filter", f"{node.field} is a list: use '{node.field}:value'")])
        # Lists are stored as JSON arrays of strings.
        return cast(ColumnElement[bool],
                    field.column.like(f'%"{_like_escape(value)}"%', escape="\\"))
    if node.op == "=" or node.op == ":":
        return cast(ColumnElement[bool], field.column == value)
    if node.op == "!=":
        return cast(ColumnElement[bool], field.column != value)
    return false()
