"""CLI for essential documents: a site's checklist as a table, recording a document's
status, and the sponsor's view of a study's documents. Through the StartupTracker API."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer
from rich.table import Table

from services.cli.client import bearer, channel, reporting_errors
from services.cli.startup import TokenOption, _date, _show, _study_name, console
from services.common.config import ServiceName, Settings
from sitenet.startup.v1 import startup_pb2, startup_pb2_grpc

documents = typer.Typer(help="Essential documents of a study-site and the greenlight.",
                        no_args_is_help=True)


class DocStatus(StrEnum):
    received = "received"
    approved = "approved"
    rejected = "rejected"

    @property
    def proto(self) -> int:
        return {"received": startup_pb2.RECEIVED, "approved": startup_pb2.APPROVED,
                "rejected": startup_pb2.DOCUMENT_REJECTED}[self.value]


def status_label(status: int) -> str:
    return startup_pb2.DocumentStatus.Name(status).removeprefix("DOCUMENT_")  # type: ignore[arg-type]


def print_checklist(listed: startup_pb2.ListSiteDocumentsResponse, title: str) -> None:
    table = Table("document", "TMF artifact", "req.", "by", "status", "version", "date",
                  "expires", "note", title=title)
    for d in listed.documents:
        shown = status_label(d.status)
        if d.status == startup_pb2.APPROVED and not d.valid:
            shown = "EXPIRED"
        table.add_row(d.document, f"{d.tmf_artifact_number} {d.tmf_artifact_name}".strip(),
                      "yes" if d.required else "no",
                      "sponsor" if d.provider == startup_pb2.PROVIDER_SPONSOR else "site",
                      shown, d.version, _show(d.status_date), _show(d.expiry_date),
                      d.reason or d.note)
    console.print(table)
    console.print("Greenlight: " + ("[green]all required documents approved[/green]"
                                    if listed.complete else "[yellow]documents missing[/yellow]"))


@documents.command("list")
def list_documents(study: Annotated[str, typer.Argument(help="Study id")],
                   site: Annotated[str, typer.Argument(help="Site id, e.g. snuh")],
                   token: TokenOption = None) -> None:
    """A study-site's checklist: every expected document and where it stands."""
    settings = Settings()
    parent = f"{_study_name(study)}/sites/{site.removeprefix('sites/')}"
    with reporting_errors(), channel(settings, ServiceName.STARTUP_TRACKER) as ch:
        listed = startup_pb2_grpc.StartupTrackerStub(ch).ListSiteDocuments(
            startup_pb2.ListSiteDocumentsRequest(parent=parent), metadata=bearer(settings, token))
    print_checklist(listed, f"{parent} ({listed.template})")


@documents.command("record")
def record_document(
    study: Annotated[str, typer.Argument(help="Study id")],
    site: Annotated[str, typer.Argument(help="Site id, e.g. snuh")],
    key: Annotated[str, typer.Argument(metavar="DOCUMENT", help="e.g. gcp-certificates")],
    status: Annotated[DocStatus, typer.Option(help="New status")] = DocStatus.received,
    version: Annotated[str, typer.Option(help="Version (received)")] = "",
    uri: Annotated[str, typer.Option(help="Where the file lives (received)")] = "",
    content_hash: Annotated[str, typer.Option("--hash", help="sha256:<64 hex> (received)")] = "",
    expiry: Annotated[str | None, typer.Option(help="Expiry date YYYY-MM-DD")] = None,
    on: Annotated[str | None, typer.Option("--date", help="Date it happened (today)")] = None,
    reason: Annotated[str, typer.Option(help="Why it is rejected")] = "",
    note: Annotated[str, typer.Option(help="Free-text note")] = "",
    token: TokenOption = None,
) -> None:
    """Record a document received (site), approved or rejected (sponsor)."""
    settings = Settings()
    request = startup_pb2.RecordDocumentStatusRequest(
        name=f"{_study_name(study)}/sites/{site.removeprefix('sites/')}/documents/{key}",
        status=status.proto, version=version, uri=uri,  # type: ignore[arg-type]
        content_hash=content_hash, reason=reason, note=note)
    if (e := _date(expiry)) is not None:
        request.expiry_date.CopyFrom(e)
    if (d := _date(on)) is not None:
        request.status_date.CopyFrom(d)
    with reporting_errors(), channel(settings, ServiceName.STARTUP_TRACKER) as ch:
        result = startup_pb2_grpc.StartupTrackerStub(ch).RecordDocumentStatus(
            request, metadata=bearer(settings, token))
    typer.echo(f"{result.name}: {status_label(result.status)} version {result.version or '-'} "
               f"on {_show(result.status_date)}")


@documents.command("summary")
def document_summary(study: Annotated[str, typer.Argument(help="Study id")],
                     token: TokenOption = None) -> None:
    """The sponsor's view: outstanding documents by site and type, time to approval."""
    settings = Settings()
    with reporting_errors(), channel(settings, ServiceName.STARTUP_TRACKER) as ch:
        summary = startup_pb2_grpc.StartupTrackerStub(ch).GetDocumentSummary(
            startup_pb2.GetDocumentSummaryRequest(name=_study_name(study)),
            metadata=bearer(settings, token))
    print_document_summary(summary)


def print_document_summary(summary: startup_pb2.DocumentSummary) -> None:
    by_type = Table("document", "outstanding", "approved", "median days to approval",
                    title="Documents by type")
    for t in summary.by_type:
        by_type.add_row(t.document, str(t.outstanding), str(t.approved),
                        f"{t.median_days_to_approval:g}" if t.approved else "-")
    console.print(by_type)
    by_site = Table("site", "missing", title="Outstanding by site")
    for s in summary.by_site:
        by_site.add_row(s.study_site.rsplit("/", 1)[-1],
                        ", ".join(f"{m.document} ({m.reason})" for m in s.missing))
    console.print(by_site)
    blocked = [n.rsplit("/", 1)[-1] for n in summary.blocked_only_by_documents]
    console.print(f"Blocked only by documents: {', '.join(blocked) or 'none'}")


def register(app: typer.Typer) -> None:
    app.add_typer(documents, name="documents")
