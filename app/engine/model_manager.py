"""Which model version serves, and how another replaces it: the new version is loaded,
verified and warmed in a worker thread, then swapped in at once; requests that already hold
the old version finish on it before it is closed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator

from app.core.errors import NotReady, ReloadFailed
from app.core.logs import log_event
from app.core.memory import page_out_libraries
from app.core.prometheus import Metrics
from app.core.schemas import ModelRef, ReloadResponse
from app.core.settings import Settings
from app.engine.service import InferenceService
from model_core.runtime import ModelRuntime
from model_core.store.entries import entry_dir

# How long a replaced version may take to finish its requests before it is closed anyway.
DRAIN_SECONDS = 120.0
NOT_LOADED = "the model is not loaded yet; retry when /health/ready answers 200"


class _Served:
    """A service and the number of requests holding it."""

    def __init__(self, service: InferenceService) -> None:
        self.service, self.holders, self.released = service, 0, asyncio.Event()


class ModelManager:
    """Holds the service of the model being served and swaps in another atomically."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings, self.metrics = settings, metrics
        self._served: _Served | None = None
        self._reload_lock = asyncio.Lock()
        self._background: set[asyncio.Task] = set()  # retirements, signalled reloads
        metrics.watch_readiness(lambda: self.readiness() is None)

    @property
    def service(self) -> InferenceService | None:
        return None if self._served is None else self._served.service

    def readiness(self) -> str | None:
        """None when the model can serve; otherwise why it cannot."""
        if self._served is None:
            return NOT_LOADED
        failure = self._served.service.runtime.failure
        if failure is not None:
            return (
                f"the model cannot run: {failure}; POST /admin/reload or restart the "
                "service to recover"
            )
        return None

    def liveness(self) -> str | None:
        """None while the process should keep running; otherwise why it should be restarted:
        its model has failed on its device for longer than `settings.liveness_grace_s`."""
        runtime = None if self._served is None else self._served.service.runtime
        if runtime is None or runtime.failure is None or runtime.failed_at is None:
            return None
        failed_for = time.monotonic() - runtime.failed_at
        if failed_for < self.settings.liveness_grace_s:
            return None
        return (
            f"the model has failed on its device for {failed_for:.0f} s "
            f"(grace {self.settings.liveness_grace_s:g} s): {runtime.failure}; restart the process"
        )

    def ready_service(self) -> InferenceService:
        """The current service if it can serve; NotReady saying why otherwise."""
        reason = self.readiness()
        if reason is not None:
            raise NotReady(reason)
        assert self._served is not None
        return self._served.service

    @contextlib.contextmanager
    def hold(self) -> Iterator[InferenceService]:
        """The current service, kept open until the caller lets go, even if replaced."""
        served = self._served
        if served is None:
            raise NotReady(NOT_LOADED)
        served.holders += 1
        try:
            yield served.service
        finally:
            served.holders -= 1
            if served.holders == 0:
                served.released.set()

    async def start(self) -> None:
        """Load the configured version; failing here stops the service from starting."""
        settings = self.settings
        runtime = await asyncio.to_thread(
            ModelRuntime.load,
            settings.store_dir,
            settings.model_name,
            settings.model_version,
            settings.forward_backend,
            onnx_spinning=settings.onnx_spinning,
            onnx_threads=settings.onnx_threads,
        )
        await self._warm(runtime)
        if settings.page_out_libraries:
            # TensorFlow's start-up (every kernel registering itself) and the first passes
            # touched most of its libraries' pages, of which the passes use a small part: the
            # kernel takes them back, and a second warm-up brings back those the passes use,
            # before ready (docs/benchmarks.md: memory). At start only: a reload's load and
            # warm-up touch a few more, a page-out then would slow the serving version.
            advised = await asyncio.to_thread(page_out_libraries, "/tensorflow/")
            await self._warm(runtime)
            log_event("libraries_paged_out", mib=round(advised / 2**20))
        self._install(runtime)

    async def reload(self, version: int | None = None) -> ReloadResponse:
        """Serve `version` (default: the pinned one, else the newest in the store). A version
        that fails to load or verify is refused and the current one keeps serving."""
        async with self._reload_lock:
            current = self.service
            assert current is not None, "reload before start"
            previous = current.model_ref
            try:
                directory = entry_dir(
                    self.settings.store_dir,
                    self.settings.model_name,
                    version or self.settings.model_version,
                )
                if int(directory.name) == previous.version and self.readiness() is None:
                    self.metrics.reloads.labels("unchanged").inc()
                    log_event("reload_unchanged", serving=previous.model_dump())
                    return ReloadResponse(status="unchanged", model=previous, previous=previous)
                # A corrupt or foreign model.onnx refuses the version, as a tampered
                # model.keras does; at start it only falls back to TensorFlow.
                runtime = await asyncio.to_thread(
                    ModelRuntime.load,
                    self.settings.store_dir,
                    self.settings.model_name,
                    int(directory.name),
                    self.settings.forward_backend,
                    True,
                    onnx_spinning=self.settings.onnx_spinning,
                    onnx_threads=self.settings.onnx_threads,
                )
            except Exception as error:  # a bad entry must never take the service down
                self.metrics.reloads.labels("failed").inc()
                log_event(
                    "reload_failed", logging.ERROR, error=str(error), serving=previous.model_dump()
                )
                raise ReloadFailed(
                    f"{error}; still serving {previous.name} version {previous.version}"
                ) from error
            await self._warm(runtime)
            self._install(runtime)
            self.metrics.reloads.labels("reloaded").inc()
            return ReloadResponse(status="reloaded", model=self._model_ref(), previous=previous)

    def reload_on_sighup(self) -> Callable[[], None]:
        """In the server's main thread, make SIGHUP reload like POST /admin/reload; return
        what undoes it. Elsewhere (a test client's thread) signals cannot be handled."""
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        loop = asyncio.get_running_loop()

        def on_sighup() -> None:
            task = loop.create_task(self._reload_quietly())
            self._background.add(task)  # kept referenced, awaited by close()
            task.add_done_callback(self._background.discard)

        def stop() -> None:
            loop.remove_signal_handler(signal.SIGHUP)

        loop.add_signal_handler(signal.SIGHUP, on_sighup)
        return stop

    async def _reload_quietly(self) -> None:
        with contextlib.suppress(ReloadFailed):  # already logged and counted by reload()
            await self.reload()

    async def close(self) -> None:
        while self._background:  # a signalled reload may still install (and retire) a version
            await asyncio.gather(*list(self._background), return_exceptions=True)
        served, self._served = self._served, None
        if served is not None:
            await served.service.close()

    async def _warm(self, runtime: ModelRuntime) -> None:
        """Run a throwaway service of `runtime` end to end once (its own metrics, so no
        request is counted): what is slow only the first time is paid before ready."""
        warm = InferenceService(runtime, self.settings, Metrics())
        try:
            await warm.warm_up()
        finally:
            await warm.close()

    def _install(self, runtime: ModelRuntime) -> None:
        old, self._served = (
            self._served,
            _Served(InferenceService(runtime, self.settings, self.metrics)),
        )
        manifest = runtime.manifest
        self.metrics.model_loaded(
            manifest.name, manifest.version, runtime.device, runtime.backend, runtime.load_seconds
        )
        if runtime.backend_note is not None:
            log_event(
                "forward_backend_fallback",
                logging.WARNING,
                model=manifest.name,
                version=manifest.version,
                wanted=self.settings.forward_backend,
                reason=runtime.backend_note,
            )
        log_event(
            "model_loaded",
            model=manifest.name,
            version=manifest.version,
            device=runtime.device,
            backend=runtime.backend,
            load_seconds=round(runtime.load_seconds, 3),
            directory=str(runtime.directory),
        )
        if old is not None:
            task = asyncio.create_task(self._retire(old))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _retire(self, served: _Served) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(DRAIN_SECONDS):
                while served.holders:
                    served.released.clear()
                    await served.released.wait()
        await served.service.close()

    def _model_ref(self) -> ModelRef:
        assert self._served is not None
        return self._served.service.model_ref
