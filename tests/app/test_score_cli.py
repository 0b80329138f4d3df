"""`wbc-explain score`: the console script the set-up installs scores files and folders in
process or against a running service, one row per cell, errors as rows, a summary and an
offline HTML report."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.utils.live_server import ROOT, live_server

SCRIPT = ROOT / ".venv" / "bin" / "wbc-explain"
COLUMNS = [
    "file", "cell", "x0", "y0", "x1", "y1", "label", "confidence", "calibrated_confidence",
    "review", "review_reasons",
]  # fmt: skip


def _score(
    *args: str, env: dict | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    if not SCRIPT.exists():
        pytest.fail(f"{SCRIPT} is missing: ./scripts/setup.sh installs the console script")
    return subprocess.run(
        [str(SCRIPT), "score", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
    )


@pytest.fixture(scope="module")
def folder(tmp_path_factory, smear_files) -> Path:
    """Every example smear in a nested folder, a text file and a truncated JPEG beside them."""
    root = tmp_path_factory.mktemp("slide")
    (root / "field-a").mkdir()
    for index, path in enumerate(smear_files):
        shutil.copy(path, root / ("field-a" if index % 2 else "") / path.name)
    (root / "notes.txt").write_text("not an image\n")
    (root / "broken.jpeg").write_bytes(smear_files[0].read_bytes()[:2000])
    (root / ".hidden.jpeg").write_bytes(b"never read")
    return root


@pytest.fixture(scope="module")
def in_process(folder, tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path, Path]:
    out = tmp_path_factory.mktemp("scored")
    result = _score(
        str(folder), "--output", str(out / "results.csv"), "--report", str(out / "report.html")
    )
    return result, out / "results.csv", out / "report.html"


def _rows(path: Path) -> list[dict]:
    with path.open(newline="") as stream:
        return list(csv.DictReader(stream))


@pytest.mark.slow
def test_every_file_gets_rows_and_broken_ones_an_error(
    in_process, folder, client, bundled_manifest
):
    result, results_csv, _ = in_process
    assert result.returncode == 0, result.stderr
    with results_csv.open(newline="") as stream:
        header = next(csv.reader(stream))
    assert header == COLUMNS + bundled_manifest.class_names + ["error"]
    rows = _rows(results_csv)
    by_file: dict[str, list[dict]] = {}
    for row in rows:
        by_file.setdefault(Path(row["file"]).name, []).append(row)
    assert ".hidden.jpeg" not in by_file
    assert by_file["broken.jpeg"][0]["error"].startswith(("corrupt_image", "invalid_image"))
    assert by_file["notes.txt"][0]["error"].startswith("invalid_image")
    assert by_file["notes.txt"][0]["label"] == ""
    images = sorted(folder.rglob("*.jpeg"))
    for path in images:
        if path.name in ("broken.jpeg", ".hidden.jpeg"):
            continue
        cells = by_file[path.name]
        served = client.post("/predict", files={"file": (path.name, path.read_bytes())}).json()
        answer = served["predictions"][0]
        # the first cell is the served answer's main cell, the rest its other cells
        assert cells[0]["label"] == answer["label"]
        assert [int(c["cell"]) for c in cells] == list(range(len(cells)))
        assert len(cells) == max(1, len(answer["cells"]))
        for row, cell in zip(cells, answer["cells"] or [answer], strict=True):
            assert row["review"] == str(cell["review"])
            assert row["review_reasons"] == ";".join(cell["review_reasons"])
            assert float(row["calibrated_confidence"]) == pytest.approx(
                cell["calibrated_confidence"], abs=1e-5
            )
            probabilities = [float(row[name]) for name in bundled_manifest.class_names]
            assert sum(probabilities) == pytest.approx(1.0, abs=1e-4)
            if cell["cell_box"]:
                assert [int(row[k]) for k in ("x0", "y0", "x1", "y1")] == cell["cell_box"]
    # the summary: files, cells, the differential count, accepted and to review
    assert "files: 10 (8 scored, 2 with errors)" in result.stderr
    assert "differential count:" in result.stderr
    scored = [row for row in rows if not row["error"]]
    to_review = sum(row["review"] == "True" for row in scored)
    assert f"cells: {len(scored)} ({len(scored) - to_review} accepted, {to_review} to review)" in (
        result.stderr
    )


@pytest.mark.slow
def test_the_report_is_one_offline_page(in_process):
    result, results_csv, report = in_process
    page = report.read_text()
    assert "Differential count" in page and "Cells to review" in page
    assert "http://" not in page and "https://" not in page  # nothing fetched from elsewhere
    flagged = [row for row in _rows(results_csv) if row["review"] == "True"]
    assert page.count("data:image/png;base64,") == len(flagged)


@pytest.mark.slow
def test_nothing_scored_is_a_failure(tmp_path):
    (tmp_path / "a.txt").write_text("nope")
    result = _score(str(tmp_path), "--output", str(tmp_path / "out.jsonl"), "--format", "jsonl")
    assert result.returncode == 1
    (row,) = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert row["file"].endswith("a.txt") and row["error"] and row["label"] is None


@pytest.mark.slow
def test_against_a_running_service_with_its_api_key(tmp_path, smear_files):
    with live_server({"WBC_API_KEY": "score-test-key-0123456789abcdef"}) as server:
        refused = _score(
            *map(str, smear_files[:2]), "--output", str(tmp_path / "no.csv"), "--url", server.url
        )
        assert refused.returncode == 1
        assert "401" in refused.stderr or "api key" in refused.stderr.lower()
        result = _score(
            *map(str, smear_files),
            "--output", str(tmp_path / "remote.jsonl"),
            "--format", "jsonl",
            "--url", server.url,
            "--concurrency", "4",
            env={"WBC_API_KEY": "score-test-key-0123456789abcdef"},
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in (tmp_path / "remote.jsonl").read_text().splitlines()]
    firsts = {Path(row["file"]).name: row for row in rows if row["cell"] == 0}
    assert set(firsts) == {path.name for path in smear_files}
    assert all(isinstance(row["review_reasons"], list) for row in rows)
    local = _score(
        *map(str, smear_files), "--output", str(tmp_path / "local.jsonl"), "--format", "jsonl"
    )
    assert local.returncode == 0
    for line in (tmp_path / "local.jsonl").read_text().splitlines():
        row = json.loads(line)
        if row["cell"] == 0:
            assert firsts[Path(row["file"]).name]["label"] == row["label"]


def test_bad_arguments_exit_2(tmp_path):
    result = _score(str(tmp_path), "--output", str(tmp_path / "x.csv"), "--concurrency", "0")
    assert result.returncode == 2
    assert subprocess.run([str(SCRIPT)], capture_output=True).returncode == 2
