"""Start the MLServer baseline: MLServer 1.7 from its own venv, serving one model-store
entry through `bench.mlserver_runtime.WBCRuntime` with adaptive batching."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.servers import HOST, REPO_ROOT, free_port, serving_command

VENV = REPO_ROOT / "bench" / ".mlserver-venv"
SETUP_SCRIPT = "scripts/setup-mlserver.sh"
RUNTIME = "bench.mlserver_runtime.WBCRuntime"
# Adaptive batching as the issue set it up: up to 32 items, waiting at most 2 ms.
MAX_BATCH_SIZE = 32
MAX_BATCH_TIME_S = 0.002


class MLServerMissing(Exception):
    """bench/.mlserver-venv has no `mlserver` command."""


def model_settings(entry: Path, model_name: str, version: int) -> dict:
    """model-settings.json of the served entry (MLServer's own file format)."""
    return {
        "name": model_name,
        "implementation": RUNTIME,
        "max_batch_size": MAX_BATCH_SIZE,
        "max_batch_time": MAX_BATCH_TIME_S,
        "parameters": {"uri": str(entry), "version": str(version)},
    }


@contextmanager
def mlserver_serving(entry: Path, model_name: str, version: int, work_dir: Path) -> Iterator[str]:
    """Write MLServer's settings under `work_dir`, start `mlserver start`, wait until it is
    ready, yield its base URL; stop it on the way out. Its log is `work_dir`/mlserver.log."""
    command = VENV / "bin" / "mlserver"
    if not command.is_file():
        raise MLServerMissing(f"{command} is missing: run {SETUP_SCRIPT} first")
    models_dir = work_dir / "models"
    (models_dir / model_name).mkdir(parents=True, exist_ok=True)
    (models_dir / model_name / "model-settings.json").write_text(
        json.dumps(model_settings(entry, model_name, version), indent=2) + "\n"
    )
    http_port = free_port()
    # debug off: no access log, like the service under test (uvicorn --no-access-log).
    server_settings = {
        "host": HOST,
        "http_port": http_port,
        "grpc_port": free_port(),
        "metrics_port": free_port(),
        "debug": False,
    }
    (models_dir / "settings.json").write_text(json.dumps(server_settings, indent=2) + "\n")
    # The runtime imports the model core from the repository, as a user's would from their own.
    env = {"PYTHONPATH": str(REPO_ROOT)}
    # The model's own readiness: the server's answers 200 even when the model failed to load.
    with serving_command(
        [str(command), "start", str(models_dir)],
        http_port,
        env,
        work_dir / "mlserver.log",
        ready_route=f"/v2/models/{model_name}/ready",
    ) as base_url:
        yield base_url
