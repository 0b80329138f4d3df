"""The request log of a real app: one JSON line per request with its id, route, status,
latency and model version, never the image; the id echoed in X-Request-ID. (A real
server's stdout is read in test_reload.py.)"""

import base64
import re

import pytest

from tests.conftest import BUNDLED_VERSION

FIELDS = {
    "time",
    "level",
    "event",
    "request_id",
    "method",
    "route",
    "path",
    "status",
    "latency_ms",
    "model",
    "model_version",
    "client",
}


def test_one_json_line_per_request_without_the_image(client, smear_files, event_log):
    payload = smear_files[0].read_bytes()
    response = client.post(
        "/predict",
        headers={"X-Request-ID": "trace-42.a:b"},
        files={"file": ("cell.jpeg", payload, "image/jpeg")},
    )
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "trace-42.a:b"
    (line,) = event_log.events("request")
    assert set(line) == FIELDS
    assert line["request_id"] == "trace-42.a:b" and line["level"] == "info"
    assert (line["method"], line["route"], line["path"], line["status"]) == (
        "POST",
        "/predict",
        "/predict",
        200,
    )
    assert (line["model"], line["model_version"]) == ("wbc-squeezenet", BUNDLED_VERSION)
    assert 0 < line["latency_ms"] < 60_000
    everything = "\n".join(event_log.raw)
    assert base64.b64encode(payload[:300]).decode()[:40] not in everything
    assert len(everything) < 1000


def test_errors_are_logged_under_their_route_template(client, event_log):
    client.get("/v2/models/some-other-model")
    client.post("/predict", content=b"not an image", headers={"content-type": "text/plain"})
    lines = event_log.events("request")
    assert [(line["route"], line["status"]) for line in lines] == [
        ("/v2/models/{model_name}", 404),
        ("/predict", 415),
    ]


@pytest.mark.parametrize("offered", [None, "", "x" * 129, "two words", "semi;colon", "ünïcode"])
def test_unusable_request_ids_are_replaced_by_fresh_ones(client, event_log, offered):
    headers = {} if offered is None else {"X-Request-ID": offered.encode("utf-8")}
    first = client.get("/health/live", headers=headers).headers["x-request-id"]
    second = client.get("/health/live", headers=headers).headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", first) and first != second
    assert [line["request_id"] for line in event_log.events("request")] == [first, second]
