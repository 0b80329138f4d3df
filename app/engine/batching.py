"""Gather concurrent requests into micro-batches: one model pass per batch."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from contextlib import contextmanager
from typing import Generic, Protocol, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class BatchObserver(Protocol):
    """Told each item's wait in the queue and each pass's size and duration."""

    def queued(self, seconds: float) -> None: ...

    def ran(self, size: int, seconds: float) -> None: ...


class MicroBatcher(Generic[Item, Result]):
    """Runs `run_batch` on up to `max_size` queued items at a time in `executor`, with up to
    `max_in_flight` such passes running at once (the executor's threads permitting).

    After the first item it takes whatever else is already queued, and waits up to
    `max_wait_s` for more only while callers announced with `expecting()` are still
    preparing theirs, so a lone request never pays the wait. A batch is gathered only once a
    pass may start, so items queued meanwhile join it."""

    def __init__(
        self,
        run_batch: Callable[[list[Item]], list[Result]],
        executor: Executor,
        max_size: int,
        max_wait_s: float,
        observer: BatchObserver | None = None,
        max_in_flight: int = 1,
    ) -> None:
        self._run_batch, self._executor = run_batch, executor
        self._max_size, self._max_wait_s = max_size, max_wait_s
        self._observer = observer
        self._max_in_flight = max(1, max_in_flight)
        self._running: set[asyncio.Task] = set()  # passes handed to the executor
        # (item, its caller's future, when it was queued)
        self._queue: asyncio.Queue[tuple[Item, asyncio.Future[Result], float]] | None = None
        self._worker: asyncio.Task | None = None
        self._expected = 0  # items announced and not yet answered
        self._waiting = 0  # items submitted and not yet answered

    @contextmanager
    def expecting(self, count: int) -> Iterator[None]:
        self._expected += count
        try:
            yield
        finally:
            self._expected -= count

    async def submit(self, item: Item) -> Result:
        if self._queue is None:
            self._queue = asyncio.Queue()
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(self._work())
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._waiting += 1
        try:
            await self._queue.put((item, future, time.perf_counter()))
            return await future
        finally:
            self._waiting -= 1

    async def close(self) -> None:
        tasks = [*self._running, *([self._worker] if self._worker is not None else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _collect(self) -> list[tuple[Item, asyncio.Future[Result], float]]:
        assert self._queue is not None
        batch = [await self._queue.get()]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._max_wait_s
        while len(batch) < self._max_size:
            if not self._queue.empty():
                batch.append(self._queue.get_nowait())
                continue
            remaining = deadline - loop.time()
            still_preparing = self._expected - self._waiting
            if remaining <= 0 or still_preparing <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except TimeoutError:
                break
        return batch

    async def _work(self) -> None:
        slots = asyncio.Semaphore(self._max_in_flight)
        while True:
            await slots.acquire()
            try:
                batch = await self._collect()
            except BaseException:
                slots.release()
                raise
            live = [entry for entry in batch if not entry[1].done()]
            if not live:
                slots.release()
                continue
            task = asyncio.get_running_loop().create_task(self._run(live, slots))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _run(
        self, live: list[tuple[Item, asyncio.Future[Result], float]], slots: asyncio.Semaphore
    ) -> None:
        """One pass in the executor; its callers get their results or its error."""
        loop = asyncio.get_running_loop()
        try:
            ran, results = await loop.run_in_executor(self._executor, self._observed_run, live)
            if len(results) != len(ran):
                raise RuntimeError(f"a batch of {len(ran)} gave {len(results)} results")
        except Exception as error:  # the batch's callers get the error, the worker lives
            for _, future, _ in live:
                if not future.done():
                    future.set_exception(error)
            return
        finally:
            slots.release()
        for (_, future, _), result in zip(ran, results, strict=True):
            if not future.done():
                future.set_result(result)

    def _observed_run(
        self, batch: list[tuple[Item, asyncio.Future[Result], float]]
    ) -> tuple[list[tuple[Item, asyncio.Future[Result], float]], list[Result]]:
        """Runs in the executor, so the queue wait ends when the pass really starts. Items
        whose callers stopped waiting meanwhile (deadline passed, client gone: their futures
        are cancelled) are dropped here, at the last moment, and never run."""
        live = [entry for entry in batch if not entry[1].done()]
        if not live:
            return [], []
        started = time.perf_counter()
        if self._observer is not None:
            for _, _, queued_at in live:
                self._observer.queued(started - queued_at)
        results = self._run_batch([item for item, _, _ in live])
        if self._observer is not None:
            self._observer.ran(len(live), time.perf_counter() - started)
        return live, results
