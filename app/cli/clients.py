"""Where `wbc-explain score` sends its images: the model in this process, through the same
`InferenceService` the HTTP service runs, or a running service over HTTP (the standard
library's client: the command needs nothing the service does not)."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from app.engine.service import InferenceService

RETRIES = 5
"""A refused request (503 overloaded, with Retry-After) is tried this many times in all."""
MAX_RETRY_WAIT_S = 10.0


class ScoreFailure(Exception):
    """A file could not be scored (its message says why), or the scorer could not start."""


class ScoreClient(Protocol):
    def classes(self) -> list[str]: ...

    def describe(self) -> str: ...

    async def predict(self, data: bytes) -> dict: ...

    async def overlay(self, data: bytes, cell: int) -> bytes: ...

    async def aclose(self) -> None: ...


class InProcessClient:
    """The model named by the service's settings (`WBC_*`, the bundled one by default),
    loaded here once."""

    def __init__(self, pixel_size_um: float | None = None) -> None:
        from app.core.settings import Settings
        from model_core.errors import ModelCoreError
        from model_core.runtime import ModelRuntime
        from model_core.store.entries import StoreError

        self.settings = Settings()
        self.pixel_size_um = pixel_size_um
        try:
            self.runtime = ModelRuntime.load(
                self.settings.store_dir,
                self.settings.model_name,
                self.settings.model_version,
                self.settings.forward_backend,
                onnx_spinning=False,
                onnx_threads=self.settings.onnx_threads,
            )
        except (StoreError, ModelCoreError, OSError) as error:
            raise ScoreFailure(f"cannot load the model: {error}") from error
        self._service: InferenceService | None = None

    def classes(self) -> list[str]:
        return list(self.runtime.manifest.class_names)

    def describe(self) -> str:
        manifest = self.runtime.manifest
        return f"{manifest.name} v{manifest.version}, in process ({self.runtime.backend})"

    def _served(self) -> InferenceService:
        from app.engine.service import InferenceService

        if self._service is None:  # built in the running event loop, which it batches on
            self._service = InferenceService(self.runtime, self.settings)
        return self._service

    async def _call(self, work):
        from app.core.errors import ServiceError, from_core
        from model_core.errors import ModelCoreError

        try:
            return await work
        except ServiceError as error:
            raise ScoreFailure(f"{error.code}: {error.message}") from error
        except ModelCoreError as error:
            failure = from_core(error)
            raise ScoreFailure(f"{failure.code}: {failure.message}") from error

    def _check_size(self, data: bytes) -> None:
        if len(data) > self.settings.max_upload_bytes:
            raise ScoreFailure(
                f"payload_too_large: the file is {len(data)} bytes; the limit is "
                f"{self.settings.max_upload_bytes} (WBC_MAX_UPLOAD_BYTES)"
            )

    async def predict(self, data: bytes) -> dict:
        self._check_size(data)
        response = await self._call(self._served().predict([data], self.pixel_size_um))
        return response.predictions[0].model_dump(mode="json")

    async def overlay(self, data: bytes, cell: int) -> bytes:
        from app.core.schemas import ExplainOptions

        options = ExplainOptions.model_validate(
            {
                "method": "gradcam",
                "cell": cell,
                "output": "overlay",
                "outline": True,
                "pixel_size_um": self.pixel_size_um,
            }
        )
        explanation = await self._call(self._served().explanations.explain(data, options))
        assert explanation.overlay_png is not None
        return explanation.overlay_png

    async def aclose(self) -> None:
        if self._service is not None:
            await self._service.close()


class RemoteClient:
    """A running service at `url`, `concurrency` requests in flight at most."""

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        pixel_size_um: float | None = None,
        concurrency: int = 4,
        timeout_s: float = 120.0,
    ) -> None:
        self.url = url.rstrip("/")
        if urllib.parse.urlsplit(self.url).scheme not in ("http", "https"):
            raise ScoreFailure(f"--url {url!r} is not an http:// or https:// address")
        self.headers = {"Accept": "application/json"}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"
        self.pixel_size_um = pixel_size_um
        self.timeout_s = timeout_s
        self._threads = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="score")
        try:
            models = json.loads(self._request("GET", "/models"))
            self._classes = list(models["models"][0]["classes"])
            self._model = models["models"][0]
        except (KeyError, IndexError, ValueError) as error:
            raise ScoreFailure(f"{self.url}/models did not describe a model") from error

    def classes(self) -> list[str]:
        return self._classes

    def describe(self) -> str:
        return f"{self._model['name']} v{self._model['version']}, at {self.url}"

    def _request(
        self,
        method: str,
        path: str,
        query: dict | None = None,
        data: bytes | None = None,
        accept: str = "application/json",
    ) -> bytes:
        """The response body; a 503 with Retry-After is tried again; other errors raise
        ScoreFailure with the service's own message."""
        query = {key: value for key, value in (query or {}).items() if value is not None}
        address = self.url + path + (f"?{urllib.parse.urlencode(query)}" if query else "")
        headers = dict(self.headers, Accept=accept)
        body = None
        if data is not None:
            boundary = uuid.uuid4().hex
            headers["Content-Type"] = f"multipart/form-data; boundary={boundary}"
            body = (
                (
                    f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
                    f'filename="image"\r\nContent-Type: application/octet-stream\r\n\r\n'
                ).encode()
                + data
                + f"\r\n--{boundary}--\r\n".encode()
            )
        for attempt in range(RETRIES):
            request = urllib.request.Request(address, data=body, headers=headers, method=method)
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    return response.read()
            except urllib.error.HTTPError as error:
                retry_after = error.headers.get("Retry-After")
                if error.code == 503 and retry_after and attempt + 1 < RETRIES:
                    time.sleep(min(MAX_RETRY_WAIT_S, float(retry_after or 1)))
                    continue
                raise ScoreFailure(_http_error(error)) from error
            except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
                reason = getattr(error, "reason", error)
                raise ScoreFailure(f"cannot reach {self.url}: {reason}") from error
        raise AssertionError("unreachable")

    async def _in_thread(self, *args, **kwargs) -> bytes:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._threads, lambda: self._request(*args, **kwargs))

    async def predict(self, data: bytes) -> dict:
        body = await self._in_thread(
            "POST", "/predict", {"pixel_size_um": self.pixel_size_um}, data
        )
        return json.loads(body)["predictions"][0]

    async def overlay(self, data: bytes, cell: int) -> bytes:
        query = {
            "method": "gradcam",
            "cell": cell,
            "output": "overlay",
            "outline": "true",
            "pixel_size_um": self.pixel_size_um,
        }
        return await self._in_thread("POST", "/explain", query, data, accept="image/png")

    async def aclose(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)


def _http_error(error: urllib.error.HTTPError) -> str:
    """`HTTP <status> <code>: <message>` from the service's JSON error body."""
    try:
        detail = json.loads(error.read())["error"]
        return f"HTTP {error.code} {detail['code']}: {detail['message']}"
    except (ValueError, KeyError, TypeError):
        return f"HTTP {error.code} {error.reason}"
