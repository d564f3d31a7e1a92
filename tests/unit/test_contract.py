"""The contract and what is made from it cannot drift: generated code, the README's catalog."""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

from services.common.topics import CATALOG, catalog_markdown

ROOT = Path(__file__).resolve().parents[2]
GENERATED = ROOT / "services" / "common" / "generated"


def test_generated_code_is_what_the_protos_produce(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(ROOT / "scripts" / "generate_protos.py"), str(tmp_path)],
                   check=True, capture_output=True)
    fresh = sorted(p.relative_to(tmp_path) for p in (tmp_path / "sitenet").rglob("*")
                   if p.is_file() and "__pycache__" not in p.parts)
    committed = sorted(p.relative_to(GENERATED) for p in (GENERATED / "sitenet").rglob("*")
                       if p.is_file() and "__pycache__" not in p.parts)
    assert fresh == committed, "run `make proto`: generated files differ from proto/"
    stale = [str(p) for p in fresh if not filecmp.cmp(tmp_path / p, GENERATED / p, shallow=False)]
    assert not stale, f"run `make proto`: stale generated code {stale}"


def test_readme_event_catalog_is_the_declared_one() -> None:
    readme = (ROOT / "README.md").read_text()
    assert catalog_markdown() in readme, "run `make catalog` and paste it into the README"


def test_every_event_type_in_the_catalog_is_a_message_of_the_events_package() -> None:
    from sitenet.events.v1 import events_pb2

    declared = {t for spec in CATALOG for t in spec.event_types}
    messages = {f"sitenet.events.v1.{name}" for name in events_pb2.DESCRIPTOR.message_types_by_name}
    assert declared <= messages
    assert len({spec.name for spec in CATALOG}) == len(CATALOG)
    for spec in CATALOG:
        assert spec.name.startswith("sitenet.") and spec.name.endswith(".v1")


def test_readme_api_table_names_every_rpc() -> None:
    from sitenet.notifications.v1 import notifications_pb2
    from sitenet.registry.v1 import registry_pb2
    from sitenet.startup.v1 import startup_pb2

    rows = {line.split("|")[1].strip(" `"): line
            for line in (ROOT / "README.md").read_text().splitlines()
            if line.startswith("| `sitenet.") and "`, `" in line}
    for module in (registry_pb2, startup_pb2, notifications_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            row = rows.get(service.full_name, "")
            missing = [m.name for m in service.methods if f"`{m.name}`" not in row]
            assert not missing, f"README's API table lacks {service.full_name}: {missing}"
