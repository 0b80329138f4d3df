"""Admission on its own: bounded places per queue, refusals, deadlines and disconnects, each
counted, and every place given back however the request ends."""

import asyncio

import pytest
from starlette.datastructures import Headers

from app.core.errors import ClientDisconnected, DeadlineExceeded, InvalidParameter, Overloaded
from app.core.prometheus import Metrics
from app.engine.admission import (
    DRAIN_BYTES,
    EXPLAIN,
    FORWARD,
    Admission,
    HoldRefusedConnections,
    ModelWorkRoutes,
    QueuePlace,
    drain_small_body,
    request_timeout,
)


def _admission(forward: int = 3, explain: int = 1) -> tuple[Admission, Metrics]:
    metrics = Metrics()
    return Admission({FORWARD: forward, EXPLAIN: explain}, 2, metrics), metrics


def _sample(metrics: Metrics, name: str, **labels) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def test_places_are_bounded_per_queue_and_given_back_once():
    admission, metrics = _admission()
    first, second = admission.admit(FORWARD, 10.0), admission.admit(FORWARD, 10.0)
    first.need(2)  # the body held two images: one more place
    assert admission.held(FORWARD) == 3
    assert _sample(metrics, "wbc_queue_depth", queue=FORWARD) == 3
    with pytest.raises(Overloaded) as refused:
        admission.admit(FORWARD, 10.0)
    assert refused.value.status_code == 503 and refused.value.code == "overloaded"
    assert refused.value.headers == {"Retry-After": "2"}
    explaining = admission.admit(EXPLAIN, 10.0)  # the other queue has its own places
    with pytest.raises(Overloaded):
        admission.admit(EXPLAIN, 10.0)
    for ticket in (first, second, explaining, first):  # a second release gives back nothing
        ticket.release()
    assert admission.held(FORWARD) == admission.held(EXPLAIN) == 0
    assert _sample(metrics, "wbc_queue_depth", queue=FORWARD) == 0
    assert _sample(metrics, "wbc_queue_limit", queue=FORWARD) == 3
    assert _sample(metrics, "wbc_requests_shed_total", queue=FORWARD, reason="full") == 1
    assert _sample(metrics, "wbc_requests_shed_total", queue=EXPLAIN, reason="full") == 1


def test_a_body_with_more_images_than_the_room_left_is_refused_before_decoding():
    admission, _ = _admission(forward=3)
    first, second = admission.admit(FORWARD, 10.0), admission.admit(FORWARD, 10.0)
    with pytest.raises(Overloaded, match="needs 2 more"):
        second.need(3)
    assert admission.held(FORWARD) == 2
    first.release()
    second.release()
    assert admission.held(FORWARD) == 0


async def _queued_forever(cancelled: asyncio.Event) -> None:
    """Work that never finishes and sets `cancelled` when it is cancelled."""
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        cancelled.set()
        raise


def test_work_past_its_deadline_is_cancelled_and_answered_504():
    admission, metrics = _admission()
    cancelled = asyncio.Event()

    async def scenario():
        ticket = admission.admit(FORWARD, 0.05)
        with pytest.raises(DeadlineExceeded) as expired:
            await ticket.run(_queued_forever(cancelled))
        ticket.release()
        return expired.value

    error = asyncio.run(scenario())
    assert error.status_code == 504 and error.code == "deadline_exceeded"
    assert cancelled.is_set()
    assert admission.held(FORWARD) == 0
    assert _sample(metrics, "wbc_requests_shed_total", queue=FORWARD, reason="deadline") == 1


def test_a_deadline_already_past_never_starts_the_work():
    admission, _ = _admission()
    started = []

    async def work():
        started.append(True)

    async def scenario():
        ticket = admission.admit(FORWARD, 10.0)
        ticket.shorten(-1.0)  # as if the upload itself outlasted the deadline
        with pytest.raises(DeadlineExceeded):
            await ticket.run(work())

    asyncio.run(scenario())
    assert started == []


def test_a_client_that_goes_away_frees_its_place_and_cancels_its_work():
    admission, metrics = _admission(explain=1)
    gone, cancelled = asyncio.Event(), asyncio.Event()

    async def scenario():
        ticket = admission.admit(EXPLAIN, 60.0, disconnected=gone.wait)
        asyncio.get_running_loop().call_soon(gone.set)
        with pytest.raises(ClientDisconnected):
            await ticket.run(_queued_forever(cancelled))
        ticket.release()
        admission.admit(EXPLAIN, 60.0).release()  # its place is free again

    asyncio.run(scenario())
    assert cancelled.is_set() and admission.held(EXPLAIN) == 0
    assert _sample(metrics, "wbc_requests_shed_total", queue=EXPLAIN, reason="disconnected") == 1


def test_finished_work_returns_its_result_and_its_errors():
    admission, _ = _admission()

    async def answer():
        return 42

    async def fail():
        raise ValueError("bad image")

    async def scenario():
        ticket = admission.admit(FORWARD, 10.0, disconnected=asyncio.Event().wait)
        assert await ticket.run(answer()) == 42
        with pytest.raises(ValueError, match="bad image"):
            await ticket.run(fail())
        ticket.release()

    asyncio.run(scenario())
    assert admission.held(FORWARD) == 0


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, 30.0),
        ("2.5", 2.5),
        ("1", 1.0),
        ("600", 30.0),  # never later than the default
    ],
)
def test_request_timeout_header(header, expected):
    assert request_timeout(header, 30.0) == expected


@pytest.mark.parametrize("header", ["0", "-1", "soon", "nan", "inf", ""])
def test_bad_request_timeout_header_is_422(header):
    with pytest.raises(InvalidParameter, match="X-Request-Timeout") as error:
        request_timeout(header, 30.0)
    assert error.value.code == "invalid_timeout"


def _scope(method: str, path: str, root_path: str = "") -> dict:
    return {
        "type": "http",
        "method": method,
        "path": root_path + path,
        "root_path": root_path,
        "headers": [],
        "query_string": b"",
    }


@pytest.mark.parametrize("root_path", ["", "/wbc"])
def test_model_work_routes_are_read_off_the_routes_own_queue_declarations(settings, root_path):
    """The middleware's table comes from the routes: the four that take a queue place are
    found with their queue and template (behind a proxy's prefix too), and no other route
    is ever refused."""
    from app.main import create_app

    application = create_app(settings)
    routes = application.user_middleware[-1].kwargs["routes"]
    assert isinstance(routes, ModelWorkRoutes)
    assert routes.match(_scope("POST", "/predict", root_path)) == (FORWARD, "/predict")
    assert routes.match(_scope("POST", "/explain", root_path)) == (EXPLAIN, "/explain")
    assert routes.match(_scope("POST", "/v2/models/m/infer", root_path)) == (
        FORWARD,
        "/v2/models/{model_name}/infer",
    )
    assert routes.match(_scope("POST", "/v2/models/m/versions/1/infer", root_path)) == (
        FORWARD,
        "/v2/models/{model_name}/versions/{model_version}/infer",
    )
    for method, path in [
        ("GET", "/predict"),
        ("GET", "/models"),
        ("POST", "/admin/reload"),
        ("GET", "/v2/models/m"),
        ("GET", "/health/ready"),
        ("POST", "/nope"),
    ]:
        assert routes.match(_scope(method, path, root_path)) is None, (method, path)
    assert len(routes._routes) == 4  # /predict, /explain, v2 infer with and without a version


def test_a_model_route_that_declares_no_queue_cannot_start_the_app(settings):
    """A POST route that takes the served model's service without a queue place would run
    model work unbounded: building the app refuses it, naming the route."""
    from fastapi import APIRouter

    from app.api.dependencies import ServiceDep
    from app.api.routes import predict
    from app.main import create_app

    forgetful = APIRouter()

    @forgetful.post("/classify-unbounded")
    async def classify(service: ServiceDep) -> dict:
        return {}

    predict.router.routes.extend(forgetful.routes)
    try:
        with pytest.raises(
            RuntimeError, match="/classify-unbounded runs model work but declares no queue"
        ):
            create_app(settings)
    finally:
        predict.router.routes[:] = [
            r for r in predict.router.routes if getattr(r, "path", "") != "/classify-unbounded"
        ]


def test_a_route_declaring_a_queue_without_a_limit_cannot_start_the_app():
    from typing import Annotated

    from fastapi import Depends, FastAPI

    application = FastAPI()

    @application.post("/x")
    async def x(ticket: Annotated[object, Depends(QueuePlace("gpu"))]) -> dict:
        return {}

    with pytest.raises(RuntimeError, match="declares the queues \\['gpu'\\]"):
        ModelWorkRoutes().collect(application.routes, [FORWARD, EXPLAIN], lambda: None)


def test_a_forward_queue_too_small_for_the_largest_request_refuses_to_start():
    from pydantic import ValidationError

    from app.core.settings import Settings

    with pytest.raises(ValidationError, match="could never be admitted"):
        Settings(max_request_images=32, forward_queue_limit=16)
    assert Settings(max_request_images=16, forward_queue_limit=16).forward_queue_limit == 16


def test_a_ticket_of_another_queue_is_refused_by_name():
    """A route whose declared queue is not the one admission gave it fails with a message
    naming both, not with a bare KeyError."""
    from starlette.requests import Request

    admission, _ = _admission()
    scope = _scope("POST", "/explain") | {"state": {"ticket": admission.admit(FORWARD, 1.0)}}
    with pytest.raises(
        RuntimeError, match="declares the explain queue, but admission gave it forward"
    ):
        asyncio.run(QueuePlace(EXPLAIN)(Request(scope)))


def _receiving(*messages: dict):
    """An ASGI `receive` that hands out `messages`, then waits forever (a client that sends
    nothing more)."""
    queue = list(messages)

    async def receive() -> dict:
        if queue:
            return queue.pop(0)
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    return receive


def _headers(length: str | None) -> Headers:
    return Headers({} if length is None else {"content-length": length})


def test_a_small_refused_body_is_read_to_its_end_before_the_refusal():
    chunks = (
        {"type": "http.request", "body": b"a" * 10, "more_body": True},
        {"type": "http.request", "body": b"b" * 10, "more_body": False},
    )
    receive = _receiving(*chunks)
    assert asyncio.run(drain_small_body(_headers("20"), receive)) is True
    assert asyncio.run(drain_small_body(_headers("0"), _receiving())) is True


@pytest.mark.parametrize(
    "length, messages",
    [
        (str(DRAIN_BYTES + 1), ()),  # too large to read: refused at once, never read
        (None, ()),  # unannounced (chunked)
        ("nonsense", ()),
        ("20", ({"type": "http.request", "body": b"a", "more_body": True},)),  # stalls
        ("20", ({"type": "http.disconnect"},)),  # the client went away
    ],
)
def test_a_refused_body_that_is_large_unannounced_or_stalled_is_not_waited_for(length, messages):
    drained = asyncio.run(
        asyncio.wait_for(drain_small_body(_headers(length), _receiving(*messages)), 5)
    )
    assert drained is False


def _answers_of(
    refused_overloaded: bool, hold_s: float, clients: list[tuple[str, int] | None]
) -> list[list[dict]]:
    """The messages one HoldRefusedConnections sends for an app that answers 503 with a
    body, having marked the request refused (or not), for a request from each of `clients`
    (a connection's address) in turn."""

    async def app(scope, receive, send) -> None:
        scope.setdefault("state", {})["refused_overloaded"] = refused_overloaded
        await send({"type": "http.response.start", "status": 503, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    middleware = HoldRefusedConnections(app, hold_s)
    answers: list[list[dict]] = []
    for client in clients:
        sent: list[dict] = []

        async def send(message: dict, sent: list[dict] = sent) -> None:
            sent.append(message)

        scope = {"type": "http", "state": {}, "client": client}
        asyncio.run(middleware(scope, _receiving(), send))
        answers.append(sent)
    return answers


WHOLE = [{"type": "http.response.body", "body": b"{}"}]
HELD = [
    # The body goes out complete (more to come only for the server: the connection's next
    # request is read once the empty last part has gone).
    {"type": "http.response.body", "body": b"{}", "more_body": True},
    {"type": "http.response.body", "body": b"", "more_body": False},
]


def test_a_connection_refused_again_is_held_after_its_whole_answer_and_others_are_not():
    flooder, other = ("10.0.0.1", 50000), ("10.0.0.1", 50001)
    answers = _answers_of(True, 0.1, [flooder, other, flooder, flooder])
    assert all(sent[0]["type"] == "http.response.start" for sent in answers)
    # A first refusal goes out whole: the client may send another request at once.
    assert answers[0][1:] == WHOLE and answers[1][1:] == WHOLE
    # The same connection refused again (within twice the hold) is held, each time.
    assert answers[2][1:] == HELD and answers[3][1:] == HELD


def test_other_answers_unknown_connections_and_a_zero_hold_pass_untouched():
    client = ("10.0.0.1", 50000)
    for refused, hold_s, clients in (
        (False, 0.01, [client, client]),
        (True, 0.0, [client, client]),
        (True, 0.01, [None, None]),
    ):
        for sent in _answers_of(refused, hold_s, clients):
            assert sent[1:] == WHOLE
