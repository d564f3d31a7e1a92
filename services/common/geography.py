"""Countries (ISO 3166-1 alpha-2) and regions (ISO 3166-2) sitenet knows, and the date
at a site."""

from __future__ import annotations

import datetime as dt
import re
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_ALPHA_2 = """
AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS
BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE
EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM
HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC
LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA
NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW
SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO
TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW
"""
COUNTRY_CODES = frozenset(_ALPHA_2.split())

# ISO 3166-2:KR first-level divisions. Gangwon (KR-42 -> KR-51, 2023) and Jeonbuk
# (KR-45 -> KR-52, 2024) became special self-governing provinces; both codes are accepted.
KR_REGIONS: dict[str, tuple[str, str]] = {
    "KR-11": ("Seoul", "서울특별시"),
    "KR-26": ("Busan", "부산광역시"),
    "KR-27": ("Daegu", "대구광역시"),
    "KR-28": ("Incheon", "인천광역시"),
    "KR-29": ("Gwangju", "광주광역시"),
    "KR-30": ("Daejeon", "대전광역시"),
    "KR-31": ("Ulsan", "울산광역시"),
    "KR-50": ("Sejong", "세종특별자치시"),
    "KR-41": ("Gyeonggi", "경기도"),
    "KR-51": ("Gangwon", "강원특별자치도"),
    "KR-42": ("Gangwon", "강원특별자치도"),
    "KR-43": ("Chungbuk", "충청북도"),
    "KR-44": ("Chungnam", "충청남도"),
    "KR-52": ("Jeonbuk", "전북특별자치도"),
    "KR-45": ("Jeonbuk", "전북특별자치도"),
    "KR-46": ("Jeonnam", "전라남도"),
    "KR-47": ("Gyeongbuk", "경상북도"),
    "KR-48": ("Gyeongnam", "경상남도"),
    "KR-49": ("Jeju", "제주특별자치도"),
}

DEFAULT_TIME_ZONES = {"KR": "Asia/Seoul", "JP": "Asia/Tokyo", "TW": "Asia/Taipei",
                      "SG": "Asia/Singapore", "CN": "Asia/Shanghai", "AU": "Australia/Sydney",
                      "GB": "Europe/London", "DE": "Europe/Berlin", "FR": "Europe/Paris"}

_SUBDIVISION = re.compile(r"^([A-Z]{2})-[A-Z0-9]{1,3}$")


def region_problem(country_code: str, region_code: str) -> str | None:
    """Why `region_code` is not a region of `country_code`, or None if it is."""
    match = _SUBDIVISION.match(region_code)
    if not match:
        return f"{region_code!r} is not an ISO 3166-2 code such as 'KR-11'"
    if match.group(1) != country_code:
        return f"{region_code!r} is not in country {country_code!r}"
    if country_code == "KR" and region_code not in KR_REGIONS:
        return f"{region_code!r} is not one of the 17 Korean first-level divisions"
    return None


def date_at(now: dt.datetime, time_zone: str) -> dt.date:
    """The date at a site at the instant `now`, in its IANA zone: dates in sitenet are the
    site's calendar dates (a milestone is overdue from midnight there). UTC when the zone
    is empty (events from before sites carried one) or unknown to this host's time zone
    database (never an error: one bad row must not stop the alerts of all the others)."""
    try:
        zone: dt.tzinfo = ZoneInfo(time_zone) if time_zone else dt.UTC
    except (ZoneInfoNotFoundError, ValueError, OSError):  # e.g. "Asia/", "America"
        zone = dt.UTC
    return now.astimezone(zone).date()
