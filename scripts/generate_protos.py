"""Regenerate the Python code for proto/ into services/common/generated/.

Run with `make proto`. `tests/unit/test_generated_code.py` fails when the
committed code differs from what this produces, so the contract and the code
cannot drift.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
OUT = ROOT / "services" / "common" / "generated"


def proto_files() -> list[Path]:
    return sorted((PROTO_ROOT / "sitenet").rglob("*.proto"))


def generate(out: Path) -> None:
    """Generate messages, gRPC stubs and type stubs for every sitenet proto into `out`."""
    well_known = Path(protoc.__file__).parent / "_proto"
    # The mypy plugins are console scripts next to this interpreter.
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--mypy_out={out}",
        f"--mypy_grpc_out={out}",
        *[str(p.relative_to(PROTO_ROOT)) for p in proto_files()],
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    # Packages for the generated tree; the google.* modules come from googleapis-common-protos.
    for directory in [out / "sitenet", *(d for d in (out / "sitenet").rglob("*") if d.is_dir())]:
        (directory / "__init__.py").touch()
    (out / "sitenet" / "py.typed").touch()


def main() -> int:
    target = OUT
    if len(sys.argv) > 1:
        target = Path(sys.argv[1])
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        shutil.rmtree(target / "sitenet", ignore_errors=True)
        target.mkdir(parents=True, exist_ok=True)
        shutil.copytree(Path(tmp) / "sitenet", target / "sitenet")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
