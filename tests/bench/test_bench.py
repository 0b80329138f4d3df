"""The benchmark's own parts on real objects: the model's FLOP count, the V2 request both
servers get, the targets table, and the MLServer baseline answering as the service does
(when its venv, made by scripts/setup-mlserver.sh, is there)."""

import base64
import json

import httpx
import numpy as np
import pytest

from app.engine.images import decode_image
from bench.floor import Floor
from bench.forward import CurvePoint, ForwardReport, model_mflop
from bench.load import LoadResult, v2_bodies
from bench.mlserver import VENV, mlserver_serving
from bench.report import MLSERVER, PREDICT, SERVICE, V2_INFER, Measurement, check_targets
from model_core.runtime import ModelRuntime
from model_core.store.entries import entry_dir, load_entry
from tests.conftest import BUNDLED_MODEL, BUNDLED_STORE, BUNDLED_VERSION
from tests.utils.images import example_smears


def test_the_model_costs_what_its_layers_add_up_to():
    _, model = load_entry(entry_dir(BUNDLED_STORE, BUNDLED_MODEL, 3))  # the 128x128 model
    # 2 x multiply-adds of the 26 convolutions and the dense layer at 128x128.
    assert model_mflop(model) == pytest.approx(161.738432)


def test_the_v2_request_is_one_base64_jpeg_as_bytes():
    jpeg = example_smears()[0].path.read_bytes()
    (body,) = v2_bodies([jpeg])
    (tensor,) = json.loads(body["content"])["inputs"]
    assert (tensor["name"], tensor["datatype"], tensor["shape"]) == ("images", "BYTES", [1])
    assert base64.b64decode(tensor["data"][0]) == jpeg
    assert body["headers"] == {"Content-Type": "application/json"}


def _result(concurrency: int, p50_ms: float, per_second: float) -> LoadResult:
    return LoadResult(
        requests=10,
        concurrency=concurrency,
        p50_ms=p50_ms,
        p95_ms=p50_ms,
        p99_ms=p50_ms,
        mean_ms=p50_ms,
        requests_per_second=per_second,
        errors=0,
        status_counts={"200": 10},
    )


def test_targets_are_ratios_of_the_same_run_and_skip_servers_not_run():
    measurements = [
        Measurement(SERVICE, PREDICT, _result(1, 13.0, 70.0)),
        Measurement(SERVICE, PREDICT, _result(16, 200.0, 110.0)),
        Measurement(SERVICE, V2_INFER, _result(1, 12.0, 80.0)),
        Measurement(SERVICE, V2_INFER, _result(16, 150.0, 120.0)),
        Measurement(MLSERVER, V2_INFER, _result(1, 24.0, 40.0)),
        Measurement(MLSERVER, V2_INFER, _result(16, 300.0, 60.0)),
    ]
    forward = ForwardReport(
        mflop_per_image=160.0,
        matmul_peak_gflops={"tensorflow": 100.0, "numpy": 80.0},
        tensorflow_load_seconds=5.0,
        onnx_added_seconds=0.3,
        curve=[CurvePoint("onnxruntime", 1, 2.5, 64.0), CurvePoint("onnxruntime", 32, 5.0, 32.0)],
    )
    floor = Floor(decode_and_forward_ms=10.0, forward_ms=2.5, samples=10, backend="onnxruntime")
    checks = {check.name: check for check in check_targets(measurements, floor, forward, 1)}
    assert checks["/predict p50 at c=1 / floor (decode + preprocess + forward)"].value == 1.3
    assert checks["/v2 infer p50 speed-up over MLServer at c=1"].value == 2.0
    assert checks["/v2 infer req/s at c=16 over MLServer"].value == 2.0
    peak = checks["onnxruntime forward GFLOP/s at batch 1 / matmul peak (100 GFLOP/s)"]
    assert (peak.value, peak.met) == (0.64, True)
    assert checks["seconds ONNX Runtime adds to a cold start"].met is True
    assert not [name for name in checks if "tutorial" in name]  # that baseline did not run


@pytest.mark.slow
@pytest.mark.skipif(
    not (VENV / "bin" / "mlserver").is_file(),
    reason="needs bench/.mlserver-venv (scripts/setup-mlserver.sh)",
)
def test_mlserver_answers_the_same_request_with_the_same_probabilities(tmp_path):
    smears = [smear.path.read_bytes() for smear in example_smears()[:2]]
    entry = entry_dir(BUNDLED_STORE, BUNDLED_MODEL)
    with mlserver_serving(entry, BUNDLED_MODEL, BUNDLED_VERSION, tmp_path) as base_url:
        answers = [
            httpx.post(f"{base_url}/v2/models/{BUNDLED_MODEL}/infer", **body, timeout=60).json()
            for body in v2_bodies(smears)
        ]
    runtime = ModelRuntime(*load_entry(entry), entry, "CPU:0")
    for answer, smear in zip(answers, smears, strict=True):
        (output,) = answer["outputs"]
        assert (output["name"], output["shape"]) == ("probabilities", [1, 4])
        expected = runtime.predict(runtime.preprocess(decode_image(smear, 25_000_000))[None])
        np.testing.assert_allclose(output["data"], expected[0], atol=1e-5)
