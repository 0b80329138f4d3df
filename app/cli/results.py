"""What `wbc-explain score` learns of each file, and the run's summary."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class FileResult:
    """One file's answer (`prediction`, as /predict gives it) or why it has none."""

    path: Path
    prediction: dict | None = None
    error: str | None = None
    overlays: dict[int, bytes] = field(default_factory=dict)
    """Cell index -> PNG of its explanation overlay (the report's cells to review)."""


def image_files(paths: list[Path]) -> Iterator[Path]:
    """Every file named, and every file under every folder named (recursively, sorted,
    hidden files and folders left out), in the order given."""
    for path in paths:
        if path.is_dir():
            for found in sorted(path.rglob("*")):
                relative = found.relative_to(path).parts
                if found.is_file() and not any(part.startswith(".") for part in relative):
                    yield found
        else:
            yield path


def cells_of(prediction: dict) -> list[dict]:
    """Every cell of an answer; the whole frame as one cell where none was found."""
    return prediction.get("cells") or [prediction]


@dataclass
class Summary:
    files: int = 0
    scored: int = 0
    failed: int = 0
    cells: int = 0
    to_review: int = 0
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, result: FileResult) -> None:
        self.files += 1
        if result.prediction is None:
            self.failed += 1
            return
        self.scored += 1
        for cell in cells_of(result.prediction):
            self.cells += 1
            self.to_review += bool(cell.get("review"))
            self.counts[cell["label"]] = self.counts.get(cell["label"], 0) + 1

    def lines(self, classes: list[str]) -> list[str]:
        lines = [
            f"files: {self.files} ({self.scored} scored, {self.failed} with errors)",
            f"cells: {self.cells} ({self.cells - self.to_review} accepted, "
            f"{self.to_review} to review)",
            "differential count:",
        ]
        for name in classes:
            count = self.counts.get(name, 0)
            share = count / self.cells if self.cells else 0.0
            lines.append(f"  {name:<12} {count:>6}  {share:6.1%}")
        return lines
