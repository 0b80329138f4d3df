"""The offline side never loads the web stack: training imports the model core and the
store, not app/, FastAPI or Starlette."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = ("app", "fastapi", "starlette")


def test_training_imports_no_web_stack() -> None:
    modules = sorted(
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for package in ("training", "model_core")
        for p in (ROOT / package).rglob("*.py")
        if p.stem != "__main__"
    )
    assert len(modules) > 15
    probe = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    loaded = json.loads(
        subprocess.run(
            [sys.executable, "-c", probe],
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    offenders = [m for m in loaded if m.split(".")[0] in FORBIDDEN]
    assert offenders == []
    # The core is what training runs instead.
    assert "model_core.runtime" in loaded
    assert "training.pipeline.calibration" in loaded
