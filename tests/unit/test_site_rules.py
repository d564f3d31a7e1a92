"""The registry's pure rules: status transitions, order_by and keyset tokens, file parsing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.common import paging
from services.common.errors import FailedPrecondition, InvalidArgument
from services.site_registry.domain.model import Site, SiteDetails, SiteStatus, Transition
from services.site_registry.service_layer.importing import ImportFormat, parse_rows

NOW = datetime(2026, 11, 25, tzinfo=UTC)
ALLOWED = {
    (SiteStatus.ACTIVE, Transition.SUSPEND): SiteStatus.SUSPENDED,
    (SiteStatus.ACTIVE, Transition.CLOSE): SiteStatus.CLOSED,
    (SiteStatus.SUSPENDED, Transition.REACTIVATE): SiteStatus.ACTIVE,
    (SiteStatus.SUSPENDED, Transition.CLOSE): SiteStatus.CLOSED,
}


def site(status: SiteStatus) -> Site:
    details = SiteDetails(display_name_en="A", country_code="KR", region_code="KR-11")
    return Site(site_id="a", details=details, status=status, create_time=NOW, update_time=NOW)


@pytest.mark.parametrize("status", list(SiteStatus))
@pytest.mark.parametrize("transition", list(Transition))
def test_only_the_allowed_transitions_happen_and_closed_is_final(
        status: SiteStatus, transition: Transition) -> None:
    before = site(status)
    target = ALLOWED.get((status, transition))
    if target is None:
        with pytest.raises(FailedPrecondition):
            before.transitioned(transition, "why", NOW)
        return
    after = before.transitioned(transition, "why", NOW)
    assert (after.status, after.status_reason, after.version) == (target, "why", 2)


def test_every_korean_first_level_division_is_a_valid_region() -> None:
    from services.common.geography import KR_REGIONS

    assert len({name for name, _ in KR_REGIONS.values()}) == 17
    for code in KR_REGIONS:
        SiteDetails(display_name_en="A", country_code="KR", region_code=code)


def test_order_by_and_keyset_tokens() -> None:
    fields = ("display_name_en", "create_time")
    assert paging.parse_order_by("", fields) is None
    assert paging.parse_order_by("display_name_en", fields) == ("display_name_en", False)
    assert paging.parse_order_by("create_time DESC", fields) == ("create_time", True)
    for bad in ("etag", "create_time up", "a b c"):
        with pytest.raises(InvalidArgument):
            paging.parse_order_by(bad, fields)
    token = paging.encode_keyset(["서울대학교병원", "snuh"], "q")
    assert paging.decode_keyset(token, "q") == ["서울대학교병원", "snuh"]
    for wrong in (lambda: paging.decode_keyset(token, "other"),
                  lambda: paging.decode_keyset(token, "q", length=1),
                  lambda: paging.decode_keyset("%%%", "q")):
        with pytest.raises(InvalidArgument):
            wrong()


def test_files_are_read_into_numbered_rows() -> None:
    rows, errors = parse_rows(
        b'{"siteId": "a", "displayNameEn": "A", "etag": "\\"3\\"",'
        b' "mfdsDesignationDate": {"year": 2001, "month": 2, "day": 3}}\n\n[1]\n',
        ImportFormat.JSONL)
    assert [(r.line, r.site_id) for r in rows] == [(1, "a")]
    assert rows[0].values == {"display_name_en": "A", "mfds_designation_date": "2001-02-03"}
    assert [(e.line, e.description) for e in errors] == [(3, "not a JSON object")]

    rows, errors = parse_rows(
        b'site_id,display_name_en,capabilities\nb,"B, annex",phase-1-unit; paediatrics\n',
        ImportFormat.CSV)
    assert rows[0].line == 2 and rows[0].values["capabilities"] == ["phase-1-unit",
                                                                     "paediatrics"]
    with pytest.raises(InvalidArgument):
        parse_rows(b"x" * (4 * 1024 * 1024 + 1), ImportFormat.JSONL)
