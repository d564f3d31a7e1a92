"""The `sitenet` command: run the system, serve one service, make tokens."""

from __future__ import annotations

import asyncio
from enum import StrEnum
from typing import Annotated

import typer

from services.cli import operations, sites
from services.common.config import ServiceName, Settings
from services.common.identity import Role
from services.common.logs import configure_logging
from services.common.tokens import token_service

app = typer.Typer(
    name="sitenet",
    help="Clinical-trial site network: site registry, study start-up tracker, notifications.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(sites.app, name="sites")
app.command("seed")(sites.seed)


class RoleOption(StrEnum):
    admin = "admin"
    sponsor = "sponsor"
    site = "site"
    ops = "ops"


@app.command()
def run() -> None:
    """Start the broker (embedded unless SITENET_KAFKA_BOOTSTRAP is set) and all three services."""
    from services.cli.system import System

    settings = Settings()
    system = System(settings, say=typer.echo)
    code = 0
    try:
        system.start()
        typer.echo("")
        typer.echo("sitenet is running. Get a token:  sitenet token --role admin")
        transport = ("-plaintext" if settings.tls_cert_file is None
                     else f"-cacert {settings.tls_ca_file or 'CA.pem'}")
        typer.echo(f"Try:  grpcurl {transport} -H \"authorization: Bearer $(sitenet token --role "
                   f"admin)\" {settings.address(ServiceName.SITE_REGISTRY)} "
                   "sitenet.registry.v1.SiteRegistry/ListSites")
        typer.echo("Press Ctrl-C to stop.")
        code = system.wait()
    finally:
        typer.echo("stopping...")
        system.stop()
        typer.echo("stopped.")
    raise typer.Exit(code)


@app.command()
def serve(service: Annotated[ServiceName, typer.Argument(help="Which service")]) -> None:
    """Run one service in this process until SIGINT or SIGTERM."""
    settings = Settings()
    configure_logging(service.value, settings.log_level, settings.log_json)
    asyncio.run(_serve(service, settings))


async def _serve(service: ServiceName, settings: Settings) -> None:
    # Built inside the running loop: gRPC's aio server binds to the loop it is made in.
    if service is ServiceName.SITE_REGISTRY:
        from services.site_registry.bootstrap import build as build_registry

        runtime = build_registry(settings).runtime
    elif service is ServiceName.STARTUP_TRACKER:
        from services.startup_tracker.bootstrap import build as build_tracker

        runtime = build_tracker(settings).runtime
    else:
        from services.notifications.bootstrap import build as build_notifications

        runtime = build_notifications(settings).runtime
    await runtime.run_until_signalled()


@app.command()
def token(
    role: Annotated[RoleOption, typer.Option(help="admin, sponsor, site or ops")],
    org: Annotated[str | None, typer.Option(help="Sponsor organisation (role sponsor)")] = None,
    site: Annotated[list[str] | None, typer.Option(
        help="Site id, e.g. snuh (role site; repeat for several)")] = None,
    subject: Annotated[str | None, typer.Option(
        help="Subject (who); defaults from the role")] = None,
    ttl: Annotated[int, typer.Option(help="Lifetime in seconds")] = 12 * 3600,
) -> None:
    """Print a bearer token the running system accepts (signed with the data directory's key,
    or with SITENET_JWT_PRIVATE_KEY_FILE when a JWKS is configured)."""
    from services.common.errors import InvalidArgument

    settings = Settings()
    tokens = token_service(settings)
    try:
        typer.echo(tokens.issue(Role(role.value), subject=subject, org=org,
                                sites=[s.removeprefix("sites/") for s in site or []],
                                ttl_s=ttl))
    except InvalidArgument as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(2) from exc


@app.command()
def catalog() -> None:
    """Print the event catalog (topics, keys, partitions, retention, event types) as Markdown."""
    from services.common.topics import catalog_markdown

    typer.echo(catalog_markdown())


from services.cli.documents import register as register_documents  # noqa: E402
from services.cli.startup import register as register_startup  # noqa: E402 - after app

register_startup(app)
register_documents(app)
operations.register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
