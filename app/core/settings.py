"""Service settings: one class, read from WBC_* environment variables."""

from __future__ import annotations

import logging
import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Old environment names still read, with a warning, and the names that replace them.
DEPRECATED_ENV = {
    "WBC_MAX_BATCH_IMAGES": "WBC_MAX_REQUEST_IMAGES",
    "WBC_BATCH_MAX_SIZE": "WBC_MAX_PASS_IMAGES",
}


def _also_deprecated(field: str) -> AliasChoices:
    """Read the field's WBC_ variable, then the variable it replaced (the field's own name
    stays a keyword argument through populate_by_name, never an environment variable)."""
    new = f"WBC_{field.upper()}"
    old = [name for name, replacement in DEPRECATED_ENV.items() if replacement == new]
    return AliasChoices(new, *old)


class Settings(BaseSettings):
    """Every knob of the service; each field is the env variable WBC_<FIELD>."""

    model_config = SettingsConfigDict(
        env_prefix="WBC_",
        extra="ignore",
        env_ignore_empty=True,
        protected_namespaces=(),
        populate_by_name=True,
        use_attribute_docstrings=True,
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
    max_cells_per_image: int = Field(default=16, gt=0, le=256)
    """White cells classified per image, largest first (each is one more model input)."""
    max_request_images: int = Field(
        default=32, gt=0, validation_alias=_also_deprecated("max_request_images")
    )
    """Most images one request may carry (/predict, /v2 infer); 413 beyond. Replaces the
    deprecated WBC_MAX_BATCH_IMAGES."""
    max_pass_images: int = Field(
        default=32, gt=0, validation_alias=_also_deprecated("max_pass_images")
    )
    """Most images the micro-batcher runs in one forward or backward pass, gathered from
    concurrent requests. Replaces the deprecated WBC_BATCH_MAX_SIZE."""
    batch_max_wait_ms: float = Field(default=2.0, ge=0)
    """How long the micro-batcher waits for more requests to join a batch."""
    gil_switch_interval_ms: float = Field(default=1.0, gt=0, le=100)
    """Python's thread switch interval (`sys.setswitchinterval`, Python's default 5 ms): how
    long a thread holding the GIL may keep it while another waits. The event loop shares it
    with the decoding and model threads; at 1 ms the loop gets it back sooner under load
    (more /v2 infer requests/s at concurrency 16: docs/benchmarks.md)."""
    forward_backend: Literal["auto", "tensorflow", "onnxruntime"] = "auto"
    """What runs forward passes (/predict, /v2 infer): `onnxruntime` (the entry's verified
    model.onnx), `tensorflow`, or `auto`: ONNX Runtime on a CPU, TensorFlow on a GPU. An
    entry without a usable model.onnx serves through TensorFlow; explanations always do."""
    onnx_max_pass_images: int = Field(default=1, gt=0)
    """Most images one forward pass runs under ONNX Runtime (WBC_MAX_PASS_IMAGES applies
    under TensorFlow). On the 2-core development CPU a pass of one image (its window and
    mirror) costs the least CPU per image, 12-13 ms against 14-17 ms in passes of 2-8, and
    the service spent 1-6 ms less CPU per request at concurrency 16 (docs/benchmarks.md);
    `python -m bench.forward` measures a machine's own curve."""
    malloc_arenas: int = Field(default=2, ge=0)
    """glibc malloc arenas the process's threads share (mallopt M_ARENA_MAX); 0 leaves
    glibc's default of up to 8 per core, each keeping what its threads freed (app/core/memory.py).
    Set at start-up, before any thread of the service's own starts."""
    heap_trim_interval_s: float = Field(default=5.0, ge=0)
    """Every this many seconds the heap's free pages go back to the system (glibc
    malloc_trim, a few milliseconds in a worker thread); 0 never."""
    page_out_libraries: bool = True
    """Once the model is loaded and warm, hand the pages of TensorFlow's libraries back to
    the kernel (madvise MADV_PAGEOUT, Linux 5.4+): its start-up touches about 300 MiB of
    them, most never used again; a second warm-up then brings back those the passes use,
    from the page cache or the disk (app/core/memory.py)."""
    image_threads: int = Field(default=0, ge=0)
    """Threads that decode, white-balance, measure and cut images and render explanations'
    overlays, beside the model worker, taking predictions' and explanations' jobs in
    turn; 0: one per CPU. More threads than cores only contend for the cores and Python's
    lock: on the 2-core development machine two answered /v2 infer at concurrency 16 with
    10-18% more requests/s than asyncio's default pool of six (docs/benchmarks.md)."""
    onnx_threads: int = Field(default=1, ge=0)
    """Threads ONNX Runtime runs one forward pass on; 0: one per CPU. One by default: a
    pass holds one core while decoding, the scale measurement and the cell cutting of other
    requests (and of its own, which overlap it) run on the rest. On the 2-core development
    machine one thread answered /v2 infer at concurrency 16 with ~25% more requests/s and
    ~30% less CPU per request than two, and sooner at concurrency 1 (docs/benchmarks.md)."""
    onnx_workers: int = Field(default=0, ge=0)
    """Forward passes ONNX Runtime runs at once, each on its own thread of the model worker
    (with WBC_ONNX_THREADS each); 0: one per CPU. With one, every pass waited for the last:
    on the 2-core development machine the single model thread was busy 88% of the time at
    concurrency 16 while the CPUs were not (docs/benchmarks.md). Under TensorFlow (a GPU)
    passes run one at a time."""
    onnx_spinning: bool = True
    """With WBC_ONNX_THREADS other than 1, ONNX Runtime's threads spin between operators and
    for a moment after each pass instead of sleeping: a lone pass answers sooner.
    The spin counts as CPU use: turn it off where CPU time is billed or drives the
    autoscaler at light load."""
    max_explain_pass_images: int = Field(default=8, gt=0)
    """Most images one explanation (backward) pass runs: a forward pass waits for at most
    one of these at the model worker."""
    forward_queue_limit: int = Field(default=64, gt=0)
    """Most images of /predict and /v2 infer requests admitted at once (waiting or in a
    pass); past it requests are refused at once with 503 `overloaded` and Retry-After."""
    explain_queue_limit: int = Field(default=32, gt=0)
    """Most /explain requests admitted at once (waiting or in a pass); past it 503
    `overloaded`."""
    request_timeout_s: float = Field(default=30.0, gt=0)
    """Deadline of a request, in seconds from its arrival; X-Request-Timeout or the v2
    `timeout` parameter may shorten it. Past it a request is answered 504 and never run."""
    liveness_grace_s: float = Field(default=60.0, ge=0)
    """How long, in seconds, the model may stay failed on its device (readiness false,
    nothing reloaded) before liveness (`/health/live`) fails too, so that an orchestrator
    restarts the process: a device that failed once (a lost GPU, a corrupted context) seldom
    recovers in place. With deploy/kubernetes' liveness probe (every 20 s, 3 failures) a pod
    is replaced about 2 minutes after its device failed."""
    retry_after_s: int = Field(default=1, ge=1)
    """Seconds a refused (503 overloaded) request is told to wait, in Retry-After; a
    connection refused again within twice as long has its next request read only after as
    long."""
    cors_origins: list[str] = []
    """Origins allowed by CORS (JSON list); empty allows none."""
    api_key: SecretStr | None = None
    """API key every route but health and metrics requires; unset (and no file): open, no /admin."""
    api_keys_file: Path | None = None
    """File of further accepted API keys, one per line (blank lines and # comments skipped)."""

    @model_validator(mode="after")
    def _a_full_request_fits_the_queue(self) -> Settings:
        if self.forward_queue_limit < self.max_request_images:
            raise ValueError(
                f"WBC_FORWARD_QUEUE_LIMIT ({self.forward_queue_limit}) is below "
                f"WBC_MAX_REQUEST_IMAGES ({self.max_request_images}): a request of the "
                "largest allowed size could never be admitted"
            )
        return self

    @model_validator(mode="after")
    def _warn_deprecated(self) -> Settings:
        for old, new in DEPRECATED_ENV.items():
            if old in os.environ:
                logging.getLogger(__name__).warning(
                    "%s is deprecated; set %s instead (%s still wins when both are set)",
                    old,
                    new,
                    new,
                )
        return self


@lru_cache
def get_settings() -> Settings:
    return Settings()
