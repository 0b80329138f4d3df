"""How an infer request's body is split into the JSON header and the binary tensor data
that follows it (the binary tensor data extension). Reading it within the byte limit,
compressed or not, is `app.api.uploads.read_body`'s job, shared with /predict and /explain."""

from __future__ import annotations

from app.core.errors import InvalidParameter

HEADER_LENGTH = "Inference-Header-Content-Length"


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
