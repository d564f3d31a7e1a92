"""Operations commands: `sitenet tail` follows notifications live; `sitenet
subscriptions` lists, creates and deletes subscriptions."""

from __future__ import annotations

import json
import time
from typing import Annotated

import grpc
import typer
from google.protobuf import json_format

from services.cli.client import bearer, channel, explain, reporting_errors
from services.common.config import ServiceName, Settings
from sitenet.notifications.v1 import notifications_pb2 as pb
from sitenet.notifications.v1 import notifications_pb2_grpc

subscriptions = typer.Typer(help="Manage notification subscriptions.", no_args_is_help=True)

Studies = Annotated[list[str] | None, typer.Option("--study", help="studies/{id}; repeatable")]
Sites = Annotated[list[str] | None, typer.Option("--site", help="sites/{id}; repeatable")]
Countries = Annotated[list[str] | None, typer.Option("--country", help="e.g. KR; repeatable")]
Regions = Annotated[list[str] | None, typer.Option("--region", help="e.g. KR-11; repeatable")]
Types = Annotated[list[str] | None, typer.Option(
    "--type", help="Event type, e.g. sitenet.events.v1.MilestoneRecorded; repeatable")]
Token = Annotated[str | None, typer.Option(help="Bearer token (default: SITENET_TOKEN)")]
# Retry a dropped stream quickly first, then no faster than this.
MAX_RECONNECT_S = 10.0


def register(app: typer.Typer) -> None:
    app.command()(tail)
    app.add_typer(subscriptions, name="subscriptions")


def _filter(study: list[str] | None, site: list[str] | None, country: list[str] | None,
            region: list[str] | None, kind: list[str] | None) -> pb.NotificationFilter:
    return pb.NotificationFilter(studies=study or [], sites=site or [],
                                 country_codes=country or [], region_codes=region or [],
                                 event_types=kind or [])


def _line(n: pb.Notification, korean: bool) -> str:
    when = n.event_time.ToDatetime().strftime("%Y-%m-%d %H:%M:%S")
    kind = n.event_type.rsplit(".", 1)[-1]
    return f"{n.cursor:>8}  {when}  {kind:<18} {n.text_ko if korean else n.text_en}"


def tail(study: Studies = None, site: Sites = None, country: Countries = None,
         region: Regions = None, kind: Types = None,
         cursor: Annotated[str, typer.Option(
             help="Resume after this cursor (0: from the beginning); default: new only")] = "",
         subscription: Annotated[str, typer.Option(
             help="Follow a stream subscription (subscriptions/{id}) instead of a filter")] = "",
         korean: Annotated[bool, typer.Option("--ko", help="Korean texts")] = False,
         as_json: Annotated[bool, typer.Option("--json", help="One JSON object a line")] = False,
         token: Token = None) -> None:
    """Follow notifications live; reconnects by itself, resuming after the last cursor."""
    settings = Settings()
    metadata = bearer(settings, token)
    where = _filter(study, site, country, region, kind)
    wait = 0.5
    while True:
        try:
            with channel(settings, ServiceName.NOTIFICATIONS) as ch:
                stub = notifications_pb2_grpc.NotificationsStub(ch)
                for n in stub.StreamNotifications(pb.StreamNotificationsRequest(
                        subscription=subscription, filter=where, cursor=cursor),
                        metadata=metadata):
                    cursor = n.cursor
                    wait = 0.5
                    typer.echo(json.dumps(json_format.MessageToDict(n), ensure_ascii=False)
                               if as_json else _line(n, korean))
        except KeyboardInterrupt:
            typer.echo(f"stopped; resume with --cursor {cursor or '<none yet>'}", err=True)
            return
        except grpc.RpcError as error:
            if error.code() not in (grpc.StatusCode.UNAVAILABLE,
                                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                                    grpc.StatusCode.DEADLINE_EXCEEDED):
                typer.echo(explain(error), err=True)
                raise typer.Exit(1) from error
            typer.echo(f"stream interrupted ({error.code().name}); "
                       f"resuming after cursor {cursor or '-'} in {wait:.1f}s", err=True)
            time.sleep(wait)
            wait = min(wait * 2, MAX_RECONNECT_S)


def _stub(ch: grpc.Channel) -> notifications_pb2_grpc.NotificationsStub:
    return notifications_pb2_grpc.NotificationsStub(ch)


@subscriptions.command("list")
def list_subscriptions(token: Token = None) -> None:
    """List your subscriptions (every one, for admin)."""
    settings = Settings()
    with reporting_errors(), channel(settings, ServiceName.NOTIFICATIONS) as ch:
        stub = _stub(ch)
        page_token = ""
        while True:
            page = stub.ListSubscriptions(pb.ListSubscriptionsRequest(
                page_size=200, page_token=page_token), metadata=bearer(settings, token))
            for s in page.subscriptions:
                where = json_format.MessageToDict(s.filter)
                target = s.channel.webhook.url if s.channel.HasField("webhook") else "stream"
                typer.echo(f"{s.name}  {target}  {json.dumps(where)}  {s.display_name}")
            page_token = page.next_page_token
            if not page_token:
                return


@subscriptions.command("create")
def create_subscription(
        study: Studies = None, site: Sites = None, country: Countries = None,
        region: Regions = None, kind: Types = None,
        webhook_url: Annotated[str, typer.Option(help="POST notifications here")] = "",
        secret: Annotated[str, typer.Option(
            help="Webhook signing secret (16+ chars)", envvar="SITENET_WEBHOOK_SECRET")] = "",
        name: Annotated[str, typer.Option(help="Display name")] = "",
        subscription_id: Annotated[str, typer.Option("--id", help="Id; generated if empty")] = "",
        token: Token = None) -> None:
    """Create a stream subscription, or a webhook one with --webhook-url and --secret."""
    settings = Settings()
    chan = (pb.Channel(webhook=pb.WebhookChannel(url=webhook_url, secret=secret))
            if webhook_url else pb.Channel(stream=pb.StreamChannel()))
    with reporting_errors(), channel(settings, ServiceName.NOTIFICATIONS) as ch:
        created = _stub(ch).CreateSubscription(pb.CreateSubscriptionRequest(
            subscription=pb.Subscription(
                filter=_filter(study, site, country, region, kind), channel=chan,
                display_name=name),
            subscription_id=subscription_id), metadata=bearer(settings, token))
    typer.echo(created.name)


@subscriptions.command("delete")
def delete_subscription(name: Annotated[str, typer.Argument(help="subscriptions/{id}")],
                        token: Token = None) -> None:
    """Delete a subscription."""
    settings = Settings()
    with reporting_errors(), channel(settings, ServiceName.NOTIFICATIONS) as ch:
        _stub(ch).DeleteSubscription(pb.DeleteSubscriptionRequest(name=name),
                                               metadata=bearer(settings, token))
    typer.echo(f"deleted {name}")
