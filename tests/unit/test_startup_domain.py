"""The tracker's domain rules, directly (fast); the API tests repeat the key ones over gRPC."""

from __future__ import annotations

import datetime as dt

import pytest

from services.common.errors import FailedPrecondition, InvalidArgument
from services.startup_tracker.domain.model import (
    CountryApproval,
    MilestoneChange,
    MilestoneStatus,
    SiteReplica,
    StudySite,
    apply_greenlight,
    record_milestone,
    slip_days,
)
from services.startup_tracker.domain.summary import percentile
from services.startup_tracker.domain.templates import (
    DEFAULT_TEMPLATE,
    MilestoneDefinition,
    TemplateChoice,
    build_template,
)

NOW = dt.datetime(2026, 6, 30, 3, tzinfo=dt.UTC)
TODAY = dt.date(2026, 6, 30)
SITE = SiteReplica("snuh", "SNUH", "서울대병원", "KR", "KR-11", "ACTIVE", "Asia/Seoul", 1)
APPROVED = CountryApproval("KR", "MFDS", MilestoneStatus.DONE,
                           decision_date=dt.date(2026, 3, 1))
S = MilestoneStatus


def step(site: StudySite, key: str, on: str | None, status: S = S.DONE, reason: str = "",
         planned: str | None = None, approval: CountryApproval | None = APPROVED,
         template: object = DEFAULT_TEMPLATE) -> StudySite:
    change = MilestoneChange(status, dt.date.fromisoformat(planned) if planned else None,
                             dt.date.fromisoformat(on) if on else None, "", reason)
    updated, _, _ = record_milestone(site, template, key, change, TODAY, NOW,  # type: ignore[arg-type]
                                     approval)
    return updated


def fresh() -> StudySite:
    return StudySite(study_id="s1", site=SITE)


def test_percentile_is_type_7_linear_interpolation() -> None:
    assert percentile([31, 36, 38], 0.5) == 36
    assert percentile([31, 36, 38], 0.75) == 37.0
    assert percentile([31, 36, 38], 0.9) == pytest.approx(37.6)
    assert percentile([73, 94], 0.5) == 83.5
    assert percentile([5], 0.9) == 5
    assert percentile([1, 2, 3, 4], 0.75) == 3.25  # numpy.percentile([1,2,3,4], 75)


def test_missing_prerequisites_are_named() -> None:
    with pytest.raises(FailedPrecondition) as caught:
        step(fresh(), "site-activated", "2026-03-01")
    subjects = {v.subject.rsplit("/", 1)[-1] for v in caught.value.violations}
    assert subjects == {"irb-approved", "contract-executed", "essential-documents-complete",
                        "site-initiation-visit"}


def test_irb_path_runs_parallel_to_contract() -> None:
    site = step(fresh(), "site-selected", "2026-01-01")
    site = step(site, "cda-executed", "2026-01-05")
    # IRB submission needs only the CDA, not the budget or the contract.
    site = step(site, "irb-submitted", "2026-01-06")
    site = step(site, "irb-approved", "2026-01-30", S.APPROVED_WITH_CONDITIONS)
    assert site.done("irb-approved")
    assert site.current == "irb-approved"


def test_rejection_then_resubmission_needs_no_reason_but_a_plain_correction_does() -> None:
    site = step(fresh(), "site-selected", "2026-01-01")
    site = step(site, "cda-executed", "2026-01-05")
    site = step(site, "irb-submitted", "2026-01-06")
    site = step(site, "irb-approved", "2026-02-01", S.REJECTED)
    assert not site.done("irb-approved")
    with pytest.raises(InvalidArgument):  # resubmitting before the rejection is a correction
        step(site, "irb-submitted", "2026-01-20")
    site = step(site, "irb-submitted", "2026-02-10")
    site = step(site, "irb-approved", "2026-03-01")
    assert site.done("irb-approved")
    with pytest.raises(InvalidArgument) as caught:
        step(site, "irb-approved", "2026-03-02")
    assert caught.value.violations[0].field == "reason"
    site = step(site, "irb-approved", "2026-03-02", reason="letter dated 2 March")
    assert site.milestone("irb-approved").actual_date == dt.date(2026, 3, 2)


def test_correction_cannot_pull_a_prerequisite_past_a_dependent() -> None:
    site = step(fresh(), "site-selected", "2026-01-01")
    site = step(site, "cda-executed", "2026-01-05")
    with pytest.raises(FailedPrecondition) as caught:
        step(site, "site-selected", "2026-01-10", reason="typo")
    assert caught.value.violations[0].type == "DEPENDENT_MILESTONE_DATE"
    with pytest.raises(FailedPrecondition):
        step(site, "site-selected", None, S.IN_PROGRESS, reason="undo")


def test_future_and_early_dates_are_refused() -> None:
    with pytest.raises(InvalidArgument):
        step(fresh(), "site-selected", "2026-07-01")
    site = step(fresh(), "site-selected", "2026-01-10")
    with pytest.raises(FailedPrecondition) as caught:
        step(site, "cda-executed", "2026-01-09")
    assert caught.value.violations[0].type == "MILESTONE_DATE"


def test_replanning_moves_plan_never_baseline() -> None:
    site = step(fresh(), "site-selected", None, S.PLANNED, planned="2026-01-01")
    site = step(site, "site-selected", None, S.PLANNED, planned="2026-01-15")
    site = step(site, "site-selected", "2026-01-20")
    record = site.milestone("site-selected")
    assert (record.baseline_date, record.planned_date) == (dt.date(2026, 1, 1),
                                                            dt.date(2026, 1, 15))
    assert slip_days(record) == (14, 19)


def _to_activation(approval: CountryApproval | None) -> StudySite:
    site = fresh()
    for key, on in (("site-selected", "2026-01-01"), ("cda-executed", "2026-01-05"),
                    ("site-qualification-visit", "2026-01-10"), ("budget-agreed", "2026-01-20"),
                    ("contract-executed", "2026-02-01"), ("irb-submitted", "2026-01-06"),
                    ("irb-approved", "2026-02-01"), ("site-initiation-visit", "2026-02-10")):
        site = step(site, key, on, approval=approval)
    # Essential documents complete is derived from the checklist, never recorded.
    with pytest.raises(FailedPrecondition) as caught:
        step(site, "essential-documents-complete", "2026-02-05")
    assert [v.type for v in caught.value.violations] == ["DERIVED_MILESTONE"]
    derived = apply_greenlight(site, DEFAULT_TEMPLATE, dt.date(2026, 2, 5), "", NOW)
    assert derived is not None
    return derived[0]


def test_activation_waits_for_country_approval() -> None:
    site = _to_activation(None)
    with pytest.raises(FailedPrecondition) as caught:
        step(site, "site-activated", "2026-03-05", approval=None)
    assert [v.type for v in caught.value.violations] == ["COUNTRY_APPROVAL"]
    with pytest.raises(FailedPrecondition) as caught:
        step(site, "site-activated", "2026-02-20")  # before MFDS approval on 1 March
    assert [v.type for v in caught.value.violations] == ["COUNTRY_APPROVAL_DATE"]
    assert step(site, "site-activated", "2026-03-05").done("site-activated")


def test_custom_template_skips_adds_and_retargets() -> None:
    extra = MilestoneDefinition("pharmacy-ready", "Pharmacy ready", "약국 준비",
                                ("contract-executed",), 80)
    template = build_template(TemplateChoice(skip=("site-qualification-visit",),
                                             target_days=(("site-activated", 70),),
                                             extra=(extra,)))
    assert "site-qualification-visit" not in template.keys
    budget = template.get("budget-agreed")
    assert budget is not None and budget.prerequisites == ("cda-executed",)
    activated = template.get("site-activated")
    assert activated is not None and activated.target_days == 70
    assert template.keys.index("pharmacy-ready") == template.keys.index("contract-executed") + 1
    for bad in (TemplateChoice(skip=("nope",)), TemplateChoice(skip=("site-activated",)),
                TemplateChoice(target_days=(("irb-approved", -1),)),
                TemplateChoice(extra=(MilestoneDefinition("x", "X", "", ("nope",)),)),
                TemplateChoice(extra=(MilestoneDefinition("irb-approved", "X", "", ()),))):
        with pytest.raises(ValueError):
            build_template(bad)
