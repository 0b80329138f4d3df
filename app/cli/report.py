"""The HTML report of `wbc-explain score`: the differential count, and every cell to review
as a thumbnail of its explanation overlay with its label and reasons. One file, images
inline, no external assets: it opens offline."""

from __future__ import annotations

import base64
import html
import io
from datetime import UTC, datetime
from pathlib import Path

from PIL import Image

from app.cli.results import FileResult, Summary, cells_of
from model_core.review import REASONS

THUMBNAIL_PX = 180
"""The longer side of a thumbnail."""


def thumbnail(overlay_png: bytes, box: list[int] | None) -> str:
    """A data: URI of the overlay cut around the cell (its box grown by half its size)."""
    with Image.open(io.BytesIO(overlay_png)) as image:
        picture = image.convert("RGB")
    if box:
        x0, y0, x1, y1 = box
        grow_x, grow_y = (x1 - x0) // 2, (y1 - y0) // 2
        picture = picture.crop(
            (
                max(0, x0 - grow_x),
                max(0, y0 - grow_y),
                min(picture.width, x1 + grow_x),
                min(picture.height, y1 + grow_y),
            )
        )
    picture.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
    buffer = io.BytesIO()
    picture.save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2rem; color: #1d1d1f; }
table { border-collapse: collapse; margin: .5rem 0 1.5rem; }
th, td { border-bottom: 1px solid #ddd; padding: .3rem .8rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.cells { display: flex; flex-wrap: wrap; gap: 1rem; }
figure { margin: 0; width: 200px; border: 1px solid #ddd; border-radius: 6px; padding: .5rem; }
figure img { display: block; max-width: 100%; }
figcaption { font-size: 13px; word-break: break-all; }
.label { font-weight: 600; }
.errors li { font-family: monospace; }
"""


def write_html_report(
    path: Path,
    results: list[FileResult],
    summary: Summary,
    classes: list[str],
    model: str,
) -> None:
    escape = html.escape
    rows = "".join(
        f"<tr><td>{escape(name)}</td><td>{summary.counts.get(name, 0)}</td>"
        f"<td>{(summary.counts.get(name, 0) / summary.cells if summary.cells else 0):.1%}</td>"
        "</tr>"
        for name in classes
    )
    figures = []
    for result in results:
        if result.prediction is None:
            continue
        for index, cell in enumerate(cells_of(result.prediction)):
            if not cell.get("review"):
                continue
            overlay = result.overlays.get(index)
            picture = "<p>(no overlay)</p>"
            if overlay:
                source = thumbnail(overlay, cell.get("cell_box"))
                picture = f'<img alt="overlay of cell {index}" src="{source}">'
            reasons = "".join(
                f'<li title="{escape(REASONS.get(reason, reason))}">{escape(reason)}</li>'
                for reason in cell.get("review_reasons", [])
            )
            confidence = cell.get("calibrated_confidence") or cell["confidence"]
            figures.append(
                f"<figure>{picture}<figcaption><span class=label>{escape(cell['label'])}</span> "
                f"{confidence:.0%}<br>{escape(str(result.path))}, cell {index}"
                f"<ul>{reasons}</ul></figcaption></figure>"
            )
    errors = "".join(
        f"<li>{escape(str(result.path))}: {escape(result.error or '')}</li>"
        for result in results
        if result.error
    )
    made = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    document = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>White-cell differential: {summary.cells} cells</title>
<style>{STYLE}</style></head><body>
<h1>White-cell differential</h1>
<p>{summary.files} files ({summary.scored} scored, {summary.failed} with errors),
{summary.cells} cells: {summary.cells - summary.to_review} accepted,
{summary.to_review} to review. Model: {escape(model)}. Made {made}.</p>
<h2>Differential count</h2>
<table><thead><tr><th>class</th><th>cells</th><th>share</th></tr></thead>
<tbody>{rows}</tbody></table>
<h2>Cells to review ({summary.to_review})</h2>
<div class="cells">{"".join(figures) or "<p>None: every cell was accepted.</p>"}</div>
{f'<h2>Files with errors</h2><ul class="errors">{errors}</ul>' if errors else ""}
<p><small>A research tool, not a diagnosis.</small></p>
</body></html>
"""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(document, encoding="utf-8")
