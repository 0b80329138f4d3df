"""Service settings: one class, read from WBC_* environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob of the service; each field is the env variable WBC_<FIELD>."""

    model_config = SettingsConfigDict(
        env_prefix="WBC_", extra="ignore", env_ignore_empty=True, protected_namespaces=()
    )

    store_dir: Path = Path("model_store")
    """Model store root: holds <model-name>/<version>/manifest.json."""
    model_name: str = "wbc-squeezenet"
    """Which model of the store to serve."""
    model_version: int | None = None
    """Pin a version; empty serves the newest version in the store."""
    max_upload_bytes: int = Field(default=10 * 1024 * 1024, gt=0)
    """Largest request body accepted, in bytes (413 beyond)."""
    max_image_pixels: int = Field(default=25_000_000, gt=0)
    """Largest image accepted, width x height, checked from the header before decoding."""
    max_batch_images: int = Field(default=32, gt=0)
    """Most images in one /predict request."""
    batch_max_size: int = Field(default=32, gt=0)
    """Most images the micro-batcher runs in one forward or backward pass."""
    batch_max_wait_ms: float = Field(default=2.0, ge=0)
    """How long the micro-batcher waits for more requests to join a batch."""
    cors_origins: list[str] = []
    """Origins allowed by CORS (JSON list); empty allows none."""
    api_key: SecretStr | None = None
    """API key every route but health and metrics requires; unset (and no file): open, no /admin."""
    api_keys_file: Path | None = None
    """File of further accepted API keys, one per line (blank lines and # comments skipped)."""


@lru_cache
def get_settings() -> Settings:
    return Settings()
