"""Pure rules of notifications: signatures receivers can verify, backoff bounds,
the filter in Python agreeing with its meaning, alert texts in both languages, and
"overdue" by the date at the site, as the tracker counts it."""

from __future__ import annotations

import datetime as dt
import ipaddress
import random
import zoneinfo

import pytest

from services.common.geography import date_at
from services.notifications.domain.messages import render_alert
from services.notifications.domain.model import (
    Alert,
    AlertKind,
    Notification,
    NotificationFilter,
    StudySiteInfo,
    TrackedMilestone,
    overdue_only_before,
)
from services.notifications.domain.webhooks import (
    WebhookNetworks,
    backoff_s,
    signature,
    verify,
)
from services.startup_tracker.domain.model import SiteReplica
from services.startup_tracker.service_layer.handlers import StartupTrackerService

SECRET = "whsec-0123456789abcdef"


def test_signature_is_hmac_over_timestamp_and_body() -> None:
    import hashlib
    import hmac

    body = b'{"a":1}'
    header = signature(SECRET, 1_700_000_000, body)
    expected = hmac.new(SECRET.encode(), b"1700000000." + body, hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"
    assert verify(SECRET, header, body, now=1_700_000_100)
    assert not verify(SECRET, header, body, now=1_700_000_000 + 301)  # too old: replay
    assert not verify(SECRET, header, b'{"a":2}', now=1_700_000_000)
    assert not verify("other-secret-0123456789", header, body, now=1_700_000_000)
    assert not verify(SECRET, "garbage", body, now=1_700_000_000)


def test_backoff_doubles_with_jitter_and_a_cap() -> None:
    rng = random.Random(7)
    for failed in range(1, 12):
        ceiling = min(60.0, 1.0 * 2 ** (failed - 1))
        for _ in range(50):
            wait = backoff_s(failed, 1.0, 60.0, rng)
            assert ceiling / 2 <= wait <= ceiling
    waits = {round(backoff_s(3, 1.0, 60.0, rng), 6) for _ in range(20)}
    assert len(waits) > 10  # jittered, not in lockstep


def _n(**fields: str) -> Notification:
    values = {"study": "studies/s1", "site": "sites/a", "country_code": "KR",
              "region_code": "KR-11", "event_type": "sitenet.events.v1.MilestoneRecorded",
              **fields}
    return Notification(event_id="e", subject="x", event_time=dt.datetime.now(dt.UTC),
                        text_en="", text_ko="", payload=b"", **values)  # type: ignore[arg-type]


def test_filter_lists_and_together_values_or() -> None:
    assert NotificationFilter().matches(_n())
    f = NotificationFilter(studies=("studies/s1", "studies/s2"), country_codes=("kr",))
    assert f.matches(_n()) and f.matches(_n(study="studies/s2"))
    assert not f.matches(_n(study="studies/s3"))
    assert not f.matches(_n(country_code="JP"))
    assert not NotificationFilter(event_types=("sitenet.events.v1.SiteUpdated",)).matches(_n())
    assert NotificationFilter(region_codes=("KR-11",), sites=("sites/a",)).matches(_n())


def test_alert_texts_name_the_site_milestone_and_date_in_both_languages() -> None:
    where = StudySiteInfo(name="studies/s1/sites/snuh", study="studies/s1", site="sites/snuh",
                          protocol_number="ONC-301", site_name_en="Seoul National University "
                          "Hospital", site_name_ko="서울대학교병원")
    now = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    for kind in AlertKind:
        en, ko = render_alert(Alert(kind, "k", where, now, "irb-approved", "IRB approved",
                                    "IRB 승인", dt.date(2026, 10, 1)))
        assert "ONC-301" in en and "ONC-301" in ko
        assert "Seoul National University Hospital" in en and "서울대학교병원" in ko
    en, ko = render_alert(Alert(AlertKind.MILESTONE_OVERDUE, "k", where, now, "irb-approved",
                                "IRB approved", "IRB 승인", dt.date(2026, 10, 1)))
    assert "IRB approved" in en and "2026-10-01" in en and "IRB 승인" in ko


@pytest.mark.parametrize("address", [
    "169.254.169.254",  # cloud metadata
    "10.0.0.5", "172.16.3.4", "192.168.1.1",  # private
    "100.64.0.1",  # carrier-grade NAT
    "127.0.0.1", "0.0.0.0", "224.0.0.1", "255.255.255.255",
    "::1", "fe80::1", "fc00::1", "::ffff:10.0.0.5", "::ffff:127.0.0.1",
])
def test_webhooks_do_not_reach_non_public_addresses(address: str) -> None:
    assert not WebhookNetworks().permits(ipaddress.ip_address(address))


def test_webhooks_reach_public_addresses_and_the_networks_an_operator_allows() -> None:
    none = WebhookNetworks()
    assert none.permits(ipaddress.ip_address("8.8.8.8"))
    assert none.permits(ipaddress.ip_address("2001:4860:4860::8888"))
    allowed = WebhookNetworks.parse(" 10.20.0.0/16 , ::1/128")
    assert allowed.permits(ipaddress.ip_address("10.20.7.1"))
    assert allowed.permits(ipaddress.ip_address("::ffff:10.20.7.1"))
    assert allowed.permits(ipaddress.ip_address("::1"))
    assert not allowed.permits(ipaddress.ip_address("10.21.0.1"))
    assert not allowed.permits(ipaddress.ip_address("127.0.0.1"))
    with pytest.raises(ValueError):
        WebhookNetworks.parse("10.0.0.0/33")


def test_a_webhook_url_naming_a_refused_address_is_refused_before_any_lookup() -> None:
    none = WebhookNetworks()
    for url in ("https://169.254.169.254/latest/meta-data", "https://[::1]:8443/h",
                "http://127.0.0.1:8080/hook", "http://localhost:8080/hook",
                "https://LOCALHOST./x", "https://a.localhost/x", "https://10.1.2.3/x"):
        assert none.refusal(url), url
    assert none.refusal("https://hooks.example.com/sitenet") is None  # checked at connect
    assert none.refusal("https://8.8.8.8/x") is None
    loopback = WebhookNetworks.parse("127.0.0.0/8,::1/128")
    assert loopback.refusal("http://localhost:8080/hook") is None
    assert loopback.refusal("https://169.254.169.254/") is not None


def _due(time_zone: str, due: dt.date = dt.date(2026, 3, 10)) -> TrackedMilestone:
    where = StudySiteInfo(name="studies/s/sites/x", study="studies/s", site="sites/x",
                          time_zone=time_zone)
    return TrackedMilestone(where, "cda-executed", "CDA executed", "CDA", due)


@pytest.mark.parametrize(("time_zone", "last_on_time", "first_overdue"), [
    ("Asia/Seoul", "2026-03-10T14:59:59Z", "2026-03-10T15:00:00Z"),  # UTC+9
    ("America/Los_Angeles", "2026-03-11T06:59:59Z", "2026-03-11T07:00:00Z"),  # PDT, UTC-7
    ("Europe/London", "2026-03-10T23:59:59Z", "2026-03-11T00:00:00Z"),
    ("", "2026-03-10T23:59:59Z", "2026-03-11T00:00:00Z"),  # not told: UTC
    ("Mars/Olympus_Mons", "2026-03-10T23:59:59Z", "2026-03-11T00:00:00Z"),  # unknown: UTC
    ("../etc/passwd", "2026-03-10T23:59:59Z", "2026-03-11T00:00:00Z"),
    ("America", "2026-03-10T23:59:59Z", "2026-03-11T00:00:00Z"),  # a directory
    ("Asia/" + "x" * 300, "2026-03-10T23:59:59Z", "2026-03-11T00:00:00Z"),
])
def test_a_milestone_is_overdue_from_midnight_after_its_due_date_at_the_site(
        time_zone: str, last_on_time: str, first_overdue: str) -> None:
    milestone = _due(time_zone)
    assert not milestone.overdue(dt.datetime.fromisoformat(last_on_time))
    assert milestone.overdue(dt.datetime.fromisoformat(first_overdue))
    assert not _due(time_zone, due=None).overdue(  # type: ignore[arg-type]
        dt.datetime.fromisoformat(first_overdue))


def test_overdue_agrees_with_the_tracker_in_every_zone_around_every_midnight() -> None:
    """For each zone this host knows, at instants around local midnight (and around a DST
    change): overdue here exactly when the tracker counts days overdue; and never for a
    due date the SQL bound passes over."""
    instants = [dt.datetime(2026, 3, 8, tzinfo=dt.UTC) + dt.timedelta(minutes=30 * i + s)
                for i in range(48) for s in (-1, 0)]  # US DST starts
    instants += [dt.datetime(2026, 10, 25, h, m, tzinfo=dt.UTC)
                 for h in range(24) for m in (0, 59)]  # Europe's DST ends
    clock = [instants[0]]
    tracker = StartupTrackerService(lambda: None, clock=lambda: clock[0])  # type: ignore
    checked = 0
    for zone in sorted(zoneinfo.available_timezones()):
        site = SiteReplica("x", "", "", "KR", "KR-11", "ACTIVE", zone, 1)
        for now in instants:
            clock[0] = now
            today = tracker.today_at(site)
            assert date_at(now, zone) == today
            for due in (today - dt.timedelta(days=1), today):
                assert _due(zone, due).overdue(now) is (due < today)
            latest_overdue = today - dt.timedelta(days=1)  # due yesterday at the site
            assert latest_overdue < overdue_only_before(now)
            checked += 1
    assert checked > 50_000
