"""OpenAPI descriptions of the image bodies, which the routes read themselves (to enforce
the size limit while reading)."""

from typing import Any


def image_body(multiple: bool) -> dict:
    binary = {"type": "string", "format": "binary"}
    file_schema = {"type": "array", "items": binary} if multiple else binary
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "properties": {"file": file_schema},
                    }
                },
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["images"],
                        "properties": {
                            "images": {
                                "type": "array",
                                "items": {"type": "string"},
                                "description": "base64 images or data: URIs",
                                **({} if multiple else {"maxItems": 1}),
                            }
                        },
                    }
                },
            },
        }
    }


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "undecodable image"},
    413: {"description": "too many bytes, pixels or images"},
    415: {"description": "unsupported media type"},
    422: {"description": "bad parameter"},
    503: {
        "description": "model not ready, or `overloaded`: its queue is full (see the "
        "Retry-After header)"
    },
    504: {
        "description": "`deadline_exceeded`: the X-Request-Timeout (or default) deadline "
        "passed first"
    },
}
