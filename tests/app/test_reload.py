"""Model versions through a real uvicorn server on a temporary store: a reload under a
steady stream of requests fails none of them, a tampered artefact is refused while the old
version keeps serving, SIGHUP reloads, a version can be chosen; the server's JSON log lines
record it all."""

import asyncio
import os
import signal

import httpx
import pytest
from PIL import Image

from model_core.store.manifest import MODEL_FILE
from tests.utils.files import corrupt
from tests.utils.images import encode, smear_like_rgb
from tests.utils.live_server import live_server
from tests.utils.logs import read_json_lines, wait_for_line
from tests.utils.models import copy_entry, publish_tiny_model

pytestmark = pytest.mark.slow

KEY = "reload-test-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
PNG = encode(Image.fromarray(smear_like_rgb(width=48, height=40)))
PIXELS = smear_like_rgb(width=40, height=32)
V2_BODY = {
    "inputs": [
        {
            "name": "pixels",
            "datatype": "UINT8",
            "shape": [1, 32, 40, 3],
            "data": PIXELS.ravel().tolist(),
        }
    ]
}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    store = tmp_path_factory.mktemp("versions")
    publish_tiny_model(store)
    return store


@pytest.fixture(scope="module")
def server(store, tmp_path_factory):
    """(process, http client, log file) of a server whose store the tests add versions to."""
    log_file = tmp_path_factory.mktemp("logs") / "server.log"
    env = {"WBC_STORE_DIR": str(store), "WBC_MODEL_NAME": "tiny", "WBC_API_KEY": KEY}
    with (
        live_server(env, log_file=log_file) as server,
        httpx.Client(base_url=server.url, headers=AUTH, timeout=60) as http,
    ):
        yield server.process, http, log_file


def served_version(http) -> int:
    return http.get("/models").json()["models"][0]["version"]


def answered_version(response: httpx.Response) -> int | None:
    if response.status_code != 200:
        return None
    body = response.json()
    return body["model"]["version"] if "model" in body else int(body["model_version"])


async def steady_load(base_url: str, action, workers: int = 4, around: int = 20):
    """Requests from `workers` clients back to back, /predict and v2 infer alternately:
    `around` answers before `action(http)`, those during it, and `around` answers after it;
    returns (its result, [(status, version)]). Counted answers, not a clock, mark before and
    after."""
    answers: list[tuple[int | str, int | None]] = []
    answered = asyncio.Condition()
    stop = asyncio.Event()
    async with httpx.AsyncClient(base_url=base_url, headers=AUTH, timeout=60) as http:

        async def client(index: int) -> None:
            while not stop.is_set():
                try:
                    if index % 2:
                        response = await http.post(
                            "/predict", files={"file": ("a.png", PNG, "image/png")}
                        )
                    else:
                        response = await http.post("/v2/models/tiny/infer", json=V2_BODY)
                    answer = (response.status_code, answered_version(response))
                except httpx.TransportError as error:
                    answer = (repr(error), None)
                async with answered:
                    answers.append(answer)
                    answered.notify_all()

        async def until_answered(count: int) -> None:
            async with answered:
                await answered.wait_for(lambda: len(answers) >= count)

        tasks = [asyncio.create_task(client(i)) for i in range(workers)]
        await until_answered(around)
        result = await action(http)
        await until_answered(len(answers) + around)  # enough answers from the new version
        stop.set()
        await asyncio.gather(*tasks)
    return result, answers


def test_reload_under_steady_load_fails_no_request(server, store):
    _, http, _ = server
    before = served_version(http)
    _, manifest, _ = publish_tiny_model(store)

    async def reload(client):
        return await client.post("/admin/reload")

    reloaded, answers = asyncio.run(steady_load(str(http.base_url), reload))
    assert reloaded.status_code == 200, reloaded.text
    assert reloaded.json() == {
        "status": "reloaded",
        "model": {"name": "tiny", "version": manifest.version},
        "previous": {"name": "tiny", "version": before},
    }
    failures = [answer for answer in answers if answer[0] != 200]
    assert not failures, f"{len(failures)} of {len(answers)} requests failed: {failures[:5]}"
    versions = [version for _, version in answers]
    assert versions[0] == before and versions[-1] == manifest.version
    assert len(answers) > 40
    assert served_version(http) == manifest.version
    assert http.post("/admin/reload").json()["status"] == "unchanged"


def test_a_tampered_artefact_is_refused_and_the_old_version_keeps_serving(server, store):
    _, http, _ = server
    before = served_version(http)
    tampered = copy_entry(store / "tiny" / str(before), store, before + 1)
    corrupt(tampered / MODEL_FILE, at=1000)

    response = http.post("/admin/reload")
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "reload_failed"
    assert "SHA-256" in error["message"] and MODEL_FILE in error["message"]
    assert f"still serving tiny version {before}" in error["message"]
    assert served_version(http) == before
    assert http.get("/health/ready").status_code == 200
    predicted = http.post("/predict", files={"file": ("a.png", PNG, "image/png")})
    assert predicted.status_code == 200 and predicted.json()["model"]["version"] == before
    metrics = http.get("/metrics").text
    assert 'wbc_model_reloads_total{result="failed"} 1.0' in metrics
    assert f'version="{before + 1}"' not in metrics


def test_a_version_can_be_chosen_and_a_missing_one_is_refused(server):
    _, http, _ = server
    before = served_version(http)
    chosen = http.post("/admin/reload", params={"version": 1})
    assert chosen.status_code == 200 and chosen.json()["model"]["version"] == 1
    missing = http.post("/admin/reload", params={"version": 99})
    assert missing.status_code == 409 and "no version 99" in missing.json()["error"]["message"]
    assert served_version(http) == 1
    back = http.post("/admin/reload", params={"version": before})
    assert back.json()["model"]["version"] == before


def test_sighup_reloads_the_newest_version(server, store):
    process, http, log_file = server
    _, manifest, _ = publish_tiny_model(store)
    os.kill(process.pid, signal.SIGHUP)
    loaded = wait_for_line(
        log_file,
        lambda line: line["event"] == "model_loaded" and line["version"] == manifest.version,
    )
    assert loaded["model"] == "tiny"
    assert served_version(http) == manifest.version
    assert http.get("/v2/models/tiny").json()["versions"] == [str(manifest.version)]


def test_the_server_log_records_loads_failures_and_requests(server):
    process, http, log_file = server
    http.get("/models", headers={"X-Request-ID": "from-the-log-test"})
    wait_for_line(log_file, lambda line: line.get("request_id") == "from-the-log-test")
    lines = read_json_lines(log_file)
    events = [line["event"] for line in lines]
    loads = [line for line in lines if line["event"] == "model_loaded"]
    assert len(loads) >= 4 and all(line["device"] in ("CPU:0", "GPU:0") for line in loads)
    assert all(line["load_seconds"] > 0 for line in loads)
    (failed,) = [
        line for line in lines if line["event"] == "reload_failed" and "SHA-256" in line["error"]
    ]
    assert failed["level"] == "error" and failed["serving"]["name"] == "tiny"
    requests = [line for line in lines if line["event"] == "request"]
    assert {line["model_version"] for line in requests} >= {1, 2}
    (mine,) = [line for line in requests if line["request_id"] == "from-the-log-test"]
    assert mine["route"] == "/models" and mine["status"] == 200
    assert events.count("api_open") == 0  # a key is configured
    assert process.poll() is None
