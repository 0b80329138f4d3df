"""Tensors in, tensors out. The request's one input becomes images: UINT8 or FP32 pixels
[N, H, W, 3], or BYTES [N] of encoded image files; its declared shape is checked against
the service's limits before any array is built. Probabilities become the FP32 output
[N, classes], as JSON or as binary data."""

from __future__ import annotations

import base64
import binascii
import math
import struct
from dataclasses import dataclass

import numpy as np
from pydantic import ValidationError

from app.api.protocol.body import split_body
from app.api.protocol.schemas import (
    InferenceRequest,
    InferenceResponse,
    MetadataTensor,
    RequestInput,
    RequestOutput,
    ResponseOutput,
)
from app.core.errors import InvalidImage, InvalidParameter, PayloadTooLarge, describe_validation
from app.core.schemas import PredictOptions
from app.core.settings import Settings
from app.engine.images import check_dimensions
from app.engine.service import MainCell

PIXELS = MetadataTensor(name="pixels", datatype="UINT8", shape=[-1, -1, -1, 3])
ENCODED = MetadataTensor(name="images", datatype="BYTES", shape=[-1])
OUTPUT_NAME = "probabilities"
CELL_BOX_OUTPUT = "cell_box"
REVIEW_OUTPUT = "review"
NO_BOX = (-1, -1, -1, -1)  # the cell_box row of an image classified as a whole frame
_DATATYPES = {np.dtype("<f4"): "FP32", np.dtype("<i4"): "INT32", np.dtype("bool"): "BOOL"}
PIXEL_DATATYPES: dict[str, np.dtype] = {"UINT8": np.dtype("<u1"), "FP32": np.dtype("<f4")}
# Parameters of extensions this server does not implement: refused, never ignored.
_UNSUPPORTED = {
    "shared_memory_region": "the shared-memory extension",
    "classification": "the classification extension",
}


@dataclass
class Images:
    """One request's images: decoded pixels or still-encoded files, never both."""

    pixels: list[np.ndarray] | None = None
    encoded: list[bytes] | None = None


def output_names(localises: bool) -> list[str]:
    """The model's outputs: probabilities, the cell box when it finds the white cell, and
    whether a person should review the answer."""
    if localises:
        return [OUTPUT_NAME, CELL_BOX_OUTPUT, REVIEW_OUTPUT]
    return [OUTPUT_NAME, REVIEW_OUTPUT]


def output_metadata(num_classes: int, localises: bool) -> list[MetadataTensor]:
    outputs = [MetadataTensor(name=OUTPUT_NAME, datatype="FP32", shape=[-1, num_classes])]
    if localises:
        outputs.append(MetadataTensor(name=CELL_BOX_OUTPUT, datatype="INT32", shape=[-1, 4]))
    outputs.append(MetadataTensor(name=REVIEW_OUTPUT, datatype="BOOL", shape=[-1]))
    return outputs


def output_tensors(classified: list[MainCell], localises: bool) -> dict[str, np.ndarray]:
    """Each output by name, in the order of `output_names`."""
    tensors = {OUTPUT_NAME: np.stack([cell.probabilities for cell in classified])}
    if localises:
        tensors[CELL_BOX_OUTPUT] = np.array(
            [NO_BOX if cell.box is None else cell.box for cell in classified], np.int32
        )
    tensors[REVIEW_OUTPUT] = np.array([cell.review for cell in classified], bool)
    return tensors


def read_request(
    body: bytes, header_length: str | None, settings: Settings, outputs: list[str] | None = None
) -> tuple[InferenceRequest, Images]:
    """Parse and check an infer request: its JSON, its binary data and its one input;
    requested outputs must be among `outputs` (default: probabilities alone)."""
    header, binary = split_body(body, header_length)
    try:
        request = InferenceRequest.model_validate_json(header)
    except ValidationError as error:
        raise InvalidParameter(describe_validation(error.errors())) from None
    raw = _binary_per_input(request.inputs, binary)
    known = outputs or [OUTPUT_NAME]
    for output in request.outputs or []:
        if output.name not in known:
            raise InvalidParameter(f"unknown output {output.name!r}; the model has {known}")
        _refuse_unsupported(output.parameters, f"output {output.name!r}")
    if len(request.inputs) != 1:
        raise InvalidParameter(
            f"expected one input ({PIXELS.name!r} or {ENCODED.name!r}), received "
            f"{[tensor.name for tensor in request.inputs]}"
        )
    tensor = request.inputs[0]
    _refuse_unsupported(tensor.parameters, f"input {tensor.name!r}")
    if tensor.datatype == "BYTES":
        return request, Images(encoded=_encoded_images(tensor, raw[0], settings))
    if tensor.datatype in PIXEL_DATATYPES:
        return request, Images(pixels=_pixel_images(tensor, raw[0], settings))
    raise InvalidParameter(
        f"input {tensor.name!r} has datatype {tensor.datatype!r}; expected UINT8 or FP32 "
        "pixels [N, H, W, 3] or BYTES [N] of encoded image files"
    )


def timeout_s(request: InferenceRequest) -> float | None:
    """The request's `timeout` parameter in seconds (it is given in microseconds, as
    Triton's clients send it); None when absent."""
    value = request.parameters.get("timeout")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InvalidParameter(
            "parameters.timeout must be a positive integer number of "
            f"microseconds; received {value!r}",
            code="invalid_timeout",
        )
    return value / 1_000_000


def pixel_size_um(request: InferenceRequest) -> float | None:
    """The request's `pixel_size_um` parameter (micrometres per pixel of its images),
    validated by /predict's own declaration of it; None when absent."""
    try:
        options = PredictOptions.model_validate(
            {"pixel_size_um": request.parameters.get("pixel_size_um")}, strict=True
        )
    except ValidationError as error:
        raise InvalidParameter(
            f"parameters.{describe_validation(error.errors(include_url=False))}"
        ) from error
    return options.pixel_size_um


def encode_response(
    request: InferenceRequest, tensors: dict[str, np.ndarray], model_name: str, model_version: int
) -> tuple[bytes, bytes | None]:
    """(JSON header, binary data or None) of the response: the requested outputs, or every
    output of `tensors` (FP32 or INT32, little-endian) when none is named."""
    default_binary = bool(request.parameters.get("binary_data_output", False))
    outputs, chunks = [], []
    for requested in request.outputs or [RequestOutput(name=name) for name in tensors]:
        parameters = requested.parameters
        tensor = np.ascontiguousarray(tensors[requested.name])
        tensor = tensor.astype(tensor.dtype.newbyteorder("<"), copy=False)
        output = ResponseOutput(
            name=requested.name, shape=list(tensor.shape), datatype=_DATATYPES[tensor.dtype]
        )
        if parameters.get("binary_data", default_binary):
            chunks.append(tensor.tobytes())
            output.parameters = {"binary_data_size": tensor.nbytes}
        else:
            output.data = tensor.ravel().tolist()
        outputs.append(output)
    response = InferenceResponse(
        model_name=model_name, model_version=str(model_version), id=request.id, outputs=outputs
    )
    header = response.model_dump_json(exclude_none=True).encode()
    return header, b"".join(chunks) if chunks else None


def _binary_per_input(inputs: list[RequestInput], binary: memoryview) -> list[memoryview | None]:
    """Each input's slice of the binary data, in input order, as `binary_data_size` says."""
    slices: list[memoryview | None] = []
    offset = 0
    for tensor in inputs:
        size = tensor.parameters.get("binary_data_size")
        if size is None:
            slices.append(None)
            continue
        if not isinstance(size, int) or size < 0 or offset + size > len(binary):
            raise InvalidParameter(
                f"input {tensor.name!r} declares binary_data_size {size!r}, but "
                f"{len(binary) - offset} bytes of binary data remain after the JSON header"
            )
        slices.append(binary[offset : offset + size])
        offset += size
    if offset != len(binary):
        raise InvalidParameter(
            f"{len(binary) - offset} bytes of binary data follow the "
            "JSON header that no input's binary_data_size accounts for"
        )
    return slices


def _pixel_images(
    tensor: RequestInput, raw: memoryview | None, settings: Settings
) -> list[np.ndarray]:
    shape = tensor.shape
    if len(shape) != 4 or shape[3] != 3 or min(shape) < 1:
        raise InvalidParameter(
            f"input {tensor.name!r} has shape {shape}; pixels must be "
            "[N, H, W, 3] (RGB, channels last)"
        )
    count, height, width = shape[:3]
    _check_count(count, settings)
    check_dimensions(width, height, settings.max_image_pixels, subject="images are")
    dtype = PIXEL_DATATYPES[tensor.datatype]
    pixels = _array(tensor, raw, dtype, math.prod(shape)).reshape(shape)
    if tensor.datatype == "FP32" and not (
        np.isfinite(pixels).all() and pixels.min() >= 0 and pixels.max() <= 255
    ):
        raise InvalidParameter(
            f"input {tensor.name!r}: FP32 pixels must be finite and lie in 0..255, like UINT8 ones"
        )
    return list(pixels)


def _array(tensor: RequestInput, raw: memoryview | None, dtype: np.dtype, count: int) -> np.ndarray:
    if raw is not None:
        if len(raw) != count * dtype.itemsize:
            raise InvalidParameter(
                f"input {tensor.name!r} of shape {tensor.shape} and datatype "
                f"{tensor.datatype} needs {count * dtype.itemsize} bytes of binary data; "
                f"binary_data_size is {len(raw)}"
            )
        return np.frombuffer(raw, dtype)
    if tensor.data is None:
        raise InvalidParameter(f"input {tensor.name!r} has neither data nor binary_data_size")
    try:
        flat = np.asarray(tensor.data, dtype=dtype).ravel()
    except (ValueError, TypeError, OverflowError) as error:
        raise InvalidParameter(
            f"input {tensor.name!r}: data is not a {tensor.datatype} tensor: {error}"
        ) from None
    if flat.size != count:
        raise InvalidParameter(
            f"input {tensor.name!r} has shape {tensor.shape} "
            f"({count} elements) but {flat.size} data elements"
        )
    return flat


def _encoded_images(
    tensor: RequestInput, raw: memoryview | None, settings: Settings
) -> list[bytes]:
    count = math.prod(tensor.shape)
    if len(tensor.shape) not in (1, 2) or tensor.shape[0] != count or count < 1:
        raise InvalidParameter(
            f"input {tensor.name!r} has shape {tensor.shape}; encoded "
            "images must be BYTES [N] (or [N, 1])"
        )
    _check_count(count, settings)
    images = _unpack_bytes(tensor, raw) if raw is not None else _base64_elements(tensor)
    if len(images) != count:
        raise InvalidParameter(
            f"input {tensor.name!r} has shape {tensor.shape} but holds {len(images)} elements"
        )
    return images


def _unpack_bytes(tensor: RequestInput, raw: memoryview) -> list[bytes]:
    """BYTES binary data: each element is a 4-byte little-endian length, then the bytes."""
    elements: list[bytes] = []
    offset = 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise InvalidParameter(
                f"input {tensor.name!r}: binary data ends inside an element's 4-byte length"
            )
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + length > len(raw):
            raise InvalidParameter(
                f"input {tensor.name!r}: element {len(elements)} claims "
                f"{length} bytes; {len(raw) - offset} remain"
            )
        elements.append(bytes(raw[offset : offset + length]))
        offset += length
    return elements


def _base64_elements(tensor: RequestInput) -> list[bytes]:
    data = tensor.data
    if isinstance(data, list) and all(isinstance(item, list) for item in data):
        data = [item for row in data for item in row]  # [N, 1] sent nested
    if not isinstance(data, list) or not all(isinstance(item, str) for item in data):
        raise InvalidParameter(
            f"input {tensor.name!r}: BYTES data in JSON must be a list "
            "of base64 strings, one encoded image file each"
        )
    try:
        return [base64.b64decode(item, validate=True) for item in data]
    except (binascii.Error, ValueError):
        raise InvalidImage(f"input {tensor.name!r}: an element is not valid base64") from None


def _check_count(count: int, settings: Settings) -> None:
    if count > settings.max_request_images:
        raise PayloadTooLarge(
            f"request holds {count} images; the limit is {settings.max_request_images}",
            code="too_many_images",
        )


def _refuse_unsupported(parameters: dict, where: str) -> None:
    for name, extension in _UNSUPPORTED.items():
        if name in parameters:
            raise InvalidParameter(
                f"{where} asks for {extension} ({name!r}), which this server does not support"
            )
