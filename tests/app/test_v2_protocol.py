"""The Open Inference Protocol (KServe V2) through the real app and the bundled model:
metadata, every input form in JSON and binary matching /predict, errors in the protocol's
shape; and the stock Triton client, unchanged, against a real uvicorn server."""

import base64
import gzip
import json
import struct
import zlib

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.conftest import BUNDLED_VERSION
from tests.utils.images import encode, png_bomb, smear_like_rgb

MODEL = "wbc-squeezenet"
VERSION = str(BUNDLED_VERSION)
INFER = f"/v2/models/{MODEL}/infer"
HEADER_LENGTH = "Inference-Header-Content-Length"
CLASSES = ["EOSINOPHIL", "LYMPHOCYTE", "MONOCYTE", "NEUTROPHIL"]


def rgb(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def predict_probabilities(http, payloads: list[bytes]) -> np.ndarray:
    files = [("file", (f"{i}.jpeg", p, "image/jpeg")) for i, p in enumerate(payloads)]
    response = http.post("/predict", files=files)
    assert response.status_code == 200, response.text
    return np.array([list(p["probabilities"].values()) for p in response.json()["predictions"]])


def binary_request(header: dict, *chunks: bytes) -> dict:
    """httpx keyword arguments of a request using the binary tensor data extension."""
    body = json.dumps(header).encode()
    return {"content": body + b"".join(chunks), "headers": {HEADER_LENGTH: str(len(body))}}


def length_prefixed(*elements: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(element)) + element for element in elements)


def tensor(name: str, datatype: str, shape, **fields) -> dict:
    return {"name": name, "datatype": datatype, "shape": list(shape), **fields}


def probabilities_of(response) -> np.ndarray:
    """The `probabilities` output of a JSON or binary infer response."""
    assert response.status_code == 200, response.text
    header_length = response.headers.get(HEADER_LENGTH)
    content = response.content
    header = json.loads(content[: int(header_length)] if header_length else content)
    # probabilities first (so its binary data leads), then cell_box from a localising model,
    # then review
    output = header["outputs"][0]
    assert output["name"] == "probabilities" and output["datatype"] == "FP32"
    assert set([o["name"] for o in header["outputs"]][1:]) <= {"cell_box", "review"}
    if "binary_data_size" in output.get("parameters", {}):
        size = output["parameters"]["binary_data_size"]
        data = np.frombuffer(content[int(header_length) : int(header_length) + size], "<f4")
    else:
        data = np.array(output["data"], np.float32)
    return data.reshape(output["shape"])


def _forms(payloads: list[bytes], pixels: np.ndarray) -> dict[str, dict]:
    """The same images as every input form the server accepts: request kwargs by name."""
    n = len(payloads)
    b64 = [base64.b64encode(p).decode() for p in payloads]
    as_float = pixels.astype("<f4")
    return {
        "BYTES base64 JSON": {"json": {"inputs": [tensor("images", "BYTES", [n], data=b64)]}},
        "BYTES [N, 1] nested JSON": {
            "json": {"inputs": [tensor("images", "BYTES", [n, 1], data=[[item] for item in b64])]}
        },
        "BYTES binary": binary_request(
            {
                "inputs": [
                    tensor(
                        "images",
                        "BYTES",
                        [n],
                        parameters={"binary_data_size": len(length_prefixed(*payloads))},
                    )
                ]
            },
            length_prefixed(*payloads),
        ),
        "UINT8 flat JSON": {
            "json": {
                "inputs": [tensor("pixels", "UINT8", pixels.shape, data=pixels.ravel().tolist())]
            }
        },
        "UINT8 nested JSON": {
            "json": {"inputs": [tensor("pixels", "UINT8", pixels.shape, data=pixels.tolist())]}
        },
        "UINT8 binary": binary_request(
            {
                "inputs": [
                    tensor(
                        "pixels",
                        "UINT8",
                        pixels.shape,
                        parameters={"binary_data_size": pixels.nbytes},
                    )
                ]
            },
            pixels.tobytes(),
        ),
        "FP32 JSON": {
            "json": {
                "inputs": [tensor("pixels", "FP32", pixels.shape, data=as_float.ravel().tolist())]
            }
        },
        "FP32 binary": binary_request(
            {
                "inputs": [
                    tensor(
                        "pixels",
                        "FP32",
                        pixels.shape,
                        parameters={"binary_data_size": as_float.nbytes},
                    )
                ]
            },
            as_float.tobytes(),
        ),
    }


FORM_NAMES = list(_forms([b""], np.zeros((1, 8, 8, 3), np.uint8)))


@pytest.fixture(scope="module")
def two_smears(smear_files):
    """Two real smears of one size (a pixel tensor holds images of one size)."""
    paths = smear_files[:2]
    assert rgb(paths[0]).shape == rgb(paths[1]).shape
    return [path.read_bytes() for path in paths], np.stack([rgb(path) for path in paths])


@pytest.mark.parametrize("form", FORM_NAMES)
def test_every_input_form_gives_predicts_probabilities(client, two_smears, form):
    payloads, pixels = two_smears
    expected = predict_probabilities(client, payloads)
    got = probabilities_of(client.post(INFER, **_forms(payloads, pixels)[form]))
    assert got.shape == (2, 4)
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_server_and_model_metadata(client):
    server = client.get("/v2").json()
    assert server["name"] == "wbc-explain" and "binary_tensor_data" in server["extensions"]
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    for path in (f"/v2/models/{MODEL}", f"/v2/models/{MODEL}/versions/{VERSION}"):
        metadata = client.get(path).json()
        assert metadata["name"] == MODEL and metadata["versions"] == [VERSION]
        assert {(t["name"], t["datatype"]) for t in metadata["inputs"]} == {
            ("pixels", "UINT8"),
            ("images", "BYTES"),
        }
        assert metadata["outputs"][0] == {
            "name": "probabilities",
            "datatype": "FP32",
            "shape": [-1, 4],
        }
        # the bundled model finds the white cell, and says where, as a second output, then
        # whether a person should review the answer
        assert metadata["outputs"][1:] == [
            {"name": "cell_box", "datatype": "INT32", "shape": [-1, 4]},
            {"name": "review", "datatype": "BOOL", "shape": [-1]},
        ]
        assert metadata["parameters"]["class_names"] == CLASSES
        assert metadata["parameters"]["device"] in ("CPU:0", "GPU:0")
    ready = client.get(f"/v2/models/{MODEL}/versions/{VERSION}/ready")
    assert ready.status_code == 200 and ready.json() == {"name": MODEL, "ready": True}


def test_id_outputs_and_binary_output_are_honoured(client, two_smears):
    payloads, _ = two_smears
    images = [tensor("images", "BYTES", [1], data=[base64.b64encode(payloads[0]).decode()])]
    plain = client.post(INFER, json={"id": "request-7", "inputs": images})
    body = plain.json()
    assert plain.headers["content-type"] == "application/json"
    assert body["id"] == "request-7" and body["model_name"] == MODEL
    assert body["model_version"] == VERSION and len(body["outputs"][0]["data"]) == 4
    assert "id" not in client.post(INFER, json={"inputs": images}).json()

    binary = client.post(
        INFER,
        json={
            "inputs": images,
            "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}],
        },
    )
    header_length = int(binary.headers[HEADER_LENGTH])
    assert json.loads(binary.content[:header_length])["outputs"][0]["parameters"] == {
        "binary_data_size": 16
    }
    everything_binary = client.post(
        INFER, json={"inputs": images, "parameters": {"binary_data_output": True}}
    )
    overridden = client.post(
        INFER,
        json={
            "inputs": images,
            "parameters": {"binary_data_output": True},
            "outputs": [{"name": "probabilities", "parameters": {"binary_data": False}}],
        },
    )
    assert HEADER_LENGTH not in overridden.headers
    for response in (binary, everything_binary, overridden):
        np.testing.assert_allclose(probabilities_of(response), probabilities_of(plain))


def test_pixels_of_any_size_are_resized_like_uploads(client):
    image = smear_like_rgb(width=57, height=41)
    by_upload = predict_probabilities(client, [encode(Image.fromarray(image))])
    by_tensor = probabilities_of(
        client.post(
            INFER,
            json={
                "inputs": [tensor("pixels", "UINT8", [1, 41, 57, 3], data=image.ravel().tolist())]
            },
        )
    )
    np.testing.assert_allclose(by_tensor, by_upload, atol=1e-6)


def test_gzip_and_deflate_bodies(client, two_smears):
    payloads, _ = two_smears
    request = json.dumps(
        {"inputs": [tensor("images", "BYTES", [1], data=[base64.b64encode(payloads[0]).decode()])]}
    ).encode()
    for encoding, packed in (("gzip", gzip.compress(request)), ("deflate", zlib.compress(request))):
        response = client.post(INFER, content=packed, headers={"Content-Encoding": encoding})
        np.testing.assert_allclose(
            probabilities_of(response), predict_probabilities(client, payloads[:1]), atol=1e-6
        )
    bomb = gzip.compress(b" " * (11 * 2**20))  # inflates past the 10 MiB limit
    response = client.post(INFER, content=bomb, headers={"Content-Encoding": "gzip"})
    assert response.status_code == 413


def _bad_pixels(shape, payload=b"\x00" * 12, datatype="UINT8"):
    return binary_request(
        {
            "inputs": [
                tensor("pixels", datatype, shape, parameters={"binary_data_size": len(payload)})
            ]
        },
        payload,
    )


SMALL = smear_like_rgb(width=16, height=16)
ERROR_CASES = [
    # name, path, request kwargs, status, fragment of the message
    ("unknown model", "/v2/models/resnet/infer", {"json": {}}, 404, "'resnet' is not served"),
    ("unknown version", f"/v2/models/{MODEL}/versions/99/infer", {"json": {}}, 404, "version '99'"),
    ("unknown model metadata", "/v2/models/resnet", None, 404, "not served"),
    ("not json", INFER, {"content": b"pixels please"}, 400, "json"),
    ("no inputs", INFER, {"json": {"inputs": []}}, 400, "inputs"),
    (
        "two inputs",
        INFER,
        {
            "json": {
                "inputs": [
                    tensor("pixels", "UINT8", [1, 16, 16, 3], data=SMALL.ravel().tolist()),
                    tensor("images", "BYTES", [1], data=["AAAA"]),
                ]
            }
        },
        400,
        "expected one input",
    ),
    (
        "unsupported datatype",
        INFER,
        {
            "json": {
                "inputs": [tensor("pixels", "INT64", [1, 16, 16, 3], data=SMALL.ravel().tolist())]
            }
        },
        400,
        "'INT64'",
    ),
    ("not channels-last RGB", INFER, _bad_pixels([1, 3, 16, 16]), 400, "[N, H, W, 3]"),
    (
        "element count mismatch",
        INFER,
        {"json": {"inputs": [tensor("pixels", "UINT8", [1, 16, 16, 3], data=[1, 2, 3])]}},
        400,
        "768 elements",
    ),
    (
        "uint8 out of range",
        INFER,
        {"json": {"inputs": [tensor("pixels", "UINT8", [1, 8, 8, 3], data=[300] * 192)]}},
        400,
        "UINT8",
    ),
    (
        "fp32 beyond 255",
        INFER,
        {"json": {"inputs": [tensor("pixels", "FP32", [1, 8, 8, 3], data=[256.0] * 192)]}},
        400,
        "0..255",
    ),
    ("declared 40000x40000 pixels", INFER, _bad_pixels([1, 40000, 40000, 3]), 413, "megapixels"),
    ("33 images", INFER, _bad_pixels([33, 16, 16, 3]), 413, "limit is 32"),
    ("tiny images", INFER, _bad_pixels([1, 4, 4, 3]), 400, "minimum"),
    ("binary size mismatch", INFER, _bad_pixels([1, 16, 16, 3]), 400, "needs 768 bytes"),
    (
        "binary data without its header length",
        INFER,
        {
            "json": {
                "inputs": [
                    tensor("pixels", "UINT8", [1, 16, 16, 3], parameters={"binary_data_size": 768})
                ]
            }
        },
        400,
        "binary_data_size",
    ),
    (
        "header length beyond the body",
        INFER,
        {"content": b"{}", "headers": {HEADER_LENGTH: "99"}},
        400,
        HEADER_LENGTH,
    ),
    (
        "stray binary bytes",
        INFER,
        binary_request({"inputs": [tensor("images", "BYTES", [1], data=["AAAA"])]}, b"extra"),
        400,
        "no input",
    ),
    (
        "BYTES not base64",
        INFER,
        {"json": {"inputs": [tensor("images", "BYTES", [1], data=["***"])]}},
        400,
        "base64",
    ),
    (
        "BYTES element is not an image",
        INFER,
        binary_request(
            {"inputs": [tensor("images", "BYTES", [1], parameters={"binary_data_size": 9})]},
            length_prefixed(b"hello"),
        ),
        400,
        "not an image",
    ),
    (
        "BYTES length prefix overruns",
        INFER,
        binary_request(
            {"inputs": [tensor("images", "BYTES", [1], parameters={"binary_data_size": 6})]},
            struct.pack("<I", 99) + b"ab",
        ),
        400,
        "claims 99 bytes",
    ),
    (
        "BYTES decompression bomb",
        INFER,
        binary_request(
            {
                "inputs": [
                    tensor(
                        "images", "BYTES", [1], parameters={"binary_data_size": len(png_bomb()) + 4}
                    )
                ]
            },
            length_prefixed(png_bomb()),
        ),
        413,
        "megapixels",
    ),
    (
        "unknown output",
        INFER,
        {
            "json": {
                "inputs": [tensor("images", "BYTES", [1], data=["AAAA"])],
                "outputs": [{"name": "logits"}],
            }
        },
        400,
        "unknown output 'logits'",
    ),
    (
        "classification extension",
        INFER,
        {
            "json": {
                "inputs": [tensor("images", "BYTES", [1], data=["AAAA"])],
                "outputs": [{"name": "probabilities", "parameters": {"classification": 2}}],
            }
        },
        400,
        "classification",
    ),
    ("body over the byte limit", INFER, {"content": b"{" + b" " * (11 * 2**20)}, 413, "limit"),
    (
        "unknown content encoding",
        INFER,
        {"content": b"{}", "headers": {"Content-Encoding": "br"}},
        415,
        "Content-Encoding",
    ),
    ("wrong method", INFER, None, 405, "Method Not Allowed"),
]


@pytest.mark.parametrize(
    "name, path, request_kwargs, status, fragment",
    ERROR_CASES,
    ids=[case[0] for case in ERROR_CASES],
)
def test_errors_take_the_protocols_shape(client, name, path, request_kwargs, status, fragment):
    if request_kwargs is None:
        response = client.get(path)
    else:
        response = client.post(path, **request_kwargs)
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["error"] and isinstance(body["error"], str)
    assert fragment.lower() in body["error"].lower()
    assert client.get("/v2/health/ready").status_code == 200


@pytest.mark.slow
def test_stock_triton_client_against_a_real_server(server_url, two_smears):
    """tritonclient.http, as its users call it: binary tensors both ways by default."""
    import tritonclient.http as triton
    from tritonclient.utils import InferenceServerException

    payloads, pixels = two_smears
    with httpx.Client(base_url=server_url, timeout=60) as http:
        expected = predict_probabilities(http, payloads)
    client = triton.InferenceServerClient(url=server_url.removeprefix("http://"))
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready(MODEL) and client.is_model_ready(MODEL, VERSION)
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    assert client.get_model_metadata(MODEL)["outputs"][0]["name"] == "probabilities"

    def infer(name, datatype, array, binary_in=True, binary_out=True, **options):
        tensor_input = triton.InferInput(name, list(array.shape), datatype)
        tensor_input.set_data_from_numpy(array, binary_data=binary_in)
        output = triton.InferRequestedOutput("probabilities", binary_data=binary_out)
        result = client.infer(MODEL, [tensor_input], outputs=[output], **options)
        return result.as_numpy("probabilities")

    encoded = np.array(payloads, dtype=np.object_)
    results = {
        "UINT8 binary both ways": infer("pixels", "UINT8", pixels),
        "UINT8 JSON both ways": infer("pixels", "UINT8", pixels, False, False),
        "FP32 binary in, JSON out": infer(
            "pixels", "FP32", pixels.astype(np.float32), binary_out=False
        ),
        "BYTES binary, gzip request": infer(
            "images", "BYTES", encoded, request_compression_algorithm="gzip"
        ),
        "BYTES, versioned, with id": infer(
            "images", "BYTES", encoded, model_version=VERSION, request_id="abc"
        ),
    }
    for name, probabilities in results.items():
        np.testing.assert_allclose(probabilities, expected, atol=1e-6, err_msg=name)

    default_outputs = client.infer(
        MODEL,
        [triton.InferInput("pixels", list(pixels.shape), "UINT8").set_data_from_numpy(pixels)],
    )
    np.testing.assert_allclose(default_outputs.as_numpy("probabilities"), expected, atol=1e-6)
    with pytest.raises(InferenceServerException, match="not served"):
        client.infer(
            "resnet",
            [triton.InferInput("pixels", list(pixels.shape), "UINT8").set_data_from_numpy(pixels)],
        )
    client.close()
