"""The sponsor's view of a study: funnel, cycle times, overdue sites, activation outlook.

Definitions (the README repeats them):
- funnel: per milestone, the sites with it done (DONE or APPROVED_WITH_CONDITIONS;
  NOT_APPLICABLE is not counted) and the sites whose current milestone it is;
- cycle time of a step (from, to): for each site with both actual dates, the days
  between them; steps are the template's edges plus the headline spans;
- percentiles: linear interpolation between closest ranks (Hyndman & Fan type 7, as
  numpy's default and Excel's PERCENTILE.INC): sort the n values, h = (n - 1) * p,
  value = x[floor(h)] + (h - floor(h)) * (x[floor(h) + 1] - x[floor(h)]); the median
  is p = 0.5;
- overdue: a milestone not done whose target date (site selection + target days) is
  before today at the site; how late = today - target, in days;
- activation outlook: a site is activated once site-activated is done; otherwise its
  planned activation date (the planned date, else the target) is before today
  (overdue), within today..today + N days (due soon), later (planned later), or
  missing (unplanned).
"""

from __future__ import annotations

import datetime as dt
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from services.startup_tracker.domain.documents import (
    DocumentTemplate,
    Missing,
    SiteDocument,
    missing,
)
from services.startup_tracker.domain.model import StudySite
from services.startup_tracker.domain.templates import HEADLINE_SPANS, MilestoneTemplate


def percentile(values: Sequence[float], p: float) -> float:
    """Type-7 percentile of `values` (not empty), 0 <= p <= 1."""
    ordered = sorted(values)
    h = (len(ordered) - 1) * p
    low = math.floor(h)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (h - low) * (ordered[high] - ordered[low])


@dataclass(frozen=True)
class Funnel:
    milestone: str
    sites_done: int
    sites_current: int


@dataclass(frozen=True)
class Cycle:
    from_milestone: str
    to_milestone: str
    count: int
    median: float
    p75: float
    p90: float


@dataclass(frozen=True)
class Overdue:
    study_site: str
    milestone: str
    target_date: dt.date
    days: int


@dataclass(frozen=True)
class Outlook:
    overdue: int = 0
    due_soon: int = 0
    planned_later: int = 0
    activated: int = 0
    unplanned: int = 0


@dataclass(frozen=True)
class Group:
    scope: str
    site_count: int
    funnel: tuple[Funnel, ...]
    cycles: tuple[Cycle, ...]
    overdue: tuple[Overdue, ...]
    sites_overdue: int
    outlook: Outlook


@dataclass(frozen=True)
class Summary:
    total: Group
    by_country: tuple[Group, ...]
    by_region: tuple[Group, ...]


def steps(template: MilestoneTemplate) -> tuple[tuple[str, str], ...]:
    spans = [s for s in HEADLINE_SPANS if template.get(s[0]) and template.get(s[1])]
    return tuple(dict.fromkeys((*template.edges(), *spans)))


def group(scope: str, sites: Sequence[StudySite], template: MilestoneTemplate,
          today_at: Callable[[StudySite], dt.date], due_within_days: int) -> Group:
    funnel = tuple(Funnel(k, sum(1 for s in sites if s.done(k)),
                          sum(1 for s in sites if s.current == k)) for k in template.keys)
    cycles = []
    for start, end in steps(template):
        days = [float((e - b).days) for s in sites
                if s.done(start) and s.done(end)
                and (b := s.milestone(start).actual_date) and (e := s.milestone(end).actual_date)]
        if days:
            cycles.append(Cycle(start, end, len(days), percentile(days, 0.5),
                                percentile(days, 0.75), percentile(days, 0.9)))
        else:
            cycles.append(Cycle(start, end, 0, 0.0, 0.0, 0.0))
    overdue: list[Overdue] = []
    late_sites = 0
    counts = {"overdue": 0, "due_soon": 0, "planned_later": 0, "activated": 0, "unplanned": 0}
    for s in sites:
        today = today_at(s)
        late = s.overdue(template, today)
        late_sites += bool(late)
        for key, late_days in late:
            target = s.target_date(template, key)
            assert target is not None
            overdue.append(Overdue(s.name, key, target, late_days))
        planned = s.planned_activation_date(template)
        if s.done("site-activated"):
            counts["activated"] += 1
        elif planned is None:
            counts["unplanned"] += 1
        elif planned < today:
            counts["overdue"] += 1
        elif planned <= today + dt.timedelta(days=due_within_days):
            counts["due_soon"] += 1
        else:
            counts["planned_later"] += 1
    overdue.sort(key=lambda o: (-o.days, o.study_site, template.order(o.milestone)))
    return Group(scope, len(sites), funnel, tuple(cycles), tuple(overdue), late_sites,
                 Outlook(**counts))


def summarise(sites: Sequence[StudySite], template: MilestoneTemplate,
              today_at: Callable[[StudySite], dt.date], due_within_days: int) -> Summary:
    countries = sorted({s.site.country_code for s in sites})
    regions = sorted({s.site.region_code for s in sites if s.site.region_code})
    return Summary(
        total=group("all", sites, template, today_at, due_within_days),
        by_country=tuple(group(c, [s for s in sites if s.site.country_code == c], template,
                               today_at, due_within_days) for c in countries),
        by_region=tuple(group(r, [s for s in sites if s.site.region_code == r], template,
                              today_at, due_within_days) for r in regions),
    )


@dataclass(frozen=True)
class DocumentTypeSummary:
    document: str
    outstanding: int
    approved: int
    median_days_to_approval: float


@dataclass(frozen=True)
class DocumentSummary:
    by_site: list[tuple[str, list[Missing]]]  # (study-site name, what is missing)
    by_type: list[DocumentTypeSummary]
    blocked_only_by_documents: list[str]


@dataclass(frozen=True)
class SiteChecklist:
    study_site: StudySite
    template: DocumentTemplate
    documents: dict[str, SiteDocument]
    today: dt.date
    country_approved: bool


# What activation waits for besides the documents (the country's approval comes apart).
OTHER_GATES = ("irb-approved", "contract-executed", "site-initiation-visit")


def summarise_documents(rows: list[SiteChecklist]) -> DocumentSummary:
    by_site = []
    outstanding: dict[str, int] = {}
    waits: dict[str, list[float]] = {}
    order: list[str] = []
    blocked = []
    for row in rows:
        gaps = missing(row.template, row.documents, row.today)
        if gaps:
            by_site.append((row.study_site.name, gaps))
        for d in row.template.documents:
            if d.key not in order:
                order.append(d.key)
            outstanding.setdefault(d.key, 0)
            waits.setdefault(d.key, [])
        for gap in gaps:
            outstanding[gap.key] += 1
        for doc in row.documents.values():
            if doc.approved_date and doc.expected_time:
                # A document recorded after the fact may predate the checklist: 0 days.
                waits[doc.key].append(float(max(0, (doc.approved_date
                                                    - doc.expected_time.date()).days)))
        ss = row.study_site
        others_done = all(ss.milestone(k).status is not None
                          and ss.milestone(k).status.completes  # type: ignore[union-attr]
                          for k in OTHER_GATES)
        if gaps and others_done and row.country_approved and not ss.done("site-activated"):
            blocked.append(ss.name)
    by_type = [DocumentTypeSummary(k, outstanding[k], len(waits[k]),
                                   statistics.median(waits[k]) if waits[k] else 0.0)
               for k in order]
    return DocumentSummary(by_site=by_site, by_type=by_type,
                           blocked_only_by_documents=blocked)
