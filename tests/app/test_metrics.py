"""GET /metrics, parsed with the Prometheus client's own parser, after real traffic."""

import base64

from prometheus_client.parser import text_string_to_metric_families

from app.core.prometheus import STAGES
from app.core.settings import Settings
from app.main import create_app
from tests.conftest import BUNDLED_VERSION


def scrape(client) -> dict[str, list]:
    """Samples by metric family name."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {family.name: family.samples for family in text_string_to_metric_families(response.text)}


def value(samples, sample_name: str, **labels) -> float:
    matching = [
        s.value
        for s in samples
        if s.name == sample_name
        and all(s.labels.get(key) == wanted for key, wanted in labels.items())
    ]
    assert len(matching) == 1, f"{sample_name}{labels}: {matching}"
    return matching[0]


def test_requests_stages_batches_and_model_are_measured(client, smear_files):
    before = scrape(client)
    payload = smear_files[0].read_bytes()
    files = [("file", (f"{i}.jpeg", payload, "image/jpeg")) for i in range(3)]
    assert client.post("/predict", files=files).status_code == 200
    assert client.post("/explain", files=files[:1]).status_code == 200
    assert (
        client.post(
            "/v2/models/wbc-squeezenet/infer",
            json={
                "inputs": [
                    {
                        "name": "images",
                        "datatype": "BYTES",
                        "shape": [1],
                        "data": [base64.b64encode(payload).decode()],
                    }
                ]
            },
        ).status_code
        == 200
    )
    assert client.get("/v2/models/nope").status_code == 404
    assert client.get("/no/such/route").status_code == 404
    after = scrape(client)

    def grew(family: str, sample_name: str, **labels) -> float:
        was = before.get(family, [])
        earlier = (
            value(was, sample_name, **labels)
            if any(
                s.name == sample_name and all(s.labels.get(k) == v for k, v in labels.items())
                for s in was
            )
            else 0.0
        )
        return value(after[family], sample_name, **labels) - earlier

    requests = "wbc_http_requests"
    assert (
        grew(requests, "wbc_http_requests_total", method="POST", route="/predict", status="200")
        == 1
    )
    assert (
        grew(
            requests,
            "wbc_http_requests_total",
            method="POST",
            route="/v2/models/{model_name}/infer",
            status="200",
        )
        == 1
    )
    # Route templates, never raw paths: unknown paths share one label.
    assert (
        grew(
            requests,
            "wbc_http_requests_total",
            method="GET",
            route="/v2/models/{model_name}",
            status="404",
        )
        == 1
    )
    assert (
        grew(requests, "wbc_http_requests_total", method="GET", route="unmatched", status="404")
        == 1
    )
    assert not [s for s in after[requests] if "nope" in s.labels.get("route", "")]
    assert (
        grew(
            "wbc_http_request_duration_seconds",
            "wbc_http_request_duration_seconds_count",
            method="POST",
            route="/explain",
        )
        == 1
    )

    stages = "wbc_stage_duration_seconds"
    assert {s.labels["stage"] for s in after[stages]} == set(STAGES)
    assert grew(stages, f"{stages}_count", stage="decode") == 5  # 3 + 1 + 1 images
    assert grew(stages, f"{stages}_count", stage="queue") == 5
    assert grew(stages, f"{stages}_count", stage="explanation") == 1
    assert grew(stages, f"{stages}_count", stage="encode") == 2  # the PNGs, the v2 tensor
    assert 1 <= grew(stages, f"{stages}_count", stage="inference") <= 4
    assert grew("wbc_batch_size", "wbc_batch_size_sum", pass_kind="inference") == 4
    assert grew("wbc_batch_size", "wbc_batch_size_sum", pass_kind="explanation") == 1

    assert value(after["wbc_http_requests_in_flight"], "wbc_http_requests_in_flight") == 1
    assert (
        value(
            after["wbc_model_info"],
            "wbc_model_info",
            name="wbc-squeezenet",
            version=str(BUNDLED_VERSION),
        )
        == 1
    )
    assert value(after["wbc_model_ready"], "wbc_model_ready") == 1
    assert value(after["wbc_model_load_seconds"], "wbc_model_load_seconds") > 0


def test_metrics_stay_open_when_api_keys_are_on(tiny_store):
    from fastapi.testclient import TestClient

    settings = Settings(store_dir=tiny_store, model_name="tiny", api_key="k" * 32)
    with TestClient(create_app(settings)) as client:
        assert client.get("/models").status_code == 401
        assert "wbc_model_info" in scrape(client)


def test_apps_in_one_process_keep_separate_registries():
    first, second = create_app(Settings()), create_app(Settings())
    assert first.state.metrics.registry is not second.state.metrics.registry
    first.state.metrics.reloads.labels("failed").inc()
    assert (
        second.state.metrics.registry.get_sample_value(
            "wbc_model_reloads_total", {"result": "failed"}
        )
        is None
    )
