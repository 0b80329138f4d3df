"""Settings: renamed limits keep their old environment names as deprecated aliases."""

import logging

import pytest
from PIL import Image

from app.core.settings import Settings


def test_new_names_and_defaults(monkeypatch):
    monkeypatch.setenv("WBC_MAX_REQUEST_IMAGES", "7")
    monkeypatch.setenv("WBC_MAX_PASS_IMAGES", "5")
    settings = Settings()
    assert (settings.max_request_images, settings.max_pass_images) == (7, 5)
    assert Settings(max_pass_images=3).max_pass_images == 3


@pytest.mark.parametrize(
    ("old", "field"),
    [("WBC_MAX_BATCH_IMAGES", "max_request_images"), ("WBC_BATCH_MAX_SIZE", "max_pass_images")],
)
def test_deprecated_names_still_work_with_a_warning(monkeypatch, caplog, old, field):
    monkeypatch.setenv(old, "4")
    with caplog.at_level(logging.WARNING, logger="app.core.settings"):
        settings = Settings()
    assert getattr(settings, field) == 4
    assert any(
        old in record.getMessage() and "deprecated" in record.getMessage()
        for record in caplog.records
    )


def test_only_prefixed_variables_configure_the_service(monkeypatch):
    monkeypatch.setenv("MAX_REQUEST_IMAGES", "7")
    monkeypatch.setenv("MAX_PASS_IMAGES", "5")
    settings = Settings()
    assert (settings.max_request_images, settings.max_pass_images) == (32, 32)


def test_new_name_wins_over_the_deprecated_one(monkeypatch):
    monkeypatch.setenv("WBC_MAX_BATCH_IMAGES", "4")
    monkeypatch.setenv("WBC_MAX_REQUEST_IMAGES", "9")
    assert Settings().max_request_images == 9


def test_pillows_own_bomb_guard_stays_on():
    import app.engine.images  # noqa: F401  (importing the decoder must not switch it off)

    assert Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS > 0


def test_the_app_sets_the_threads_switch_interval(monkeypatch):
    import sys

    from app.main import create_app
    from tests.conftest import BUNDLED_STORE

    monkeypatch.setattr(sys, "setswitchinterval", lambda seconds: seconds_set.append(seconds))
    seconds_set = []
    create_app(Settings(store_dir=BUNDLED_STORE))
    create_app(Settings(store_dir=BUNDLED_STORE, gil_switch_interval_ms=2.5))
    assert seconds_set == [pytest.approx(0.001), pytest.approx(0.0025)]
    monkeypatch.setenv("WBC_GIL_SWITCH_INTERVAL_MS", "0")
    with pytest.raises(ValueError, match="gil_switch_interval_ms"):
        Settings()
