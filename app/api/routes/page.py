"""The page for people: `GET /` serves one HTML page whose CSS and JavaScript live in
`app/static/`, plus the bundled example smears of `examples/`. None of these need an API
key: the page itself asks for one when the API answers 401."""

from __future__ import annotations

import json
from functools import lru_cache
from html import escape
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, HTMLResponse
from pydantic import BaseModel

from app.api.dependencies import SettingsDep
from app.core.errors import NotFound

STATIC_DIR = Path(__file__).resolve().parents[2] / "static"
EXAMPLES_DIR = Path(__file__).resolve().parents[3] / "examples"
STATIC_TYPES = {".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml"}
# The page changes with the code: browsers revalidate rather than keep a stale copy.
NO_CACHE = {"Cache-Control": "no-cache"}

router = APIRouter(tags=["page"])


class Example(BaseModel):
    name: str
    label: str
    url: str


class ExamplesResponse(BaseModel):
    examples: list[Example]


@lru_cache
def _page_template() -> str:
    return (STATIC_DIR / "index.html").read_text(encoding="utf-8")


@lru_cache
def _examples() -> dict[str, str]:
    """Example file name -> its label, from examples/examples.json (empty without it)."""
    index = EXAMPLES_DIR / "examples.json"
    if not index.is_file():
        return {}
    images = json.loads(index.read_text(encoding="utf-8"))["images"]
    return {
        name: entry["label"]
        for name, entry in sorted(images.items())
        if (EXAMPLES_DIR / name).is_file()
    }


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def page(settings: SettingsDep) -> HTMLResponse:
    """The web page: choose a smear, see its prediction and every explanation."""
    html = _page_template().replace("{{max_upload_bytes}}", escape(str(settings.max_upload_bytes)))
    return HTMLResponse(html, headers=NO_CACHE)


@router.get("/static/{name}", include_in_schema=False)
def static(name: str) -> FileResponse:
    """The page's own CSS and JavaScript (only the files of app/static/, by name)."""
    path = STATIC_DIR / name
    media_type = STATIC_TYPES.get(path.suffix)
    if media_type is None or "/" in name or not path.is_file():
        raise NotFound(f"no static file {name!r}")
    return FileResponse(path, media_type=media_type, headers=NO_CACHE)


@router.get("/examples", response_model=ExamplesResponse)
def examples() -> ExamplesResponse:
    """The bundled example smears (two real images per class), open without an API key."""
    return ExamplesResponse(
        examples=[
            Example(name=name, label=label, url=f"/examples/{name}")
            for name, label in _examples().items()
        ]
    )


@router.get(
    "/examples/{name}",
    response_class=FileResponse,
    responses={200: {"content": {"image/jpeg": {}}}, 404: {"description": "no such"}},
)
def example(name: str) -> FileResponse:
    """One bundled example smear, as the JPEG file itself."""
    if name not in _examples():
        raise NotFound(f"no example {name!r}; GET /examples lists them")
    return FileResponse(
        EXAMPLES_DIR / name,
        media_type="image/jpeg",
        headers={"Cache-Control": "public, max-age=3600"},
    )
