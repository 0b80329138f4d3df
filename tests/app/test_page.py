"""The page's routes through a real app: `/` serves the page with the upload limit, its own
files are small, local and served by name only, the bundled examples are listed and served,
and all of it stays open when the API needs a key (the page asks for one itself)."""

import json
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.api.routes.page import EXAMPLES_DIR, STATIC_DIR
from app.core.settings import Settings
from app.main import create_app

KEY = "page-key-0123456789abcdef"
PAGE_BUDGET_BYTES = 200 * 1024
EXAMPLES = json.loads((EXAMPLES_DIR / "examples.json").read_text())["images"]


@pytest.fixture(scope="module")
def keyed(tiny_store):
    settings = Settings(
        store_dir=tiny_store, model_name="tiny", api_key=KEY, max_upload_bytes=1234567
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def test_root_serves_the_page_with_its_upload_limit(client):
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    assert html.count('type="file"') == 1
    assert '<script src="/static/page.js" defer>' in html
    assert '<link rel="stylesheet" href="/static/page.css">' in html
    limit = client.app.state.settings.max_upload_bytes
    assert f'name="wbc-max-upload-bytes" content="{limit}"' in html
    assert "not a diagnosis" in html
    assert client.get("/docs").status_code == 200


def test_the_page_files_are_small_and_local():
    files = sorted(STATIC_DIR.iterdir())
    assert {f.name for f in files} == {"index.html", "page.css", "page.js"}
    assert sum(f.stat().st_size for f in files) <= PAGE_BUDGET_BYTES
    for path in files:
        # Offline and behind a firewall: nothing is fetched from another host.
        assert not re.search(r"(src|href)=[\"']?(https?:)?//", path.read_text()), path.name
        assert "url(http" not in path.read_text() and "import(" not in path.read_text()


@pytest.mark.parametrize(
    "name, media_type", [("page.js", "text/javascript"), ("page.css", "text/css")]
)
def test_static_files_are_served_by_name(client, name, media_type):
    response = client.get(f"/static/{name}")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(media_type)
    assert response.content == (STATIC_DIR / name).read_bytes()


@pytest.mark.parametrize(
    "path",
    [
        "/static/index.html",
        "/static/nope.js",
        "/static/..%2Fpage.py",
        "/static/%2e%2e",
        "/examples/..%2Fapp%2Fmain.py",
        "/examples/README.md",
        "/examples/nope.jpeg",
    ],
)
def test_nothing_else_is_served(client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_examples_are_listed_with_their_labels_and_served(client):
    listed = client.get("/examples").json()["examples"]
    assert [e["name"] for e in listed] == sorted(EXAMPLES)
    assert len(listed) == 8
    assert {e["label"] for e in listed} == {"EOSINOPHIL", "LYMPHOCYTE", "MONOCYTE", "NEUTROPHIL"}
    for example in listed:
        assert example["label"] == EXAMPLES[example["name"]]["label"]
        image = client.get(example["url"])
        assert image.status_code == 200
        assert image.headers["content-type"] == "image/jpeg"
        assert image.content == (Path(EXAMPLES_DIR) / example["name"]).read_bytes()


def test_the_page_and_examples_stay_open_when_the_api_needs_a_key(keyed):
    page = keyed.get("/")
    assert page.status_code == 200
    assert 'content="1234567"' in page.text
    assert keyed.get("/static/page.js").status_code == 200
    assert keyed.get("/examples").status_code == 200
    assert keyed.get("/examples/neutrophil-1.jpeg").status_code == 200
    assert keyed.get("/models").status_code == 401
    assert keyed.get("/models", headers={"X-API-Key": KEY}).status_code == 200
