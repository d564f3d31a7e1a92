"""Conversions between protobuf well-known types and Python values."""

from __future__ import annotations

import datetime as dt

from google.protobuf import timestamp_pb2
from google.type import date_pb2

from services.common.errors import FieldViolation, InvalidArgument


def timestamp(moment: dt.datetime) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(moment.astimezone(dt.UTC))
    return ts


def date_message(day: dt.date | None) -> date_pb2.Date | None:
    if day is None:
        return None
    return date_pb2.Date(year=day.year, month=day.month, day=day.day)


def date_value(message: date_pb2.Date, field: str) -> dt.date | None:
    """A calendar date, or None when the message is unset (all zero)."""
    if message.year == 0 and message.month == 0 and message.day == 0:
        return None
    try:
        return dt.date(message.year, message.month, message.day)
    except ValueError as exc:
        raise InvalidArgument([FieldViolation(field, f"not a calendar date: {exc}")]) from exc
