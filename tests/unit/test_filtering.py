"""The AIP-160 filter subset: what parses, what is refused, and that values stay values."""

from __future__ import annotations

import pytest
from sqlalchemy import Column, MetaData, String, Table
from sqlalchemy.dialects import postgresql, sqlite

from services.common.errors import InvalidArgument
from services.common.filtering import MAX_DEPTH, And, Compare, Not, Or, Text, parse
from services.common.sql_filter import FilterField, to_sql

FIELDS = dict.fromkeys(["country_code", "status", "therapeutic_areas"])


def test_comparisons_and_precedence() -> None:
    assert parse('country_code = "KR"', FIELDS) == Compare("country_code", "=", "KR")
    assert parse("status = ACTIVE OR status = SUSPENDED", FIELDS) == Or((
        Compare("status", "=", "ACTIVE"), Compare("status", "=", "SUSPENDED")))
    assert parse('country_code="KR" AND NOT status=CLOSED', FIELDS) == And((
        Compare("country_code", "=", "KR"), Not(Compare("status", "=", "CLOSED"))))
    assert parse("therapeutic_areas:oncology 서울", FIELDS) == And((
        Compare("therapeutic_areas", ":", "oncology"), Text("서울")))
    assert parse("  ", FIELDS) is None


@pytest.mark.parametrize("text", [
    "unknown = 1", "country_code =", "(status = ACTIVE", "status = ACTIVE)", "AND",
    '"KR" = country_code', "country_code = = KR", "x" * 1001,
    "(" * (MAX_DEPTH + 2) + "status = ACTIVE" + ")" * (MAX_DEPTH + 2),
    " OR ".join(["status = ACTIVE"] * 40),
])
def test_bad_filters_are_invalid_arguments_naming_the_filter(text: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse(text, FIELDS)
    assert caught.value.violations[0].field == "filter"


def test_values_are_bound_parameters_not_sql() -> None:
    table = Table("sites", MetaData(), Column("country_code", String), Column("status", String),
                  Column("therapeutic_areas", String), Column("search_text", String))
    fields = {"country_code": FilterField(table.c.country_code),
              "status": FilterField(table.c.status),
              "therapeutic_areas": FilterField(table.c.therapeutic_areas, kind="list")}
    hostile = "KR'; DROP TABLE sites; --"
    node = parse(f'country_code = "{hostile}" OR "%_\\\\"', FIELDS)
    for dialect in (sqlite.dialect(), postgresql.dialect()):
        compiled = to_sql(node, fields, [table.c.search_text]).compile(dialect=dialect)
        assert "DROP TABLE" not in str(compiled)
        assert hostile in compiled.params.values()
