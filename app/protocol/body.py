"""How an infer request's body arrives: never more bytes than the limit, read or inflated,
then split into the JSON header and the binary tensor data that follows it (the binary
tensor data extension)."""

from __future__ import annotations

import zlib

from starlette.requests import Request

from app.errors import InvalidParameter, PayloadTooLarge, UnsupportedMediaType

HEADER_LENGTH = "Inference-Header-Content-Length"
# Content-Encoding -> zlib wbits; HTTP's "deflate" is the zlib format (RFC 9110).
_ENCODINGS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused (413) as soon as it passes `limit` bytes, compressed or not."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return _inflate(b"".join(chunks), request.headers.get("content-encoding", ""), limit)


def split_body(body: bytes, header_length: str | None) -> tuple[bytes, memoryview]:
    """(JSON header, binary tensor data); without the header-length header, all is JSON."""
    if header_length is None:
        return body, memoryview(b"")
    if not header_length.isdigit() or int(header_length) > len(body):
        raise InvalidParameter(
            f"{HEADER_LENGTH} is {header_length!r}; expected the JSON header's length in "
            f"bytes, at most the body's {len(body)}"
        )
    view = memoryview(body)
    return bytes(view[: int(header_length)]), view[int(header_length) :]


def _inflate(body: bytes, encoding: str, limit: int) -> bytes:
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in _ENCODINGS:
        raise UnsupportedMediaType(
            f"Content-Encoding {encoding!r} is not supported; send gzip, deflate or none"
        )
    inflater = zlib.decompressobj(_ENCODINGS[encoding])
    try:
        inflated = inflater.decompress(body, limit + 1)  # stops past the limit: no zip bomb
    except zlib.error as error:
        raise InvalidParameter(f"the {encoding} request body cannot be inflated: {error}") from None
    if len(inflated) > limit:
        raise _too_large(limit)
    return inflated


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"request body is larger than the limit of {limit} bytes")
