"""What a model card is made of: an entry's manifest (parsed by the store's schema), the
reports training left in its `reports/` folder (read defensively: older entries lack some,
and their shapes changed over time), and the Markdown pieces every section of the card
uses.

Nothing here imports TensorFlow, so a card renders wherever the manifest parses. The file
names are the ones the writers use (`model_core.store.manifest.REPORTS_DIR`,
`training.pipeline.calibration.CV_REPORT_FILE`, the studies' `write_text` calls); they are
repeated here because importing the writers would load TensorFlow, and a test checks that
they agree."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from model_core.store.entries import read_manifest
from model_core.store.manifest import REPORTS_DIR, Manifest
from training.pipeline.config import TrainConfig

CV_REPORT_FILE = "cv_report.json"
SEED_REPORT_FILE = "seed_report.json"
EXPLANATIONS_FILE = "explanations.json"
LOCALISER_FILE = "localiser.json"
OOD_CHECK_FILE = "ood_check.json"
REVIEW_FILE = "review.json"
HISTORY_FILE = "history.json"
# The reference maps of training.studies.explanation_quality.BASELINES: not methods.
EXPLANATION_BASELINES = ("random", "centre", "cell box")
SETTINGS = {f.name for f in fields(TrainConfig)}


@dataclass
class EntryFacts:
    """One entry as its card sees it: the manifest and whichever reports it holds."""

    directory: Path
    manifest: Manifest
    reports: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Report file name -> its JSON object, for every readable JSON report."""
    files: set[str] = field(default_factory=set)
    """Names of every file in reports/ (pictures included)."""
    unreadable: list[str] = field(default_factory=list)

    def report(self, name: str) -> dict[str, Any] | None:
        return self.reports.get(name)

    def has_file(self, name: str) -> bool:
        return name in self.files

    @property
    def record(self) -> dict[str, Any]:
        return self.manifest.training

    def settings(self) -> TrainConfig | None:
        """The training config of the record, or None where the record does not parse."""
        try:
            return TrainConfig.from_record(self.record)
        except (TypeError, ValueError):
            return None


def read_entry(directory: Path) -> EntryFacts:
    """The manifest (raises StoreError when it is missing or invalid) and every JSON report
    that parses as an object; the others are listed as unreadable."""
    directory = Path(directory)
    facts = EntryFacts(directory=directory, manifest=read_manifest(directory))
    reports = directory / REPORTS_DIR
    if not reports.is_dir():
        return facts
    for path in sorted(reports.iterdir()):
        if not path.is_file():
            continue
        facts.files.add(path.name)
        if path.suffix == ".json":
            try:
                loaded = json.loads(path.read_text())
            except (OSError, ValueError):
                loaded = None
            if isinstance(loaded, dict):
                facts.reports[path.name] = loaded
            else:
                facts.unreadable.append(path.name)
    return facts


NOT_MEASURED = "Not measured for this entry"
SPLIT_LABELS = {"test": "TEST", "test_simple": "TEST_SIMPLE", "validation": "validation"}


def not_measured(why: str) -> list[str]:
    return [f"{NOT_MEASURED}: {why}."]


def number(value: Any, digits: int = 3) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "n/a"
    return f"{value:.{digits}f}"


def table(header: list[str], rows: list[list[Any]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(str(cell) for cell in row) + " |" for row in rows),
    ]


def report_link(name: str) -> str:
    return f"[{REPORTS_DIR}/{name}]({REPORTS_DIR}/{name})"


def split_keys(metrics: dict[str, Any]) -> list[str]:
    """Evaluated splits, TEST first; `explanations` and other non-split keys left out."""
    scored = [k for k, v in metrics.items() if isinstance(v, dict) and "accuracy" in v]
    return sorted(scored, key=lambda k: list(SPLIT_LABELS).index(k) if k in SPLIT_LABELS else 9)


def split_label(key: str) -> str:
    return SPLIT_LABELS.get(key, key)
