"""The CLI and `sitenet demo` against a running system, as a newcomer would use them."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from services.cli import demo
from services.cli.main import app
from sitenet.startup.v1 import startup_pb2
from tests.support.system import TEST_SECRET, RunningSystem


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_demo_then_cli_commands(system: RunningSystem, monkeypatch: pytest.MonkeyPatch,
                                      tmp_path: Path) -> None:
    monkeypatch.setattr(demo, "SAMPLE", tmp_path / "absent.jsonl")  # the built-in list
    monkeypatch.setenv("SITENET_REGISTRY_PORT", str(system.registry_app.server.port))
    monkeypatch.setenv("SITENET_TRACKER_PORT", str(system.tracker_app.server.port))
    monkeypatch.setenv("SITENET_JWT_SECRET", TEST_SECRET)
    monkeypatch.setenv("COLUMNS", "200")
    runner = CliRunner()

    def run(*args: str) -> tuple[int, str]:
        result = runner.invoke(app, list(args))
        return result.exit_code, result.output

    code, out = await asyncio.to_thread(run, "demo")
    assert code == 0, out
    assert "Activation outlook" in out and "snuh" in out and "utokyo" in out
    assert "Essential documents" in out and "icf-korean" in out  # the greenlight waits
    studies = await system.tracker.ListStudies(startup_pb2.ListStudiesRequest(),
                                               metadata=system.admin)
    (study,) = studies.studies
    study_id = study.name.removeprefix("studies/")
    summary = await system.tracker.GetActivationSummary(
        startup_pb2.GetActivationSummaryRequest(name=study.name), metadata=system.admin)
    assert summary.total.site_count == 6
    assert summary.total.activation.activated == 3 and summary.total.sites_overdue >= 1
    assert sorted(g.scope for g in summary.by_country) == ["JP", "KR"]

    code, out = await asyncio.to_thread(run, "study-sites", "list", study_id, "--filter",
                                        'country_code = "JP"')
    assert code == 0 and "utokyo" in out and "snuh" not in out, out
    code, out = await asyncio.to_thread(run, "milestone", "record", study_id, "snuh",
                                        "site-selected", "--actual", "2020-01-01")
    assert code == 1 and "INVALID_ARGUMENT" in out and "reason" in out, out
    code, out = await asyncio.to_thread(run, "milestone", "record", study_id, "cnuh",
                                        "site-activated", "--actual", "2020-01-01")
    assert code == 1 and "FAILED_PRECONDITION" in out, out
    code, out = await asyncio.to_thread(run, "milestone", "history", study_id, "snuh")
    assert code == 0 and "site-selected" in out, out
    code, out = await asyncio.to_thread(run, "summary", study_id, "--due-within", "14")
    assert code == 0 and "within 14 days" in out and "Cycle times" in out, out

    # Documents: the demo's third site waits for its rejected Korean consent form.
    code, out = await asyncio.to_thread(run, "documents", "list", study_id, "pnuh")
    assert code == 0 and "icf-korean" in out and "REJECTED" in out, out
    assert "documents missing" in out and "05.02.02" in out, out
    code, out = await asyncio.to_thread(run, "documents", "list", study_id, "snuh")
    assert code == 0 and "all required documents approved" in out, out
    code, out = await asyncio.to_thread(run, "documents", "record", study_id, "pnuh",
                                        "icf-korean", "--status", "approved")
    assert code == 1 and "FAILED_PRECONDITION" in out, out
    code, out = await asyncio.to_thread(
        run, "documents", "record", study_id, "pnuh", "icf-korean", "--version", "2.0",
        "--uri", "https://edms.example/icf/2.0", "--hash", "sha256:" + "1" * 64)
    assert code == 0 and "RECEIVED version 2.0" in out, out
    code, out = await asyncio.to_thread(run, "milestone", "record", study_id, "pnuh",
                                        "essential-documents-complete", "--actual",
                                        "2020-01-01")
    assert code == 1 and "FAILED_PRECONDITION" in out and "derived" in out, out
    code, out = await asyncio.to_thread(run, "documents", "summary", study_id)
    assert code == 0 and "Outstanding by site" in out and "pnuh" in out, out


def test_demo_reads_the_sample_network_when_present(monkeypatch: pytest.MonkeyPatch,
                                                    tmp_path: Path) -> None:
    sample = tmp_path / "kr_sites.jsonl"
    rows = [{"site_id": "kuh", "displayNameEn": "Korea University Anam Hospital",
             "countryCode": "KR", "regionCode": "KR-11"},
            {"site_id": "x", "displayNameEn": "Elsewhere", "countryCode": "US"}]
    sample.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    monkeypatch.setattr(demo, "SAMPLE", sample)
    assert [s["site_id"] for s in demo.load_sites()] == ["kuh", "utokyo", "ncc-east"]
