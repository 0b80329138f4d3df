"""Admission: each kind of model work admits a bounded number of images, counted from
before a request's body is read until its answer starts. Past the limit a request is
refused at once (503 `overloaded`, Retry-After) by `AdmitModelWork`, an ASGI middleware in
front of routing, so a refusal costs no dependency, validation or decode (a small body is
read and dropped, a large one never read), and `HoldRefusedConnections` keeps a flood's
retries on the same connection to one per Retry-After. An admitted request carries a
deadline; when it passes, or the client goes away, the request's
work is cancelled, its place freed, and a pass it still waited for never runs."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import (
    Awaitable,
    Callable,
    Collection,
    Coroutine,
    Iterator,
    Mapping,
    Sequence,
)
from typing import Any, TypeVar

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.errors import (
    ClientDisconnected,
    DeadlineExceeded,
    InvalidParameter,
    Overloaded,
    ServiceError,
    error_response,
)
from app.core.prometheus import Metrics
from app.core.settings import Settings

T = TypeVar("T")
FORWARD, EXPLAIN = "forward", "explain"  # forward passes (/predict, /v2 infer); /explain
TIMEOUT_HEADER = "X-Request-Timeout"


class QueuePlace:
    """The dependency a route that does model work declares its queue with, where the route
    is defined (`ticket: Annotated[Ticket, Depends(QueuePlace(FORWARD))]`): it hands the
    route the `Ticket` that `AdmitModelWork` gave the request before routing."""

    def __init__(self, queue: str) -> None:
        self.queue = queue

    async def __call__(self, request: Request) -> Ticket:
        ticket = request.scope.get("state", {}).get("ticket")
        if ticket is None or ticket.queue != self.queue:
            raise RuntimeError(
                f"{request.method} {request.url.path} declares the {self.queue} queue, but "
                f"admission gave it {'no ticket' if ticket is None else ticket.queue}: is it "
                "in the routes ModelWorkRoutes.collect was given?"
            )
        return ticket


class ModelWorkRoutes:
    """Which routes do model work and in which queue, read off the routes' own declarations
    (`QueuePlace`) once the routers are included; the middleware asks it before routing."""

    def __init__(self) -> None:
        self._routes: list[tuple[APIRoute, str]] = []

    def collect(
        self,
        routes: Sequence[BaseRoute],
        queues: Collection[str],
        service_dependency: Callable[..., Any],
    ) -> None:
        """Read every route's queue. A POST route that takes the served model's service
        (`service_dependency`) but declares no queue, or a queue with no limit, is refused
        here, so the app never starts with a model route that admission would not bound."""
        for route in routes:
            if not isinstance(route, APIRoute):
                continue
            calls = [dependency.call for dependency in _dependencies(route.dependant)]
            declared = {call.queue for call in calls if isinstance(call, QueuePlace)}
            if len(declared) > 1 or not declared <= set(queues):
                raise RuntimeError(
                    f"{route.path} declares the queues {sorted(declared)}; "
                    f"expected one of {sorted(queues)}"
                )
            if declared:
                self._routes.append((route, declared.pop()))
            elif "POST" in (route.methods or ()) and service_dependency in calls:
                raise RuntimeError(
                    f"POST {route.path} runs model work but declares no queue: take its "
                    "ticket as Annotated[Ticket, Depends(QueuePlace(FORWARD or EXPLAIN))]"
                )

    def match(self, scope: Scope) -> tuple[str, str] | None:
        """The queue and route template of a request for model work; None for any other."""
        for route, queue in self._routes:
            if route.matches(scope)[0] is Match.FULL:
                return queue, route.path
        return None


def _dependencies(dependant: Dependant) -> Iterator[Dependant]:
    for dependency in dependant.dependencies:
        yield dependency
        yield from _dependencies(dependency)


class Admission:
    """The places of each queue, taken by requests before their work and given back after."""

    @classmethod
    def from_settings(cls, settings: Settings, metrics: Metrics) -> Admission:
        return cls(
            {FORWARD: settings.forward_queue_limit, EXPLAIN: settings.explain_queue_limit},
            settings.retry_after_s,
            metrics,
        )

    def __init__(self, limits: Mapping[str, int], retry_after_s: int, metrics: Metrics) -> None:
        self._limits, self._retry_after_s, self._metrics = dict(limits), retry_after_s, metrics
        self._held = dict.fromkeys(limits, 0)
        for queue, limit in limits.items():
            metrics.queue_limit.labels(queue).set(limit)
            metrics.queue_depth.labels(queue)  # shows from the start, at zero

    @property
    def queues(self) -> list[str]:
        """The queues this admission bounds."""
        return list(self._limits)

    def held(self, queue: str) -> int:
        """Images admitted to `queue` and not yet answered."""
        return self._held[queue]

    def admit(
        self, queue: str, timeout_s: float, disconnected: Callable[[], Awaitable[Any]] | None = None
    ) -> Ticket:
        """One place in `queue` now (Overloaded if there is none) for a request whose deadline
        is `timeout_s` away; `disconnected` returns when its client goes away."""
        self._take(queue, 1)
        return Ticket(self, queue, timeout_s, disconnected)

    def _take(self, queue: str, images: int) -> None:
        held, limit = self._held[queue], self._limits[queue]
        if held + images > limit:
            self.shed(queue, "full")
            raise Overloaded(
                f"the {queue} queue is full ({held} of {limit} images admitted, this request "
                f"needs {images} more); retry after {self._retry_after_s} s or on another "
                "replica",
                self._retry_after_s,
            )
        self._held[queue] = held + images
        self._metrics.queue_depth.labels(queue).inc(images)

    def _give_back(self, queue: str, images: int) -> None:
        self._held[queue] -= images
        self._metrics.queue_depth.labels(queue).dec(images)

    def shed(self, queue: str, reason: str) -> None:
        self._metrics.requests_shed.labels(queue, reason).inc()


class Ticket:
    """One admitted request: its places in a queue and its deadline. `release()` gives the
    places back (once; later calls do nothing)."""

    def __init__(
        self,
        admission: Admission,
        queue: str,
        timeout_s: float,
        disconnected: Callable[[], Awaitable[Any]] | None,
    ) -> None:
        self._admission, self.queue, self._disconnected = admission, queue, disconnected
        self._images = 1
        self._admitted_at = time.monotonic()
        self.timeout_s = timeout_s

    def release(self) -> None:
        self._admission._give_back(self.queue, self._images)
        self._images = 0

    def need(self, images: int) -> None:
        """The request turned out to hold `images` images: take the places it lacks, or be
        refused (Overloaded) before anything is decoded."""
        if images > self._images:
            self._admission._take(self.queue, images - self._images)
            self._images = images

    def shorten(self, timeout_s: float | None) -> None:
        """Apply a deadline the body carries (the v2 `timeout` parameter), if it is sooner."""
        if timeout_s is not None:
            self.timeout_s = min(self.timeout_s, timeout_s)

    async def run(self, work: Coroutine[Any, Any, T], watch_client: bool = True) -> T:
        """Await `work`, cancelling it when the deadline passes (504) or the client goes
        away (499): its queued items are then skipped by the batcher, never run. Reading the
        upload runs with `watch_client=False` (the client-gone watch would compete with it
        for the request's messages), so a stalled upload meets the deadline alone."""
        remaining = self._admitted_at + self.timeout_s - time.monotonic()
        if remaining <= 0:
            work.close()
            raise self._expired()
        task = asyncio.ensure_future(work)
        gone = (
            asyncio.ensure_future(self._disconnected())
            if watch_client and self._disconnected is not None
            else None
        )
        waiting = {task} if gone is None else {task, gone}
        try:
            done, _ = await asyncio.wait(
                waiting, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for pending in waiting:
                pending.cancel()
            await asyncio.gather(*waiting, return_exceptions=True)
        if task in done:
            return task.result()
        if gone is not None and gone in done:
            self._admission.shed(self.queue, "disconnected")
            raise ClientDisconnected("the client closed the connection while its request waited")
        raise self._expired()

    def _expired(self) -> DeadlineExceeded:
        self._admission.shed(self.queue, "deadline")
        return DeadlineExceeded(
            f"the request's deadline of {self.timeout_s:g} s passed before "
            "it was answered; nothing more runs for it"
        )


def request_timeout(header: str | None, default_s: float) -> float:
    """A request's deadline in seconds: the X-Request-Timeout header (seconds, > 0) if it is
    sooner than the default, else the default."""
    if header is None:
        return default_s
    try:
        seconds = float(header)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise InvalidParameter(
            f"{TIMEOUT_HEADER} must be a positive number of seconds; received {header!r}",
            code="invalid_timeout",
        )
    return min(seconds, default_s)


async def client_gone(receive: Receive) -> None:
    """Returns once the ASGI server reports the client gone (after the body was read)."""
    while (await receive())["type"] != "http.disconnect":
        pass


class HoldRefusedConnections:
    """Pure ASGI middleware, outermost: a request refused as overloaded whose body was read
    (`drain_small_body`) gets its whole answer at once (503, Retry-After, the body complete
    by Content-Length). When its connection was refused before, within twice `hold_s`, the
    connection is then not read again for `hold_s` seconds: the answer's end is held back,
    and the server reads a connection's next request only once the last one has ended. A
    client refused once may send its next request at once (another route may have room); a
    connection that retries on and on, as a flood's do, waits the Retry-After it was given
    each time and costs the event loop one refusal per `hold_s`, and admitted requests
    keep their share of the loop. Other answers pass untouched."""

    def __init__(self, app: ASGIApp, hold_s: float) -> None:
        self.app, self.hold_s = app, hold_s
        self._last_refused: dict[Any, float] = {}  # connection (client address) -> when

    def _refused_again(self, connection: Any) -> bool:
        """Note a refusal on `connection`; whether it had one within 2 x hold_s."""
        now = time.monotonic()
        before = self._last_refused.get(connection)
        self._last_refused[connection] = now
        if len(self._last_refused) > MAX_TRACKED_CONNECTIONS:
            self._last_refused = {
                key: at for key, at in self._last_refused.items() if now - at <= 2 * self.hold_s
            }
        return before is not None and now - before <= 2 * self.hold_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.hold_s <= 0:
            await self.app(scope, receive, send)
            return
        held = False

        async def send_holding_the_end(message: Message) -> None:
            nonlocal held
            if (
                message["type"] == "http.response.body"
                and not message.get("more_body", False)
                and scope.get("state", {}).get("refused_overloaded")
                and scope.get("client") is not None  # else no telling connections apart
                and self._refused_again(scope["client"])
            ):
                held, message = True, {**message, "more_body": True}
            await send(message)

        await self.app(scope, receive, send_holding_the_end)
        if held:
            await asyncio.sleep(self.hold_s)
            await send({"type": "http.response.body", "body": b"", "more_body": False})


MAX_TRACKED_CONNECTIONS = 4096
"""Past this many connections remembered as refused, those refused longer ago than twice
the hold are forgotten."""


DRAIN_BYTES, DRAIN_S = 1 << 20, 0.05
"""A refused request's body is read (and dropped) before the refusal is sent when it is
declared at most DRAIN_BYTES long, for at most DRAIN_S seconds."""


async def drain_small_body(headers: Headers, receive: Receive) -> bool:
    """Read what arrives of a small request body (Content-Length at most DRAIN_BYTES) for
    at most DRAIN_S; whether all of it was read. Were a refusal sent before the body
    arrived, on a connection the server then closes, the rest of the body would meet a
    closed socket: the kernel answers that with a reset, which can destroy the refusal
    before the client reads it (a dropped request instead of a 503). A larger or
    unannounced body is never read: the refusal goes out at once and the connection
    closes."""
    try:
        declared = int(headers.get("content-length", ""))
    except ValueError:
        return False
    if declared == 0:
        return True
    if not 0 < declared <= DRAIN_BYTES:
        return False

    async def read_to_the_end() -> bool:
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return False  # the client went away
            if not message.get("more_body", False):
                return True

    try:
        return await asyncio.wait_for(read_to_the_end(), DRAIN_S)
    except TimeoutError:
        return False


class AdmitModelWork:
    """Pure ASGI middleware: gives each request for model work a `Ticket` (in
    `scope["state"]["ticket"]`, for the route) or refuses it before routing; the ticket's
    places go back as the answer starts, before the client can send its next request.

    `authenticate` (raising a ServiceError) runs first: a request without a valid API key is
    refused (401) without ever holding a place that a keyed caller would then lose."""

    def __init__(
        self,
        app: ASGIApp,
        admission: Admission,
        routes: ModelWorkRoutes,
        default_timeout_s: float,
        authenticate: Callable[[Headers], None],
    ) -> None:
        self.app, self.admission, self.default_timeout_s = app, admission, default_timeout_s
        self.routes, self.authenticate = routes, authenticate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        work = self.routes.match(scope) if scope["type"] == "http" else None
        if work is None:
            await self.app(scope, receive, send)
            return
        queue, template = work
        headers = Headers(scope=scope)
        try:
            self.authenticate(headers)
            timeout_s = request_timeout(headers.get(TIMEOUT_HEADER), self.default_timeout_s)
            ticket = self.admission.admit(queue, timeout_s, lambda: client_gone(receive))
        except ServiceError as error:
            # Refused before routing: name the route the request was for, for the request
            # metrics and log line.
            state = scope.setdefault("state", {})
            state["route"] = template
            # A connection whose body was read stays open, and HoldRefusedConnections holds it.
            drained = await drain_small_body(headers, receive)
            state["refused_overloaded"] = drained and isinstance(error, Overloaded)
            await error_response(Request(scope), error)(scope, receive, send)
            return
        scope.setdefault("state", {})["ticket"] = ticket

        async def send_after_release(message: Message) -> None:
            if message["type"] == "http.response.start":
                ticket.release()
            await send(message)

        try:
            await self.app(scope, receive, send_after_release)
        finally:
            ticket.release()
