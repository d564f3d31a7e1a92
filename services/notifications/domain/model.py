"""Notifications, subscriptions and their filters. Pure: stdlib and pydantic only."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from services.common.geography import date_at
from services.common.identity import Principal, Role

NAME = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
MAX_FILTER_VALUES = 100


def _names(values: tuple[str, ...], collection: str) -> tuple[str, ...]:
    out = []
    for value in values:
        head, _, tail = value.partition("/")
        if head != collection or not NAME.match(tail):
            raise ValueError(f"{value!r} is not a resource name like '{collection}/<id>'")
        out.append(value)
    return tuple(dict.fromkeys(out))


class NotificationFilter(BaseModel):
    """Empty lists match everything the reader may see; lists AND together, values OR."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    studies: tuple[str, ...] = Field(default=(), max_length=MAX_FILTER_VALUES)
    sites: tuple[str, ...] = Field(default=(), max_length=MAX_FILTER_VALUES)
    country_codes: tuple[Annotated[str, StringConstraints(to_upper=True,
                                                          pattern=r"^[A-Za-z]{2}$")], ...] = \
        Field(default=(), max_length=MAX_FILTER_VALUES)
    region_codes: tuple[Annotated[str, StringConstraints(
        to_upper=True, pattern=r"^[A-Za-z]{2}-[A-Za-z0-9]{1,3}$")], ...] = \
        Field(default=(), max_length=MAX_FILTER_VALUES)
    event_types: tuple[Annotated[str, StringConstraints(
        pattern=r"^[a-z][a-z0-9_.]*\.[A-Z][A-Za-z0-9]*$", max_length=200)], ...] = \
        Field(default=(), max_length=MAX_FILTER_VALUES)

    def matches(self, n: Notification) -> bool:
        """The same rule as the SQL filter of the log, for one notification in hand."""
        return all((
            not self.studies or n.study in self.studies,
            not self.sites or n.site in self.sites,
            not self.country_codes or n.country_code in self.country_codes,
            not self.region_codes or n.region_code in self.region_codes,
            not self.event_types or n.event_type in self.event_types,
        ))

    @field_validator("studies")
    @classmethod
    def _studies(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _names(value, "studies")

    @field_validator("sites")
    @classmethod
    def _sites(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _names(value, "sites")


class WebhookTarget(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    url: Annotated[str, StringConstraints(max_length=2000,
                                          pattern=r"^(https://|http://(127\.0\.0\.1|localhost|\[::1\])[:/])")]
    secret: Annotated[str, StringConstraints(min_length=16, max_length=256)]


@dataclass(frozen=True)
class Subscription:
    subscription_id: str
    owner: Principal
    filter: NotificationFilter
    channel: Literal["stream", "webhook"]
    webhook: WebhookTarget | None
    display_name: str
    start_cursor: int  # notifications after this position belong to the subscription
    create_time: dt.datetime

    @property
    def name(self) -> str:
        return f"subscriptions/{self.subscription_id}"

    def owned_by(self, principal: Principal) -> bool:
        return principal.is_admin or principal.subject == self.owner.subject


@dataclass(frozen=True)
class Notification:
    """One event as the notification log keeps it; `cursor` is its position in the log."""

    event_id: str
    event_type: str
    subject: str
    event_time: dt.datetime
    text_en: str
    text_ko: str
    payload: bytes
    study: str = ""
    site: str = ""
    sponsor_org: str = ""
    country_code: str = ""
    region_code: str = ""
    cursor: int = 0

    def visible_to(self, principal: Principal) -> bool:
        if principal.role in (Role.ADMIN, Role.OPS):
            return True
        if principal.role is Role.SPONSOR:
            return not self.sponsor_org or self.sponsor_org == principal.org
        return bool(self.site) and self.site.removeprefix("sites/") in principal.sites


@dataclass(frozen=True)
class EventFacts:
    """What an event says, in plain values, for routing and for the human text."""

    event_type: str
    study: str = ""
    site: str = ""
    sponsor_org: str = ""
    country_code: str = ""
    region_code: str = ""
    protocol_number: str = ""
    site_name_en: str = ""
    site_name_ko: str = ""
    milestone_en: str = ""
    milestone_ko: str = ""
    status: str = ""
    startup_day: int = 0
    milestone: str = ""  # key, e.g. `irb-approved`
    due_date: dt.date | None = None  # the milestone's target: due_date, else planned_date
    before_status: str = ""
    study_site: str = ""
    details: dict[str, str] = field(default_factory=dict)
    time_zone: str = ""  # the site's IANA zone; empty when the event does not say


ALERT_TYPE = "sitenet.notifications.v1.Alert"


class AlertKind(StrEnum):
    MILESTONE_OVERDUE = "MILESTONE_OVERDUE"
    MILESTONE_OVERDUE_CLEARED = "MILESTONE_OVERDUE_CLEARED"
    IRB_REJECTED = "IRB_REJECTED"
    SITE_SUSPENDED = "SITE_SUSPENDED"
    STUDY_SITE_BLOCKED = "STUDY_SITE_BLOCKED"


@dataclass(frozen=True)
class StudySiteInfo:
    """What the service keeps of a study-site, from the tracker's events, to raise alerts."""

    name: str
    study: str
    site: str
    sponsor_org: str = ""
    country_code: str = ""
    region_code: str = ""
    protocol_number: str = ""
    site_name_en: str = ""
    site_name_ko: str = ""
    time_zone: str = ""  # IANA zone of the site; empty: not known (UTC)


def overdue_only_before(now: dt.datetime) -> dt.date:
    """Milestones due before this date may be overdue at `now` at some site; one due on it
    or later is overdue nowhere, as no place is a day or more ahead of UTC (+14:00 at most)."""
    return (now.astimezone(dt.UTC) + dt.timedelta(days=1)).date()


@dataclass(frozen=True)
class Alert:
    kind: AlertKind
    key: str  # what makes it unique: the same key never raises twice
    where: StudySiteInfo
    raise_time: dt.datetime
    milestone: str = ""
    milestone_en: str = ""
    milestone_ko: str = ""
    due_date: dt.date | None = None
    cause_event_id: str = ""
    detail: str = ""

    @property
    def subject(self) -> str:
        base = self.where.name
        return f"{base}/milestones/{self.milestone}" if self.milestone else base


class DeliveryState(StrEnum):
    PENDING = "PENDING"
    DELIVERED = "DELIVERED"
    DEAD_LETTER = "DEAD_LETTER"


@dataclass(frozen=True)
class DeliveryAttempt:
    attempt: int
    attempt_time: dt.datetime
    http_status: int  # 0 when no answer came
    outcome: str  # OK, HTTP_ERROR, TIMEOUT, CONNECTION_ERROR
    error: str
    duration_ms: int

    @property
    def ok(self) -> bool:
        return self.outcome == "OK"


@dataclass(frozen=True)
class Delivery:
    delivery_id: int
    subscription_id: str
    cursor: int
    event_id: str
    event_type: str
    state: DeliveryState
    next_attempt_time: dt.datetime
    attempts_made: int = 0
    attempts: tuple[DeliveryAttempt, ...] = ()

    @property
    def name(self) -> str:
        return f"subscriptions/{self.subscription_id}/deliveries/{self.delivery_id}"


@dataclass(frozen=True)
class DueDelivery:
    """A delivery whose next attempt is due, with what it takes to make it."""

    delivery: Delivery
    subscription_name: str
    target: WebhookTarget
    notification: Notification


@dataclass(frozen=True)
class TrackedMilestone:
    where: StudySiteInfo
    milestone: str
    name_en: str
    name_ko: str
    due_date: dt.date | None

    def overdue(self, now: dt.datetime) -> bool:
        """Past its due date at the site: the site's date at `now` is after it (the
        tracker's rule, so both say "overdue" from the same instant)."""
        return self.due_date is not None and self.due_date < date_at(now,
                                                                     self.where.time_zone)
