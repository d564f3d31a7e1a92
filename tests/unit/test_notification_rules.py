"""Pure rules of notifications: signatures receivers can verify, backoff bounds,
the filter in Python agreeing with its meaning, alert texts in both languages."""

from __future__ import annotations

import datetime as dt
import ipaddress
import random

import pytest

from services.notifications.domain.messages import render_alert
from services.notifications.domain.model import (
    Alert,
    AlertKind,
    Notification,
    NotificationFilter,
    StudySiteInfo,
)
from services.notifications.domain.webhooks import (
    WebhookNetworks,
    backoff_s,
    signature,
    verify,
)

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
