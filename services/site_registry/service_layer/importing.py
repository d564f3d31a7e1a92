"""Reading a bulk-import file (CSV or JSON lines) into rows of site values.

Pure Python on purpose: the same rows are validated by the domain exactly as a
CreateSite is, and every problem is reported with its line number and field.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from services.common.errors import FieldViolation, InvalidArgument

MAX_IMPORT_BYTES = 4 * 1024 * 1024  # the gRPC message limit; a bigger file never arrives
MAX_IMPORT_ROWS = 10_000

LIST_FIELDS = ("therapeutic_areas", "capabilities")
# Output-only fields of Site: ignored on input (AIP-203), so an export imports as it is.
OUTPUT_ONLY = ("name", "status", "status_reason", "status_change_time", "create_time",
               "update_time", "etag")
_CAMEL = re.compile(r"([A-Z])")


class ImportFormat(StrEnum):
    CSV = "CSV"
    JSONL = "JSONL"


@dataclass
class ImportRow:
    line: int
    site_id: str
    values: dict[str, Any]


@dataclass(frozen=True)
class RowError:
    line: int
    field: str
    description: str


@dataclass
class ImportResult:
    created: list[str] = field(default_factory=list)
    unchanged: int = 0
    errors: list[RowError] = field(default_factory=list)


def _snake(name: str) -> str:
    """proto3 JSON allows lowerCamelCase names; the domain uses the proto field names."""
    return _CAMEL.sub(lambda m: "_" + m.group(1).lower(), name)


def _date(value: Any) -> Any:
    # proto3 JSON of google.type.Date is {"year":..,"month":..,"day":..}; ISO text is accepted too.
    if isinstance(value, dict):
        parts = [value.get(k, 0) for k in ("year", "month", "day")]
        if not all(isinstance(p, int) for p in parts):
            return value  # the domain reports it
        return None if parts == [0, 0, 0] else f"{parts[0]:04d}-{parts[1]:02d}-{parts[2]:02d}"
    return value or None


def _from_json(obj: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    values = {_snake(k): v for k, v in obj.items()}
    site_id = values.pop("site_id", "")
    for key in OUTPUT_ONLY:
        values.pop(key, None)
    if "mfds_designation_date" in values:
        values["mfds_designation_date"] = _date(values["mfds_designation_date"])
    return str(site_id) if site_id is not None else "", values


def _from_csv(record: dict[str, str | None]) -> tuple[str, dict[str, Any]]:
    values: dict[str, Any] = {}
    for key, raw in record.items():
        text = (raw or "").strip()
        if key in LIST_FIELDS:
            values[key] = [p.strip() for p in text.split(";") if p.strip()]
        elif key == "principal_investigators":
            # `Name: specialty; Name: specialty`
            pis = []
            for part in (p.strip() for p in text.split(";") if p.strip()):
                name, _, specialty = part.partition(":")
                pis.append({"display_name": name.strip(), "specialty": specialty.strip()})
            values[key] = pis
        elif key == "mfds_designation_date":
            values[key] = text or None
        else:
            values[key] = text
    site_id = values.pop("site_id", "")
    for key in OUTPUT_ONLY:
        values.pop(key, None)
    return str(site_id), values


def parse_rows(content: bytes, fmt: ImportFormat) -> tuple[list[ImportRow], list[RowError]]:
    """Rows of the file and the lines that could not even be read."""
    if not content.strip():
        raise InvalidArgument([FieldViolation("content", "is empty")])
    if len(content) > MAX_IMPORT_BYTES:
        raise InvalidArgument([FieldViolation(
            "content", f"is larger than {MAX_IMPORT_BYTES // (1024 * 1024)} MiB")])
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidArgument([FieldViolation("content", f"is not UTF-8: {exc}")]) from exc
    rows: list[ImportRow] = []
    errors: list[RowError] = []
    if fmt is ImportFormat.JSONL:
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as exc:
                errors.append(RowError(number, "", f"not JSON: {exc}"))
                continue
            if not isinstance(obj, dict):
                errors.append(RowError(number, "", "not a JSON object"))
                continue
            site_id, values = _from_json(obj)
            rows.append(ImportRow(number, site_id, values))
    else:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        if not reader.fieldnames or "display_name_en" not in reader.fieldnames:
            raise InvalidArgument([FieldViolation(
                "content", "the first CSV line must be a header naming Site fields, "
                           "including display_name_en")])
        for record in reader:
            number = reader.line_num
            extra = record.pop(None, None)
            if extra:
                errors.append(RowError(number, "", "more cells than header columns"))
                continue
            site_id, values = _from_csv(record)
            rows.append(ImportRow(number, site_id, values))
    if len(rows) > MAX_IMPORT_ROWS:
        raise InvalidArgument([FieldViolation("content",
                                              f"has more than {MAX_IMPORT_ROWS} rows")])
    return rows, errors
