"""A sample of the Korean clinical-trial site network (public facts only).

`kr_sites.jsonl` holds one JSON object per line: `site_id` plus the fields of
`sitenet.registry.v1.Site` in proto3 JSON form. Names, cities and regions are the
institutions' public information; therapeutic areas and capabilities are the
typical ones of a tertiary or regional hospital, kept conservative. MFDS
designation numbers and dates are left empty on purpose (not invented).
"""

from __future__ import annotations

from pathlib import Path

KR_SITES = Path(__file__).with_name("kr_sites.jsonl")


def kr_sites_path() -> Path:
    """Path of the sample network file (read it as UTF-8 JSON lines)."""
    return KR_SITES
