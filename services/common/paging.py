"""AIP-158 pagination: page sizes and opaque, tamper-evident page tokens.

Pages are keyed by the last resource name returned (keyset pagination), so a
page stays correct while resources are being added.
"""

from __future__ import annotations

import base64
import hashlib
import json

from services.common.errors import FieldViolation, InvalidArgument

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000


def page_size(requested: int) -> int:
    if requested < 0:
        raise InvalidArgument([FieldViolation("page_size", "must not be negative")])
    if requested == 0:
        return DEFAULT_PAGE_SIZE
    return min(requested, MAX_PAGE_SIZE)


def _fingerprint(query: str) -> str:
    return hashlib.sha256(query.encode()).hexdigest()[:16]


def _encode(payload: dict[str, object], query: str) -> str:
    raw = json.dumps({**payload, "q": _fingerprint(query)}, separators=(",", ":"),
                     ensure_ascii=False)
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode(token: str, query: str, field: str) -> object:
    """The `field` a token carries, once it is known to be ours and of this query."""
    bad = InvalidArgument([FieldViolation("page_token", "is not a token this list returned")])
    try:
        padded = token + "=" * (-len(token) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad from exc
    if not isinstance(data, dict) or field not in data:
        raise bad
    if data.get("q") != _fingerprint(query):
        raise InvalidArgument([FieldViolation(
            "page_token", "belongs to a different query (parent, filter or order)")])
    return data[field]


def encode_token(after: str, query: str = "") -> str:
    """A token that resumes after `after`; bound to the query (filter, parent) it came from."""
    return _encode({"a": after}, query)


def decode_token(token: str, query: str = "") -> str | None:
    """The key to resume after, or None for the first page."""
    if not token:
        return None
    after = _decode(token, query, "a")
    if not isinstance(after, str):
        raise InvalidArgument([FieldViolation("page_token", "is not a token this list returned")])
    return after


def encode_keyset(key: list[str], query: str = "") -> str:
    """A token that resumes after the row whose sort key (e.g. [name, id]) is `key`.

    For lists with `order_by`: the key holds the sort value and the id, so a page
    stays correct while rows are added before or after it.
    """
    return _encode({"k": key}, query)


def decode_keyset(token: str, query: str = "", length: int = 2) -> list[str] | None:
    """The sort key to resume after, or None for the first page."""
    if not token:
        return None
    key = _decode(token, query, "k")
    if (not isinstance(key, list) or len(key) != length
            or not all(isinstance(k, str) for k in key)):
        raise InvalidArgument([FieldViolation("page_token", "is not a token this list returned")])
    return [str(k) for k in key]


def parse_order_by(text: str, allowed: tuple[str, ...]) -> tuple[str, bool] | None:
    """AIP-132 `order_by` of one field: (field, descending), or None when empty."""
    words = text.split()
    if not words:
        return None
    bad = InvalidArgument([FieldViolation(
        "order_by",
        f"{text!r} is not one of {', '.join(allowed)}, optionally followed by ' desc'")])
    if len(words) > 2 or words[0] not in allowed:
        raise bad
    if len(words) == 2 and words[1].lower() not in ("asc", "desc"):
        raise bad
    return words[0], len(words) == 2 and words[1].lower() == "desc"
