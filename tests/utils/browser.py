"""Headless Chromium for the page's tests: Debian's package driven by Playwright (its own
browser download cannot reach its host from our machines), or a clear reason why not."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "tests" / "screenshots"  # git-ignored: people look at them, CI does not
CHROMIUM_NAMES = ("chromium", "chromium-headless-shell", "chromium-browser")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium_path() -> str | None:
    """WBC_CHROMIUM if set, else the first Chromium on PATH."""
    explicit = os.environ.get("WBC_CHROMIUM")
    if explicit:
        return explicit
    return next((found for name in CHROMIUM_NAMES if (found := shutil.which(name))), None)


def could_install() -> bool:
    """Whether `./scripts/setup.sh --browser` could have installed Chromium here."""
    return os.geteuid() == 0 and shutil.which("apt-get") is not None


def unavailable(reason: str) -> None:
    """Skip with the reason; but on CI, where setup could install what is missing, fail."""
    if os.environ.get("CI") == "true" and could_install():
        pytest.fail(f"{reason}; on CI `./scripts/setup.sh --browser` should have installed it")
    pytest.skip(reason)


def screenshot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
