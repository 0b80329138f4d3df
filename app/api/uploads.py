"""Read the images of a request (multipart `file` fields or JSON base64), never more bytes
than the limit, whatever the client declares."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import zlib

from starlette.datastructures import UploadFile
from starlette.requests import ClientDisconnect, Request
from starlette.types import Message

from app.core.errors import (
    ClientDisconnected,
    InvalidImage,
    InvalidParameter,
    PayloadTooLarge,
    UnsupportedMediaType,
)

# Content-Encoding -> zlib wbits; HTTP's "deflate" is the zlib format (RFC 9110).
_ENCODINGS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
FILE_FIELD = "file"
# Declared part types we try to decode; anything else (text/plain, application/pdf) is 415.
_ACCEPTED_PART_TYPES = ("image/", "application/octet-stream")


class _LimitedReceive:
    """Wraps ASGI `receive` and stops the upload as soon as it passes `limit` bytes."""

    def __init__(self, receive, limit: int) -> None:
        self._receive, self._limit, self._received = receive, limit, 0

    async def __call__(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.request":
            self._received += len(message.get("body", b""))
            if self._received > self._limit:
                raise _too_large(self._limit)
        return message


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused (413) as soon as it passes `limit` bytes, compressed or not."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            chunks.append(chunk)
    except ClientDisconnect:
        raise _gone() from None
    return _inflate(b"".join(chunks), request.headers.get("content-encoding", ""), limit)


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


async def read_images(request: Request, max_bytes: int, max_images: int) -> list[bytes]:
    """The encoded images of a request, in order."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(max_bytes)
    limited = Request(request.scope, _LimitedReceive(request.receive, max_bytes))
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        try:
            images = await _from_multipart(limited, max_images)
        except ClientDisconnect:
            raise _gone() from None
    elif content_type == "application/json":
        images = await asyncio.to_thread(_from_json, await read_body(request, max_bytes))
    else:
        raise UnsupportedMediaType(
            "send images as multipart/form-data (field 'file') or application/json "
            f'({{"images": [base64, ...]}}); received Content-Type {content_type or "none"!r}'
        )
    if not images:
        raise InvalidParameter(
            f"no image in the request: expected multipart field {FILE_FIELD!r} or JSON "
            '{"images": [...]}',
            code="missing_image",
        )
    if len(images) > max_images:
        raise PayloadTooLarge(
            f"request holds {len(images)} images; the limit is {max_images}",
            code="too_many_images",
        )
    return images


async def _from_multipart(request: Request, max_images: int) -> list[bytes]:
    # The byte limit already bounds the parts; our own count check below answers 413.
    async with request.form(max_files=10_000, max_fields=10_000) as form:
        parts = form.getlist(FILE_FIELD)
        if not parts:
            raise InvalidParameter(
                f"multipart field {FILE_FIELD!r} is missing; received fields "
                f"{sorted(set(form.keys()))}",
                code="missing_image",
            )
        images = []
        for part in parts:
            if not isinstance(part, UploadFile):
                raise InvalidParameter(
                    f"field {FILE_FIELD!r} must be a file upload, not a text value",
                    code="missing_image",
                )
            declared = (part.content_type or "").lower()
            if declared and not declared.startswith(_ACCEPTED_PART_TYPES):
                raise UnsupportedMediaType(
                    f"file {part.filename!r} is declared as {declared!r}; expected an image "
                    "(JPEG, PNG, BMP, TIFF or WebP)"
                )
            images.append(await part.read())
        return images


def _from_json(body: bytes) -> list[bytes]:
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as error:
        raise InvalidParameter(f"request body is not valid JSON: {error}") from None
    if not isinstance(document, dict) or not isinstance(document.get("images"), list):
        raise InvalidParameter(
            'expected a JSON object {"images": ["<base64 or data: URI>", ...]}',
            code="missing_image",
        )
    return [_decode_base64(item, index) for index, item in enumerate(document["images"])]


def _decode_base64(item: object, index: int) -> bytes:
    if not isinstance(item, str):
        raise InvalidParameter(
            f"images[{index}] must be a base64 string, got {type(item).__name__}"
        )
    if item.startswith("data:"):
        header, _, item = item.partition(",")
        if ";base64" not in header:
            raise InvalidParameter(f"images[{index}] is a data: URI without ';base64'")
    try:
        return base64.b64decode(item, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidImage(f"images[{index}] is not valid base64") from None


def _gone() -> ClientDisconnected:
    return ClientDisconnected("the client closed the connection during the upload")
