"""Answers as JSON, serialised once."""

from __future__ import annotations

from fastapi.responses import Response
from pydantic import BaseModel


def json_answer(model: BaseModel) -> Response:
    """`model` as the JSON body of a 200, serialised by pydantic in one pass. A route that
    returns the model itself has FastAPI validate it again against the route's
    `response_model` and encode it with the standard library's json: for a /predict answer
    with its cells that was about a tenth of the request's CPU (docs/benchmarks.md). The
    route still declares `response_model`, for the OpenAPI schema."""
    return Response(model.model_dump_json(), media_type="application/json")
