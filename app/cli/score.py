"""`wbc-explain score PATH... --output results.csv`: score files and folders of smears.

In process (the bundled or configured model, through the same `InferenceService` the HTTP
service runs: same decoding, limits, cell finder, batching and review flag), or against a
running service with `--url` (`--concurrency` requests in flight, its API key from
`WBC_API_KEY`). One row per white cell found; a file that cannot be scored gets a row with
its error and the run goes on. Exit status 0 when anything was scored, 1 when nothing
could be, 2 for bad arguments."""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import sys
import time
from pathlib import Path

from app.cli.clients import InProcessClient, RemoteClient, ScoreClient, ScoreFailure
from app.cli.report import write_html_report
from app.cli.results import FileResult, Summary, cells_of, image_files

FIXED_COLUMNS = [
    "file",
    "cell",
    "x0",
    "y0",
    "x1",
    "y1",
    "label",
    "confidence",
    "calibrated_confidence",
    "review",
    "review_reasons",
]


def rows_of(result: FileResult, classes: list[str]) -> list[dict]:
    if result.prediction is None:
        return [{"file": str(result.path), "error": result.error}]
    rows = []
    for index, cell in enumerate(cells_of(result.prediction)):
        box = cell.get("cell_box") or [None] * 4
        row = {
            "file": str(result.path),
            "cell": index,
            **dict(zip(("x0", "y0", "x1", "y1"), box, strict=True)),
            "label": cell["label"],
            "confidence": round(cell["confidence"], 6),
            "calibrated_confidence": None
            if cell.get("calibrated_confidence") is None
            else round(cell["calibrated_confidence"], 6),
            "review": bool(cell.get("review")),
            "review_reasons": ";".join(cell.get("review_reasons") or []),
        }
        for name in classes:
            row[name] = round(cell["probabilities"].get(name, 0.0), 6)
        rows.append(row)
    return rows


class Progress:
    """A one-line progress bar on a terminal; nothing elsewhere."""

    def __init__(self, total: int, stream=sys.stderr) -> None:
        self.total, self.done, self.stream = total, 0, stream
        self.shown = stream.isatty()
        self.started = time.perf_counter()

    def step(self) -> None:
        self.done += 1
        if self.shown:
            width = 30
            filled = int(width * self.done / max(1, self.total))
            rate = self.done / max(1e-9, time.perf_counter() - self.started)
            self.stream.write(
                f"\r[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} "
                f"files, {rate:.1f}/s"
            )
            self.stream.flush()

    def close(self) -> None:
        if self.shown:
            self.stream.write("\n")


async def score_all(
    client: ScoreClient, files: list[Path], concurrency: int, overlays: bool
) -> list[FileResult]:
    """Each file's result, in the order of `files`, `concurrency` in flight at once."""
    slots = asyncio.Semaphore(concurrency)
    progress = Progress(len(files))

    async def one(path: Path) -> FileResult:
        async with slots:
            result = FileResult(path)
            try:
                data = await asyncio.to_thread(path.read_bytes)
                result.prediction = await client.predict(data)
                if overlays:
                    for index, cell in enumerate(cells_of(result.prediction)):
                        if cell.get("review"):
                            result.overlays[index] = await client.overlay(data, index)
            except OSError as error:
                result.error = f"cannot read the file: {error.strerror or error}"
            except ScoreFailure as error:
                result.error = str(error)
            progress.step()
            return result

    try:
        return list(await asyncio.gather(*(one(path) for path in files)))
    finally:
        progress.close()
        await client.aclose()


def write_rows(results: list[FileResult], classes: list[str], output: Path, form: str) -> None:
    columns = FIXED_COLUMNS + classes + ["error"]
    output.parent.mkdir(parents=True, exist_ok=True)
    with output.open("w", newline="", encoding="utf-8") as stream:
        if form == "jsonl":
            for result in results:
                for row in rows_of(result, classes):
                    reasons = row.get("review_reasons") or ""
                    row["review_reasons"] = [reason for reason in reasons.split(";") if reason]
                    stream.write(json.dumps({key: row.get(key) for key in columns}) + "\n")
            return
        writer = csv.DictWriter(stream, fieldnames=columns, restval="")
        writer.writeheader()
        for result in results:
            for row in rows_of(result, classes):
                writer.writerow({key: "" if value is None else value for key, value in row.items()})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wbc-explain score",
        description="Classify every white cell in image files and folders (recursively): one "
        "row per cell, a differential count, and the cells a person should review.",
    )
    parser.add_argument("paths", nargs="+", type=Path, help="image files and folders")
    parser.add_argument("--output", "-o", type=Path, required=True, help="results file")
    parser.add_argument(
        "--format", choices=("csv", "jsonl"), default="csv", help="of --output (default: csv)"
    )
    parser.add_argument(
        "--report", type=Path, default=None, help="also write an HTML report (offline)"
    )
    parser.add_argument(
        "--url",
        default=None,
        help="score against a running service at this address (e.g. http://127.0.0.1:8000) "
        "instead of in process; its API key, if it needs one, from WBC_API_KEY",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=4,
        help="files in flight at once (with --url: requests; default 4)",
    )
    parser.add_argument(
        "--pixel-size-um",
        type=float,
        default=None,
        help="micrometres per pixel of every image, where known (else measured per image)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.concurrency < 1:
        print("error: --concurrency must be at least 1", file=sys.stderr)
        return 2
    files = list(image_files(args.paths))
    missing = [path for path in args.paths if not path.exists()]
    for path in missing:
        print(f"warning: {path} does not exist", file=sys.stderr)
    client: ScoreClient
    try:
        if args.url:
            client = RemoteClient(
                args.url, os.environ.get("WBC_API_KEY"), args.pixel_size_um, args.concurrency
            )
        else:
            client = InProcessClient(args.pixel_size_um)
        classes = client.classes()
    except ScoreFailure as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    results = asyncio.run(
        score_all(client, files, args.concurrency, overlays=args.report is not None)
    )
    write_rows(results, classes, args.output, args.format)
    summary = Summary()
    for result in results:
        summary.add(result)
    if args.report is not None:
        write_html_report(args.report, results, summary, classes, client.describe())
    for line in summary.lines(classes):
        print(line, file=sys.stderr)
    for result in results:
        if result.error:
            print(f"error: {result.path}: {result.error}", file=sys.stderr)
    return 0 if summary.scored else 1
