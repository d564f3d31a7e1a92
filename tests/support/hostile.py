"""Hostile input for the property tests: request messages of any RPC built from the proto
descriptors with hypothesis, and a fingerprint of what each service has stored, to show
that a refused call changed nothing."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import strategies as st
from sqlalchemy import MetaData, func, select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from services.notifications.adapters import tables as notification_tables
from services.site_registry.adapters import tables as registry_tables
from services.startup_tracker.adapters import tables as tracker_tables
from tests.support.system import RunningSystem

# Strings a hostile or careless client sends.
NASTY: tuple[str, ...] = (
    "", " ", "*", "-", "/", "//", "..", "../../etc/passwd", "\x00", "a\x00b", "sites/\x00",
    "' OR 1=1 --", "\" OR \"1\"=\"1", "'; DROP TABLE sites; --", "\"; DROP TABLE studies; --",
    "1; SELECT pg_sleep(5)", "%", "_", "%_%", "\\", "\\\"", "${jndi:ldap://x}", "{{7*7}}",
    "<script>alert(1)</script>", "서울특별시", "😀" * 20, "\u202e\u200b\ufeff", "NaN",
    "-1", "9" * 40, "studies/", "sites/", "studies/x/sites/", "subscriptions/",
    "((((((((((((", "))", "a AND", "OR OR", "NOT", "country_code =", ":", "= =",
)
# Built lazily, so that a strategy's repr (in hypothesis's messages) stays short.
_HUGE = st.sampled_from([("x", 5000), ("界", 20_000), ("\x00", 3000)]).map(lambda p: p[0] * p[1])

_I32, _U32 = (-2**31, 2**31 - 1), (0, 2**32 - 1)
_I64, _U64 = (-2**63, 2**63 - 1), (0, 2**64 - 1)
_INT_RANGES = {
    FieldDescriptor.TYPE_INT32: _I32, FieldDescriptor.TYPE_SINT32: _I32,
    FieldDescriptor.TYPE_SFIXED32: _I32, FieldDescriptor.TYPE_UINT32: _U32,
    FieldDescriptor.TYPE_FIXED32: _U32, FieldDescriptor.TYPE_INT64: _I64,
    FieldDescriptor.TYPE_SINT64: _I64, FieldDescriptor.TYPE_SFIXED64: _I64,
    FieldDescriptor.TYPE_UINT64: _U64, FieldDescriptor.TYPE_FIXED64: _U64,
}


def strings(names: Sequence[str]) -> st.SearchStrategy[str]:
    """Anything: random unicode, the nasty list, real resource names of the world, and
    real names with something appended."""
    real = st.sampled_from(list(names)) if names else st.just("")
    return st.one_of(st.text(max_size=60), st.sampled_from(NASTY), _HUGE, real,
                     st.builds(lambda a, b: a + b, real, st.sampled_from(NASTY)),
                     st.builds(lambda a, b: a + b, real, st.text(max_size=10)))


def _ints(lo: int, hi: int) -> st.SearchStrategy[int]:
    edges = [v for v in (lo, hi, -1, 0, 1, 2, 30, 1000, 10_000) if lo <= v <= hi]
    return st.one_of(st.integers(lo, hi), st.sampled_from(edges))


def _scalar(field: FieldDescriptor, names: Sequence[str],
            field_names: Sequence[str]) -> st.SearchStrategy[Any]:
    t = field.type
    if t == FieldDescriptor.TYPE_STRING:
        if field.containing_type.full_name == "google.protobuf.FieldMask":
            return st.one_of(st.sampled_from(list(field_names) or ["*"]), strings(names))
        return strings(names)
    if t == FieldDescriptor.TYPE_BYTES:
        lines = st.lists(strings(names), max_size=4).map(
            lambda parts: "\n".join(
                ['site_id,display_name_en,country_code', *(f"{p},{p},KR" for p in parts)]
                + [f'{{"site_id": {p!r}, "country_code": "KR"}}' for p in parts]).encode())
        return st.one_of(st.binary(max_size=300), lines)
    if t == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if t in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return st.floats(allow_nan=True, allow_infinity=True, width=32)
    if t == FieldDescriptor.TYPE_ENUM:
        values = [v.number for v in field.enum_type.values]
        return st.one_of(st.sampled_from(values), st.integers(-3, max(values) + 3))
    lo, hi = _INT_RANGES[t]
    if field.containing_type.full_name == "google.protobuf.Timestamp":
        lo, hi = (-62135596800, 253402300799) if field.name == "seconds" else (0, 999_999_999)
    return _ints(lo, hi)


def messages(descriptor: Descriptor, names: Sequence[str], depth: int = 0
             ) -> st.SearchStrategy[Message]:
    """Messages of `descriptor` with any subset of fields set to anything."""
    cls = GetMessageClass(descriptor)
    if descriptor.full_name in ("google.protobuf.Any", "google.protobuf.Empty") or depth > 3:
        return st.just(cls())
    field_names = [f.name for f in descriptor.fields]
    optional: dict[str, st.SearchStrategy[Any]] = {}
    for field in descriptor.fields:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            key_f = field.message_type.fields_by_name["key"]
            value_f = field.message_type.fields_by_name["value"]
            optional[field.name] = st.dictionaries(
                _scalar(key_f, names, []), _scalar(value_f, names, []), max_size=3)
            continue
        one: st.SearchStrategy[Any] = (messages(field.message_type, names, depth + 1)
                                       if field.message_type is not None
                                       else _scalar(field, names, field_names))
        is_repeated = getattr(field, "is_repeated", None)
        repeated = is_repeated if is_repeated is not None else (
            field.label == FieldDescriptor.LABEL_REPEATED)
        optional[field.name] = st.lists(one, max_size=4) if repeated else one

    def build(values: dict[str, Any]) -> Message:
        message = cls()
        for name, value in values.items():
            field = descriptor.fields_by_name[name]
            target = getattr(message, name) if not isinstance(value, (str, bytes, int, float,
                                                                       bool)) else None
            if isinstance(value, dict):
                for k, v in value.items():
                    if field.message_type.fields_by_name["value"].message_type is not None:
                        target[k].CopyFrom(v)  # type: ignore[index]
                    else:
                        target[k] = v  # type: ignore[index]
            elif isinstance(value, list):
                if field.message_type is not None:
                    for item in value:
                        target.add().CopyFrom(item)  # type: ignore[union-attr]
                else:
                    target.extend(value)  # type: ignore[union-attr]
            elif isinstance(value, Message):
                getattr(message, name).CopyFrom(value)
            else:
                setattr(message, name, value)
        return message

    return st.fixed_dictionaries({}, optional=optional).map(build)


# Tables written only by each service's own RPCs (what a consumer or the relay changes in
# the background -- replicas, inboxes, the notification log, relay leases and marks -- is
# left out, so a refused call can be checked against the rest).
_WATCHED: dict[str, tuple[MetaData, tuple[str, ...]]] = {
    "registry": (registry_tables.metadata, ("sites", "site_audit", "outbox", "request_log")),
    "tracker": (tracker_tables.metadata, ("studies", "study_sites", "milestones",
                                           "country_approvals", "milestone_history",
                                           "outbox", "request_log")),
    "notifications": (notification_tables.metadata, ("subscriptions", "request_log")),
}


class Fingerprint:
    """Row counts (and version sums) of what each service's RPCs write."""

    def __init__(self, system: RunningSystem) -> None:
        s = system.settings
        self._engines: dict[str, AsyncEngine] = {
            "registry": create_async_engine(s.registry_database_url or ""),
            "tracker": create_async_engine(s.tracker_database_url or ""),
            "notifications": create_async_engine(s.notifications_database_url or ""),
        }

    async def take(self, service: str) -> dict[str, int]:
        metadata, names = _WATCHED[service]
        out: dict[str, int] = {}
        async with self._engines[service].connect() as conn:
            for name in names:
                table = metadata.tables[name]
                out[name] = int((await conn.execute(
                    select(func.count()).select_from(table))).scalar_one())
                if "version" in table.c:
                    out[f"{name}.version"] = int((await conn.execute(
                        select(func.coalesce(func.sum(table.c.version), 0)))).scalar_one())
        return out

    async def close(self) -> None:
        for engine in self._engines.values():
            await engine.dispose()
