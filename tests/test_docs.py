"""The docs agree with the code: the README stays a front door, every relative link lands on
a file (and heading), the settings table is the generator's output, the API's route table
names real routes, and the curl examples of the README and docs/api.md run against a real
server."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
from starlette.routing import Match

from app.core.settings import Settings
from app.core.settings_doc import END, START, settings_table

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
OPERATIONS = ROOT / "docs" / "operations.md"
API = ROOT / "docs" / "api.md"
DOCS = [README, ROOT / "deploy" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 200
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
MODEL_CARD = re.compile(r"(^|/)model_store/wbc-squeezenet/\d+/README\.md$")


def prose(path: Path) -> str:
    """The Markdown without its fenced blocks, where brackets are code, not links."""
    return FENCE.sub("", path.read_text())


def relative_links(path: Path) -> list[tuple[str, Path, str]]:
    """(link as written, file it points to, anchor) for every link that is not a URL."""
    links = []
    for target in LINK.findall(prose(path)):
        if re.match(r"[a-z]+:", target):
            continue
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        links.append((target, linked, anchor))
    return links


def heading_anchors(path: Path) -> set[str]:
    """GitHub's anchors: lower case, punctuation dropped, spaces to hyphens, -1 for repeats."""
    anchors: set[str] = set()
    for heading in re.findall(r"^#+ (.+)$", prose(path), re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        candidate, repeat = slug, 0
        while candidate in anchors:
            repeat += 1
            candidate = f"{slug}-{repeat}"
        anchors.add(candidate)
    return anchors


def section(path: Path, heading: str) -> list[str]:
    lines = path.read_text().splitlines()
    start = lines.index(heading) + 1
    level = heading.split(" ")[0] + " "
    end = next((i for i in range(start, len(lines)) if lines[i].startswith(level)), len(lines))
    return lines[start:end]


def test_readme_is_a_front_door() -> None:
    lines = README.read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, (
        f"README.md has {len(lines)} lines; the front door keeps to {README_MAX_LINES}: "
        "move topics into docs/"
    )


@pytest.mark.parametrize("doc", DOCS, ids=lambda path: str(path.relative_to(ROOT)))
def test_relative_links_point_to_existing_files_and_headings(doc: Path) -> None:
    broken = []
    for target, linked, anchor in relative_links(doc):
        if MODEL_CARD.search(target):
            continue  # test_model_card_links_exist
        if not linked.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and linked.suffix == ".md" and anchor not in heading_anchors(linked):
            broken.append(f"{target} (no heading #{anchor} in {linked.name})")
    assert not broken, f"{doc.relative_to(ROOT)}: broken links {broken}"


def test_model_card_links_exist() -> None:
    """Model cards are written into each store entry by training (the card generator); the
    docs link them, so a missing card is a broken link like any other."""
    missing = sorted(
        {
            f"{doc.relative_to(ROOT)} -> {target}"
            for doc in DOCS
            for target, linked, _ in relative_links(doc)
            if MODEL_CARD.search(target) and not linked.exists()
        }
    )
    assert not missing, f"links to model cards that do not exist: {missing}"


def test_readme_links_the_default_models_card() -> None:
    targets = [target for target, _, _ in relative_links(README)]
    newest = max(int(p.name) for p in (ROOT / "model_store" / "wbc-squeezenet").iterdir())
    assert f"model_store/wbc-squeezenet/{newest}/README.md" in targets


def test_settings_table_is_the_generators_output() -> None:
    text = OPERATIONS.read_text()
    assert text.count(START) == 1 and text.count(END) == 1, "the settings table's markers"
    region = text.split(START, 1)[1].split(END, 1)[0]
    assert region == "\n" + settings_table(), (
        "docs/operations.md's settings table is out of date: run "
        "`.venv/bin/python -m app.core.settings_doc --write docs/operations.md`"
    )
    assert "python -m app.core.settings_doc --write docs/operations.md" in prose(OPERATIONS)


def test_settings_table_has_one_row_per_setting_with_its_docstring() -> None:
    rows = [line for line in settings_table().splitlines() if line.startswith("| `")]
    assert len(rows) == len(Settings.model_fields)
    assert all(field.description for field in Settings.model_fields.values()), (
        "every setting needs a docstring (use_attribute_docstrings makes it the description)"
    )


def api_routes() -> list[tuple[str, str]]:
    """(method, path) of every `METHOD /path` in docs/api.md's route table."""
    rows = [line for line in section(API, "## Routes") if line.startswith("| `")]
    cells = [row.split("|")[1] for row in rows]
    pairs = [pair for cell in cells for pair in re.findall(r"`(GET|POST) (/[^`]*)`", cell)]
    return [(method, re.sub(r"<[^>]+>", "x", path)) for method, path in pairs]


def test_api_route_table_names_real_routes() -> None:
    from app.main import create_app

    documented = api_routes()
    assert len(documented) >= 8, documented
    routes = create_app(Settings()).routes  # the lifespan does not run: no model is loaded
    unknown = []
    for method, path in documented:
        scope = {"type": "http", "method": method, "path": path, "root_path": ""}
        if not any(route.matches(scope)[0] is Match.FULL for route in routes):
            unknown.append(f"{method} {path}")
    assert not unknown, f"docs/api.md names routes the app does not have: {unknown}"


def curl_blocks(doc: Path) -> list[str]:
    blocks = re.findall(r"^```sh\n(.*?)^```", doc.read_text(), re.MULTILINE | re.DOTALL)
    return [block for block in blocks if "curl " in block]


def test_readme_shows_curl_examples() -> None:
    assert curl_blocks(README), "the README should show how to call the service"


# docs/operations.md's blocks start and signal servers of their own: not run here.
EXAMPLES = [
    pytest.param(block, id=f"{doc.relative_to(ROOT)}-{number}")
    for doc in (README, API)
    for number, block in enumerate(curl_blocks(doc))
]


@pytest.mark.slow
@pytest.mark.parametrize("block", EXAMPLES)
def test_curl_examples_run(block: str, server_url: str, tmp_path: Path) -> None:
    """Each curl block of the README and docs/api.md, against a real server serving the
    bundled model, from a folder holding `examples/`: every request must answer 2xx (curl
    --fail)."""
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    script = block.replace("http://127.0.0.1:8000", server_url).replace("curl -s ", "curl -sSf ")
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=tmp_path,
        capture_output=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    for written in re.findall(r"-o (\S+\.png)", block):
        assert (tmp_path / written).read_bytes()[:4] == b"\x89PNG", written


@pytest.mark.slow
def test_the_readme_first_command_serves_the_bundled_model() -> None:
    """The quick start's first command, run as a user runs it (set-up is a no-op once done),
    answers ready with the store's newest version, the default model the README names."""
    from tests.utils.live_server import live_server

    fence = README.read_text().split("## Quick start", 1)[1].split("```")[1]
    assert fence.split("\n", 1)[1].splitlines()[0].strip() == "./scripts/serve.sh"
    with live_server(serve_script=True) as server:
        ready = httpx.get(f"{server.url}/health/ready", timeout=10).json()
    newest = max(int(p.name) for p in (ROOT / "model_store" / "wbc-squeezenet").iterdir())
    assert ready["status"] == "ready" and ready["model"]["version"] == newest


@pytest.mark.slow
def test_the_readme_score_command_runs(tmp_path: Path) -> None:
    """The README's `wbc-explain score` block, as written, from a folder laid out like the
    repository: a CSV row per cell of each example and an offline HTML report."""
    blocks = re.findall(r"^```sh\n(.*?)^```", README.read_text(), re.MULTILINE | re.DOTALL)
    (block,) = [block for block in blocks if "wbc-explain score" in block]
    for name in (".venv", "examples", "model_store"):
        (tmp_path / name).symlink_to(ROOT / name)
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block], cwd=tmp_path, capture_output=True, timeout=600
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    rows = (tmp_path / "results.csv").read_text().splitlines()
    files = {row.split(",", 1)[0] for row in rows[1:]}
    assert files == {f"examples/{path.name}" for path in (ROOT / "examples").glob("*.jpeg")}
    assert all(row.endswith(",") for row in rows[1:])  # no file has an error
    assert "Differential count" in (tmp_path / "report.html").read_text()
