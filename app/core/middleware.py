"""Per request: an id echoed in `X-Request-ID`, Prometheus counts and latency by route
template (not raw path, which would grow without bound), and one JSON log line."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.logs import log_event
from app.core.prometheus import Metrics
from app.core.schemas import ModelRef

REQUEST_ID_HEADER = "X-Request-ID"
UNMATCHED_ROUTE = "unmatched"
# A client's id is kept only if it cannot smuggle anything into logs or headers.
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


class ObserveRequests:
    """Pure ASGI middleware (no body buffering): ids, metrics and the request log."""

    def __init__(
        self, app: ASGIApp, metrics: Metrics, current_model: Callable[[], ModelRef | None]
    ) -> None:
        self.app, self.metrics, self.current_model = app, metrics, current_model

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        state = scope.setdefault("state", {})
        status = 500  # what the client gets if the app raises before answering

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message).append(REQUEST_ID_HEADER, request_id)
            await send(message)

        started = time.perf_counter()
        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            self.metrics.in_flight.dec()
            seconds = time.perf_counter() - started
            route = (
                getattr(scope.get("route"), "path", None) or state.get("route") or UNMATCHED_ROUTE
            )
            self.metrics.observe_request(scope["method"], route, status, seconds)
            # The version that answered (set when the request took the model), else the
            # current one.
            model = state.get("model") or self.current_model()
            client = scope.get("client")
            log_event(
                "request",
                request_id=request_id,
                method=scope["method"],
                route=route,
                path=scope["path"],
                status=status,
                latency_ms=round(seconds * 1000, 2),
                model=model.name if model else None,
                model_version=model.version if model else None,
                client=client[0] if client else None,
            )


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            offered = value.decode("latin-1")
            if _SANE_REQUEST_ID.fullmatch(offered):
                return offered
    return uuid.uuid4().hex
