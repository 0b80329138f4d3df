"""Past capacity through a real uvicorn server on a loopback port, the tiny model behind it
and small queue limits. The server runs in this process, so a test can hold the one
TensorFlow worker busy and fill the queues deterministically; every assertion is on
statuses and counts, never on timings."""

from __future__ import annotations

import asyncio
import base64
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from app.core.settings import Settings
from app.engine.admission import EXPLAIN, FORWARD
from tests.utils.images import encode, smear_like_rgb
from tests.utils.live_server import live_server

FORWARD_LIMIT, EXPLAIN_LIMIT = 4, 2
IMAGE = encode(Image.fromarray(smear_like_rgb(64, 48)))
UPLOAD = {"files": {"file": ("cell.png", IMAGE, "image/png")}}
# Generous: an admitted request waits while the test holds the worker.
CLIENT_TIMEOUT_S = 120.0


@dataclass
class Server:
    base_url: str
    app: object

    @property
    def service(self):
        return self.app.state.models.service

    def hold_worker(self) -> threading.Event:
        """Keep every thread of the model worker busy until the returned event is set."""
        worker = self.service._executor
        gate, started = threading.Event(), threading.Semaphore(0)
        for _ in range(worker.threads):
            worker.submit_to(FORWARD, lambda: (started.release(), gate.wait()))
        for _ in range(worker.threads):
            assert started.acquire(timeout=60), "the worker never picked the blocking jobs"
        return gate

    def metric(self, name: str, **labels: str) -> float:
        text = httpx.get(self.base_url + "/metrics", timeout=30).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(
                    sample.labels.get(k) == v for k, v in labels.items()
                ):
                    return sample.value
        return 0.0


@pytest.fixture(scope="module")
def server(tiny_store) -> Iterator[Server]:
    settings = Settings(
        store_dir=tiny_store,
        model_name="tiny",
        max_request_images=4,
        forward_queue_limit=FORWARD_LIMIT,
        explain_queue_limit=EXPLAIN_LIMIT,
        retry_after_s=3,
    )
    with live_server(settings, in_process=True) as live:
        yield Server(live.url, live.app)


def v2_body(timeout_us: int | None = None) -> dict:
    body = {
        "inputs": [
            {
                "name": "images",
                "datatype": "BYTES",
                "shape": [1],
                "data": [base64.b64encode(IMAGE).decode()],
            }
        ]
    }
    if timeout_us is not None:
        body["parameters"] = {"timeout": timeout_us}
    return {"json": body}


async def flood(
    server: Server, path: str, request: dict, count: int, refusals: int, gate: threading.Event
) -> list[httpx.Response]:
    """Send `count` requests at once; once `refusals` have come back (the worker is held,
    so only refusals can), check the queue and readiness, let the worker go, collect all."""
    async with httpx.AsyncClient(base_url=server.base_url, timeout=CLIENT_TIMEOUT_S) as client:
        tasks = [asyncio.create_task(client.post(path, **request)) for _ in range(count)]
        pending = set(tasks)
        while len(tasks) - len(pending) < refusals:
            _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        ready = await client.get("/health/ready")
        v2_ready = await client.get("/v2/health/ready")
        assert ready.status_code == v2_ready.status_code == 200  # overloaded is not unready
        gate.set()
        return list(await asyncio.gather(*tasks))


def _decodes(server: Server) -> float:
    return server.metric("wbc_stage_duration_seconds_count", stage="decode")


def _forward_images(server: Server) -> float:
    return server.metric("wbc_batch_size_sum", pass_kind="inference")


@pytest.mark.parametrize(
    ("path", "queue", "limit"),
    [
        ("/predict", FORWARD, FORWARD_LIMIT),
        ("/explain?method=gradcam", EXPLAIN, EXPLAIN_LIMIT),
    ],
)
def test_past_capacity_the_rest_is_refused_at_once_with_retry_after(server, path, queue, limit):
    sent = limit + 5
    decoded_before = _decodes(server)
    refused_before = server.metric("wbc_requests_shed_total", queue=queue, reason="full")
    gate = server.hold_worker()
    try:
        responses = asyncio.run(flood(server, path, UPLOAD, sent, sent - limit, gate))
    finally:
        gate.set()
    statuses = Counter(response.status_code for response in responses)
    assert statuses == {200: limit, 503: sent - limit} and sum(statuses.values()) == sent
    for response in responses:
        if response.status_code == 503:
            assert response.headers["Retry-After"] == "3"
            assert response.json()["error"]["code"] == "overloaded"
    # Nothing was decoded for a refused request: one decode per admitted image.
    assert _decodes(server) - decoded_before == limit
    assert (
        server.metric("wbc_requests_shed_total", queue=queue, reason="full") - refused_before
        == sent - limit
    )
    assert server.metric("wbc_queue_depth", queue=queue) == 0
    assert (
        httpx.post(server.base_url + path, **UPLOAD, timeout=CLIENT_TIMEOUT_S).status_code == 200
    )  # and afterwards it answers normally


def test_v2_refusals_take_the_protocols_shape(server):
    gate = server.hold_worker()
    try:
        responses = asyncio.run(
            flood(server, "/v2/models/tiny/infer", v2_body(), FORWARD_LIMIT + 2, 2, gate)
        )
    finally:
        gate.set()
    statuses = Counter(response.status_code for response in responses)
    assert statuses == {200: FORWARD_LIMIT, 503: 2}
    refused = [r for r in responses if r.status_code == 503]
    assert all(
        set(r.json()) == {"error"}
        and isinstance(r.json()["error"], str)
        and r.headers["Retry-After"] == "3"
        for r in refused
    )


def test_a_request_whose_body_needs_more_room_than_is_left_is_refused(server):
    gate = server.hold_worker()
    try:

        async def scenario():
            async with httpx.AsyncClient(
                base_url=server.base_url, timeout=CLIENT_TIMEOUT_S
            ) as client:
                holders = [
                    asyncio.create_task(client.post("/predict", **UPLOAD))
                    for _ in range(FORWARD_LIMIT - 1)
                ]
                while server.app.state.admission.held(FORWARD) < FORWARD_LIMIT - 1:
                    await asyncio.sleep(0.02)
                files = [("file", ("cell.png", IMAGE, "image/png"))] * 2
                refused = await client.post("/predict", files=files)
                gate.set()
                return refused, await asyncio.gather(*holders)

        refused, held = asyncio.run(scenario())
    finally:
        gate.set()
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "overloaded"
    assert [r.status_code for r in held] == [200] * (FORWARD_LIMIT - 1)


@pytest.mark.parametrize("kind", ["header", "v2 parameter"])
def test_a_request_still_queued_at_its_deadline_is_answered_504_and_never_run(server, kind):
    if kind == "header":
        path, request = "/predict", {**UPLOAD, "headers": {"X-Request-Timeout": "0.2"}}
    else:
        path, request = "/v2/models/tiny/infer", v2_body(timeout_us=200_000)
    expired_before = server.metric("wbc_requests_shed_total", queue=FORWARD, reason="deadline")
    ran_before = _forward_images(server)
    gate = server.hold_worker()
    try:
        expired = httpx.post(server.base_url + path, **request, timeout=CLIENT_TIMEOUT_S)
    finally:
        gate.set()
    assert expired.status_code == 504
    body = expired.json()
    code = body["error"] if kind == "v2 parameter" else body["error"]["code"]
    assert "deadline" in code
    assert (
        server.metric("wbc_requests_shed_total", queue=FORWARD, reason="deadline") - expired_before
        == 1
    )
    # One more request runs once the worker is free: the pass counts its image only.
    assert (
        httpx.post(server.base_url + "/predict", **UPLOAD, timeout=CLIENT_TIMEOUT_S).status_code
        == 200
    )
    assert _forward_images(server) - ran_before == 1
    assert server.metric("wbc_queue_depth", queue=FORWARD) == 0


def test_a_client_that_disconnects_while_queued_frees_its_place(server):
    gone_before = server.metric("wbc_requests_shed_total", queue=FORWARD, reason="disconnected")
    ran_before = _forward_images(server)
    gate = server.hold_worker()
    try:
        with pytest.raises(httpx.ReadTimeout):  # the client gives up and closes
            httpx.post(
                server.base_url + "/predict",
                **UPLOAD,
                timeout=httpx.Timeout(CLIENT_TIMEOUT_S, read=1.0),
            )
        for _ in range(600):  # the server notices the closed connection
            if server.metric("wbc_queue_depth", queue=FORWARD) == 0:
                break
            threading.Event().wait(0.1)
        assert server.metric("wbc_queue_depth", queue=FORWARD) == 0
        assert server.app.state.admission.held(FORWARD) == 0
    finally:
        gate.set()
    assert (
        server.metric("wbc_requests_shed_total", queue=FORWARD, reason="disconnected") - gone_before
        == 1
    )
    assert (
        httpx.post(server.base_url + "/predict", **UPLOAD, timeout=CLIENT_TIMEOUT_S).status_code
        == 200
    )
    assert _forward_images(server) - ran_before == 1  # the abandoned image never ran


@pytest.mark.parametrize(("header", "status"), [("soon", 422), ("0", 422), ("5", 200)])
def test_the_timeout_header_is_checked(server, header, status):
    response = httpx.post(
        server.base_url + "/predict",
        **UPLOAD,
        headers={"X-Request-Timeout": header},
        timeout=CLIENT_TIMEOUT_S,
    )
    assert response.status_code == status
    if status == 422:
        assert response.json()["error"]["code"] == "invalid_timeout"


def test_a_bad_v2_timeout_parameter_is_400(server):
    response = httpx.post(
        server.base_url + "/v2/models/tiny/infer",
        **v2_body(timeout_us=-5),
        timeout=CLIENT_TIMEOUT_S,
    )
    assert response.status_code == 400 and "timeout" in response.json()["error"]
    assert server.metric("wbc_queue_depth", queue=FORWARD) == 0


KEY = "overload-test-key-0123456789"


@pytest.fixture(scope="module")
def keyed_server(tiny_store) -> Iterator[Server]:
    settings = Settings(
        store_dir=tiny_store,
        model_name="tiny",
        api_key=KEY,
        max_request_images=4,
        forward_queue_limit=FORWARD_LIMIT,
        explain_queue_limit=EXPLAIN_LIMIT,
    )
    with live_server(settings, in_process=True) as live:
        yield Server(live.url, live.app)


@pytest.mark.parametrize(
    ("path", "queue", "limit"),
    [
        ("/predict", FORWARD, FORWARD_LIMIT),
        ("/explain?method=gradcam", EXPLAIN, EXPLAIN_LIMIT),
    ],
)
def test_a_request_without_a_valid_key_never_takes_a_queue_place(keyed_server, path, queue, limit):
    """Callers without a key cannot crowd out keyed ones: with every place held by keyed
    callers (the worker held), a caller without a valid key still gets 401, not 503, and
    is not counted as shed; none of them ever held a place."""
    headers = {"X-API-Key": KEY}
    shed_before = keyed_server.metric("wbc_requests_shed_total", queue=queue, reason="full")
    gate = keyed_server.hold_worker()
    try:

        async def scenario() -> tuple[list[httpx.Response], list[httpx.Response]]:
            async with httpx.AsyncClient(
                base_url=keyed_server.base_url, timeout=CLIENT_TIMEOUT_S
            ) as client:
                keyed = [
                    asyncio.create_task(client.post(path, **UPLOAD, headers=headers))
                    for _ in range(limit)
                ]
                while keyed_server.metric("wbc_queue_depth", queue=queue) < limit:
                    await asyncio.sleep(0.05)  # every place is held by a keyed caller
                strangers = await asyncio.gather(
                    *(client.post(path, **UPLOAD) for _ in range(3)),
                    *(
                        client.post(path, **UPLOAD, headers={"X-API-Key": "wrong-" + KEY})
                        for _ in range(3)
                    ),
                )
                assert keyed_server.metric("wbc_queue_depth", queue=queue) == limit
                gate.set()
                return strangers, list(await asyncio.gather(*keyed))

        strangers, keyed = asyncio.run(scenario())
    finally:
        gate.set()
    assert [r.status_code for r in strangers] == [401] * len(strangers)
    assert {r.json()["error"]["code"] for r in strangers} == {"unauthorized"}
    assert all(r.headers["WWW-Authenticate"].startswith("Bearer") for r in strangers)
    assert [r.status_code for r in keyed] == [200] * len(keyed)
    shed = keyed_server.metric("wbc_requests_shed_total", queue=queue, reason="full")
    assert shed == shed_before
