"""`sitenet sites ...` and `sitenet seed`: the site registry for network administrators."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from google.protobuf import field_mask_pb2
from rich.console import Console
from rich.table import Table

from services.cli.client import bearer, channel, reporting_errors
from services.common.config import ServiceName, Settings
from sitenet.registry.v1 import registry_pb2, registry_pb2_grpc

app = typer.Typer(help="The site registry: list, show, create, update, suspend, import.",
                  no_args_is_help=True)
console = Console()

TokenOption = Annotated[str | None, typer.Option(
    "--token", help="Bearer token (default: $SITENET_TOKEN, else a local admin token)")]
_STATUS = {v: k for k, v in registry_pb2.Site.Status.items()}


class FileFormat(StrEnum):
    auto = "auto"
    csv = "csv"
    jsonl = "jsonl"


@contextmanager
def _registry(token: str | None) -> Iterator[tuple[registry_pb2_grpc.SiteRegistryStub,
                                                    list[tuple[str, str]]]]:
    settings = Settings()
    with reporting_errors(), channel(settings, ServiceName.SITE_REGISTRY) as ch:
        yield registry_pb2_grpc.SiteRegistryStub(ch), bearer(settings, token)


def _name(site: str) -> str:
    return site if site.startswith("sites/") else f"sites/{site}"


def _sites_table(sites: list[registry_pb2.Site]) -> Table:
    table = Table("site", "name (en)", "name (ko)", "region", "city", "status",
                  "therapeutic areas", "capabilities")
    for s in sites:
        table.add_row(s.name.removeprefix("sites/"), s.display_name_en, s.display_name_ko,
                      s.region_code, s.city, _STATUS.get(s.status, "?"),
                      ", ".join(s.therapeutic_areas), ", ".join(s.capabilities))
    return table


def _show(site: registry_pb2.Site) -> None:
    table = Table("field", "value", show_header=False)
    mfds = site.mfds_designation_date
    rows: list[tuple[str, str]] = [
        ("name", site.name), ("English name", site.display_name_en),
        ("Korean name", site.display_name_ko), ("institution", site.institution),
        ("country / region", f"{site.country_code} / {site.region_code}"),
        ("city", site.city), ("address", site.address), ("IRB of record", site.irb_of_record),
        ("MFDS designation", " ".join(filter(None, [
            site.mfds_designation_number,
            f"{mfds.year:04d}-{mfds.month:02d}-{mfds.day:02d}" if mfds.year else ""]))),
        ("therapeutic areas", ", ".join(site.therapeutic_areas)),
        ("capabilities", ", ".join(site.capabilities)),
        ("principal investigators", "\n".join(
            f"{p.display_name} ({p.specialty})" if p.specialty else p.display_name
            for p in site.principal_investigators)),
        ("contacts", "\n".join(" · ".join(filter(None, [c.role, c.display_name, c.email,
                                                       c.phone])) for c in site.contacts)),
        ("status", _STATUS.get(site.status, "?") + (
            f" — {site.status_reason}" if site.status_reason else "")),
        ("status changed", site.status_change_time.ToJsonString()
         if site.HasField("status_change_time") else ""),
        ("time zone", site.time_zone), ("etag", site.etag),
        ("created", site.create_time.ToJsonString()),
        ("updated", site.update_time.ToJsonString()),
    ]
    for field, value in rows:
        table.add_row(field, value)
    console.print(table)


@app.command("list")
def list_sites(
    filter_text: Annotated[str, typer.Option("--filter", help=(
        'AIP-160 filter, e.g. \'region_code = "KR-26" AND therapeutic_areas:oncology\''))] = "",
    order_by: Annotated[str, typer.Option(help="e.g. 'display_name_en' or 'create_time desc'")
                        ] = "",
    limit: Annotated[int, typer.Option(help="Show at most this many (0: all)")] = 0,
    token: TokenOption = None,
) -> None:
    """List sites, page by page, as a table."""
    found: list[registry_pb2.Site] = []
    page_token = ""
    with _registry(token) as (stub, metadata):
        while True:
            page = stub.ListSites(registry_pb2.ListSitesRequest(
                filter=filter_text, order_by=order_by, page_token=page_token, page_size=200),
                metadata=metadata)
            found += page.sites
            page_token = page.next_page_token
            if not page_token or (limit and len(found) >= limit):
                break
    shown = found[:limit] if limit else found
    console.print(_sites_table(shown))
    console.print(f"{len(shown)} site(s)")


@app.command()
def show(site: Annotated[str, typer.Argument(help="Site id or sites/{site}")],
         audit: Annotated[bool, typer.Option(help="Also show the audit trail")] = False,
         token: TokenOption = None) -> None:
    """Show one site in full (and its audit trail with --audit)."""
    with _registry(token) as (stub, metadata):
        _show(stub.GetSite(registry_pb2.GetSiteRequest(name=_name(site)), metadata=metadata))
        if audit:
            table = Table("when", "action", "who", "changed", "reason")
            page_token = ""
            while True:
                page = stub.ListSiteAuditEntries(registry_pb2.ListSiteAuditEntriesRequest(
                    parent=_name(site), page_token=page_token), metadata=metadata)
                for e in page.audit_entries:
                    table.add_row(e.create_time.ToJsonString(), e.action,
                                  f"{e.actor} ({e.actor_role})", ", ".join(e.changed_fields),
                                  e.reason)
                page_token = page.next_page_token
                if not page_token:
                    break
            console.print(table)


def _site_fields(name_en: str | None, name_ko: str | None, institution: str | None,
                 country: str | None, region: str | None, city: str | None,
                 address: str | None, irb: str | None, area: list[str] | None,
                 capability: list[str] | None, investigator: list[str] | None
                 ) -> dict[str, Any]:
    """The options given, as Site fields (None: not given)."""
    values: dict[str, Any] = {
        "display_name_en": name_en, "display_name_ko": name_ko, "institution": institution,
        "country_code": country, "region_code": region, "city": city, "address": address,
        "irb_of_record": irb, "therapeutic_areas": area, "capabilities": capability}
    if investigator is not None:
        values["principal_investigators"] = [
            registry_pb2.PrincipalInvestigator(display_name=n.strip(), specialty=s.strip())
            for n, _, s in (i.partition(":") for i in investigator)]
    return {k: v for k, v in values.items() if v is not None}


NameEn = Annotated[str | None, typer.Option("--name-en", help="English name")]
NameKo = Annotated[str | None, typer.Option("--name-ko", help="Korean name")]
Institution = Annotated[str | None, typer.Option(help="Institution")]
Country = Annotated[str | None, typer.Option(help="ISO 3166-1 alpha-2, e.g. KR")]
Region = Annotated[str | None, typer.Option(help="ISO 3166-2, e.g. KR-11")]
City = Annotated[str | None, typer.Option(help="City")]
Address = Annotated[str | None, typer.Option(help="Street address")]
Irb = Annotated[str | None, typer.Option("--irb", help="IRB of record")]
Area = Annotated[list[str] | None, typer.Option("--area", help="Therapeutic area (repeat)")]
Capability = Annotated[list[str] | None, typer.Option("--capability",
                                                      help="Capability (repeat)")]
Investigator = Annotated[list[str] | None, typer.Option(
    "--investigator", help="'Name: specialty' (repeat)")]


@app.command()
def create(site_id: Annotated[str, typer.Argument(help="Id, e.g. snuh ('' to generate)")],
           name_en: NameEn = None, name_ko: NameKo = None, institution: Institution = None,
           country: Country = "KR", region: Region = None, city: City = None,
           address: Address = None, irb: Irb = None, area: Area = None,
           capability: Capability = None, investigator: Investigator = None,
           reason: Annotated[str, typer.Option(help="Why (kept in the audit trail)")] = "",
           token: TokenOption = None) -> None:
    """Register a site."""
    fields = _site_fields(name_en, name_ko, institution, country, region, city, address, irb,
                          area, capability, investigator)
    with _registry(token) as (stub, metadata):
        _show(stub.CreateSite(registry_pb2.CreateSiteRequest(
            site_id=site_id, site=registry_pb2.Site(**fields), reason=reason),
            metadata=metadata))


@app.command()
def update(site: Annotated[str, typer.Argument(help="Site id or sites/{site}")],
           name_en: NameEn = None, name_ko: NameKo = None, institution: Institution = None,
           country: Country = None, region: Region = None, city: City = None,
           address: Address = None, irb: Irb = None, area: Area = None,
           capability: Capability = None, investigator: Investigator = None,
           etag: Annotated[str, typer.Option(help="Etag last read (detects conflicts)")] = "",
           reason: Annotated[str, typer.Option(help="Why (kept in the audit trail)")] = "",
           token: TokenOption = None) -> None:
    """Change the fields given (only those)."""
    fields = _site_fields(name_en, name_ko, institution, country, region, city, address, irb,
                          area, capability, investigator)
    if not fields:
        typer.echo("nothing to change: give at least one field option", err=True)
        raise typer.Exit(2)
    with _registry(token) as (stub, metadata):
        _show(stub.UpdateSite(registry_pb2.UpdateSiteRequest(
            site=registry_pb2.Site(name=_name(site), etag=etag, **fields),
            update_mask=field_mask_pb2.FieldMask(paths=sorted(fields)), reason=reason),
            metadata=metadata))


Reason = Annotated[str, typer.Option(help="Why (required; kept in the audit trail)")]


@app.command()
def suspend(site: Annotated[str, typer.Argument(help="Site id")], reason: Reason,
            token: TokenOption = None) -> None:
    """Suspend an active site."""
    with _registry(token) as (stub, metadata):
        _show(stub.SuspendSite(registry_pb2.SuspendSiteRequest(name=_name(site), reason=reason),
                               metadata=metadata))


@app.command()
def reactivate(site: Annotated[str, typer.Argument(help="Site id")], reason: Reason,
               token: TokenOption = None) -> None:
    """Reactivate a suspended site."""
    with _registry(token) as (stub, metadata):
        _show(stub.ReactivateSite(registry_pb2.ReactivateSiteRequest(
            name=_name(site), reason=reason), metadata=metadata))


@app.command()
def close(site: Annotated[str, typer.Argument(help="Site id")], reason: Reason,
          token: TokenOption = None) -> None:
    """Close a site for good."""
    with _registry(token) as (stub, metadata):
        _show(stub.CloseSite(registry_pb2.CloseSiteRequest(name=_name(site), reason=reason),
                             metadata=metadata))


def import_file(path: Path, fmt: FileFormat, partial: bool, token: str | None,
                reason: str = "") -> None:
    kind = fmt.value if fmt is not FileFormat.auto else (
        "csv" if path.suffix.lower() == ".csv" else "jsonl")
    request = registry_pb2.ImportSitesRequest(
        content=path.read_bytes(), allow_partial=partial, reason=reason,
        format=registry_pb2.ImportSitesRequest.CSV if kind == "csv"
        else registry_pb2.ImportSitesRequest.JSONL)
    with _registry(token) as (stub, metadata):
        result = stub.ImportSites(request, metadata=metadata)
    typer.echo(f"{result.created_count} created, {result.unchanged_count} already registered "
               f"unchanged, {len(result.errors)} bad row(s)")
    if result.errors:
        table = Table("line", "field", "problem")
        for e in result.errors:
            table.add_row(str(e.line), e.field, e.description)
        console.print(table)


@app.command("import")
def import_sites(
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="CSV or JSONL file")],
    fmt: Annotated[FileFormat, typer.Option("--format", help="auto: by file extension")
                   ] = FileFormat.auto,
    partial: Annotated[bool, typer.Option(help="Import the good rows even if some are bad")
                       ] = False,
    reason: Annotated[str, typer.Option(
        help="Why (kept in the audit trail; default 'bulk import')")] = "",
    token: TokenOption = None,
) -> None:
    """Register the sites of a file; a file with bad rows imports nothing unless --partial."""
    import_file(path, fmt, partial, token, reason)


def seed(token: TokenOption = None) -> None:
    """Load the sample Korean network (idempotent: a second run adds nothing)."""
    from services.site_registry.sample_data import kr_sites_path

    import_file(kr_sites_path(), FileFormat.jsonl, False, token)
