"""CLI for site staff and sponsors: studies, a study's sites as a table, milestones, the
activation summary. Every command goes through the StartupTracker API."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Annotated

import typer
from google.type import date_pb2
from rich.console import Console
from rich.table import Table

from services.cli.client import bearer, channel, reporting_errors
from services.common.config import ServiceName, Settings
from sitenet.startup.v1 import startup_pb2, startup_pb2_grpc

studies = typer.Typer(help="Studies.", no_args_is_help=True)
study_sites = typer.Typer(help="The sites of a study.", no_args_is_help=True)
milestone = typer.Typer(help="Record and audit milestones of a study-site.",
                        no_args_is_help=True)
country = typer.Typer(help="Country regulatory approvals of a study (e.g. MFDS for KR).",
                      no_args_is_help=True)

TokenOption = Annotated[str | None, typer.Option(
    help="Bearer token (default: $SITENET_TOKEN, else a local admin token)")]
console = Console()


class Status(StrEnum):
    planned = "planned"
    in_progress = "in-progress"
    done = "done"
    not_applicable = "not-applicable"
    approved_with_conditions = "approved-with-conditions"
    rejected = "rejected"

    @property
    def proto(self) -> int:
        return int(startup_pb2.MilestoneStatus.Value(self.name.upper()))


def _date(text: str | None) -> date_pb2.Date | None:
    if not text:
        return None
    try:
        day = dt.date.fromisoformat(text)
    except ValueError as exc:
        raise typer.BadParameter(f"{text!r} is not a date (YYYY-MM-DD)") from exc
    return date_pb2.Date(year=day.year, month=day.month, day=day.day)


def _show(value: date_pb2.Date) -> str:
    return f"{value.year:04d}-{value.month:02d}-{value.day:02d}" if value.year else ""


def _study_name(study: str) -> str:
    return study if study.startswith("studies/") else f"studies/{study}"


@studies.command("list")
def list_studies(filter: Annotated[str, typer.Option(help="e.g. 'phase = PHASE_3'")] = "",
                 token: TokenOption = None) -> None:
    """List the studies you may see."""
    settings = Settings()
    table = Table("study", "protocol", "sponsor", "phase", "countries", "title")
    with reporting_errors(), channel(settings, ServiceName.STARTUP_TRACKER) as ch:
        stub = startup_pb2_grpc.StartupTrackerStub(ch)
        page_token = ""
        while True:
            page = stub.ListStudies(startup_pb2.ListStudiesRequest(
                filter=filter, page_token=page_token), metadata=bearer(settings, token))
            for s in page.studies:
                table.add_row(s.name, s.protocol_number, s.sponsor_org,
                              startup_pb2.Phase.Name(s.phase), ",".join(s.country_codes),
                              s.title)
            page_token = page.next_page_token
            if not page_token:
                break
    console.print(table)


def print_study_sites(rows: list[startup_pb2.StudySite]) -> None:
    table = Table("site", "name", "country", "region", "status", "current milestone",
                  "planned activation", "overdue", "flag")
    for s in rows:
        late = max((m.days_overdue for m in s.milestones), default=0)
        table.add_row(s.site.removeprefix("sites/"),
                      s.site_display_name_ko or s.site_display_name_en, s.country_code,
                      s.region_code, startup_pb2.StudySiteStatus.Name(s.status),
                      s.current_milestone or "-", _show(s.planned_activation_date),
                      f"{late} d" if s.overdue else "", s.flag_reason if s.flagged else "")
    console.print(table)


@study_sites.command("list")
def list_study_sites(
    study: Annotated[str, typer.Argument(help="Study id or studies/{study}")],
    filter: Annotated[str, typer.Option(
        help="e.g. 'country_code = \"KR\" AND overdue = true'")] = "",
    token: TokenOption = None,
) -> None:
    """Show a study's sites as a table: where each stands and how late."""
    settings = Settings()
    rows: list[startup_pb2.StudySite] = []
    with reporting_errors(), channel(settings, ServiceName.STARTUP_TRACKER) as ch:
        stub = startup_pb2_grpc.StartupTrackerStub(ch)
        page_token = ""
        while True:
            page = stub.ListStudySites(startup_pb2.ListStudySitesRequest(
                parent=_study_name(study), filter=filter, page_token=page_token),
                metadata=bearer(settings, token))
            rows += page.study_sites
            page_token = page.next_page_token
            if not page_token:
                break
    print_study_sites(rows)


@milestone.command("record")
def record_milestone(
    study: Annotated[str, typer.Argument(help="Study id")],
    site: Annotated[str, typer.Argument(help="Site id, e.g. snuh")],
    key: Annotated[str, typer.Argument(metavar="MILESTONE", help="e.g. irb-approved")],
    status: Annotated[Status, typer.Option(help="New status")] = Status.done,
    actual: Annotated[str | None, typer.Option(help="Actual date YYYY-MM-DD")] = None,
    planned: Annotated[str | None, typer.Option(help="Planned date YYYY-MM-DD")] = None,
    note: Annotated[str, typer.Option(help="Free-text note")] = "",
    reason: Annotated[str, typer.Option(help="Why an earlier entry is corrected")] = "",
    token: TokenOption = None,
) -> None:
    """Record one milestone of a study-site (e.g. the IRB approval date)."""
    settings = Settings()
    request = startup_pb2.RecordMilestoneRequest(
        study_site=f"{_study_name(study)}/sites/{site.removeprefix('sites/')}", milestone=key,
        status=status.proto, note=note, reason=reason)  # type: ignore[arg-type]
    if (a := _date(actual)) is not None:
        request.actual_date.CopyFrom(a)
    if (p := _date(planned)) is not None:
        request.planned_date.CopyFrom(p)
    with reporting_errors(), channel(settings, ServiceName.STARTUP_TRACKER) as ch:
        result = startup_pb2_grpc.StartupTrackerStub(ch).RecordMilestone(
            request, metadata=bearer(settings, token))
    typer.echo(f"{result.name}: {startup_pb2.MilestoneStatus.Name(result.status)} "
               f"actual {_show(result.actual_date) or '-'} planned "
               f"{_show(result.planned_date) or '-'} baseline {_show(result.baseline_date) or '-'}")


@milestone.command("history")
def milestone_history(study: Annotated[str, typer.Argument(help="Study id")],
                      site: Annotated[str, typer.Argument(help="Site id")],
                      token: TokenOption = None) -> None:
    """Every change to a study-site's milestones: who, when, before, after, why."""
    settings = Settings()
    table = Table("#", "time (UTC)", "milestone", "actor", "before", "after", "reason")
    with reporting_errors(), channel(settings, ServiceName.STARTUP_TRACKER) as ch:
        stub = startup_pb2_grpc.StartupTrackerStub(ch)
        page_token = ""
        while True:
            page = stub.ListMilestoneHistory(startup_pb2.ListMilestoneHistoryRequest(
                parent=f"{_study_name(study)}/sites/{site}", page_token=page_token),
                metadata=bearer(settings, token))
            for e in page.entries:
                table.add_row(str(e.entry_id), e.record_time.ToDatetime().isoformat(" ", "seconds"),
                              e.milestone, f"{e.actor} ({e.role})", e.before_json, e.after_json,
                              e.reason)
            page_token = page.next_page_token
            if not page_token:
                break
    console.print(table)


@country.command("record")
def record_country(
    study: Annotated[str, typer.Argument(help="Study id")],
    code: Annotated[str, typer.Argument(metavar="COUNTRY", help="e.g. KR")],
    status: Annotated[Status, typer.Option(help="New status")] = Status.done,
    decision: Annotated[str | None, typer.Option(help="Decision date YYYY-MM-DD")] = None,
    submitted: Annotated[str | None, typer.Option(help="Submitted date YYYY-MM-DD")] = None,
    reference: Annotated[str, typer.Option(help="e.g. the IND approval number")] = "",
    reason: Annotated[str, typer.Option(help="Why an earlier entry is corrected")] = "",
    token: TokenOption = None,
) -> None:
    """Record a country's regulatory approval; it gates activation of the country's sites."""
    settings = Settings()
    approval = startup_pb2.CountryApproval(status=status.proto,  # type: ignore[arg-type]
                                           reference=reference)
    if (d := _date(decision)) is not None:
        approval.decision_date.CopyFrom(d)
    if (s := _date(submitted)) is not None:
        approval.submitted_date.CopyFrom(s)
    with reporting_errors(), channel(settings, ServiceName.STARTUP_TRACKER) as ch:
        result = startup_pb2_grpc.StartupTrackerStub(ch).RecordCountryApproval(
            startup_pb2.RecordCountryApprovalRequest(
                name=f"{_study_name(study)}/countries/{code.upper()}", approval=approval,
                reason=reason), metadata=bearer(settings, token))
    typer.echo(f"{result.name}: {result.authority} "
               f"{startup_pb2.MilestoneStatus.Name(result.status)} {_show(result.decision_date)}")


def print_summary(summary: startup_pb2.ActivationSummary) -> None:
    console.print(f"[bold]{summary.study}[/bold] as of {_show(summary.as_of)} "
                  f"(due soon = within {summary.due_within_days} days)")
    groups = [summary.total, *summary.by_country, *summary.by_region]
    outlook = Table("scope", "sites", "activated", "overdue", "due soon", "later", "unplanned",
                    "sites late", title="Activation outlook")
    for g in groups:
        a = g.activation
        outlook.add_row(g.scope, str(g.site_count), str(a.activated), str(a.overdue),
                        str(a.due_soon), str(a.planned_later), str(a.unplanned),
                        str(g.sites_overdue))
    console.print(outlook)
    funnel = Table("milestone", *(g.scope for g in groups),
                   title="Funnel: sites done (current)")
    for i, step in enumerate(summary.total.funnel):
        funnel.add_row(step.milestone, *(f"{g.funnel[i].sites_done} ({g.funnel[i].sites_current})"
                                         for g in groups))
    console.print(funnel)
    cycles = Table("step", "n", "median", "p75", "p90", title="Cycle times, days (all sites)")
    for c in summary.total.cycle_times:
        if c.count:
            cycles.add_row(f"{c.from_milestone} → {c.to_milestone}", str(c.count),
                           f"{c.median_days:g}", f"{c.p75_days:g}", f"{c.p90_days:g}")
    console.print(cycles)
    late = Table("site", "milestone", "target", "days late", title="Overdue (all sites)")
    for o in summary.total.overdue[:20]:
        late.add_row(o.study_site.rsplit("/", 1)[-1], o.milestone, _show(o.target_date),
                     str(o.days_overdue))
    console.print(late)


def summary(
    study: Annotated[str, typer.Argument(help="Study id")],
    due_within: Annotated[int, typer.Option(help="Window for 'due soon', days")] = 30,
    token: TokenOption = None,
) -> None:
    """The sponsor's view: outlook, funnel, cycle times and overdue milestones."""
    settings = Settings()
    with reporting_errors(), channel(settings, ServiceName.STARTUP_TRACKER) as ch:
        result = startup_pb2_grpc.StartupTrackerStub(ch).GetActivationSummary(
            startup_pb2.GetActivationSummaryRequest(name=_study_name(study),
                                                    due_within_days=due_within),
            metadata=bearer(settings, token))
    print_summary(result)


def register(app: typer.Typer) -> None:
    """Add these commands to the `sitenet` app."""
    app.add_typer(studies, name="studies")
    app.add_typer(study_sites, name="study-sites")
    app.add_typer(milestone, name="milestone")
    app.add_typer(country, name="country-approval")
    app.command("summary")(summary)
    from services.cli.demo import demo

    app.command("demo")(demo)
