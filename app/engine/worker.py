"""Worker threads fed from one lane per kind of work and taking the lanes in turn, so a flood
of one kind (explanations) never queues ahead of the other (predictions): the single
TensorFlow worker, where a forward pass waits for at most one pass of each other lane, and
the image threads (decode, scale, cells, overlays), where a prediction's image work waits
for at most one explanation's job per thread. A lane may take several turns in a row (its
weight) while others wait: predictions' short jobs go ahead of explanations' long ones,
which still run at least once in every few jobs."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, Future
from typing import Any

_Job = tuple[Future, Callable[..., Any], tuple, dict]


class LaneWorker:
    """`threads` threads (one by default) running jobs from named lanes, round-robin among
    the lanes that have work (first in, first out within a lane), a lane taking up to its
    weight (`weights`, 1 where not given) jobs in a row while another lane has work.
    `lane(name)` is an `Executor` for one lane."""

    def __init__(
        self,
        lanes: Sequence[str],
        thread_name: str = "worker",
        threads: int = 1,
        weights: Mapping[str, int] | None = None,
    ) -> None:
        self._lanes: dict[str, deque[_Job]] = {name: deque() for name in lanes}
        self._order = list(lanes)
        weights = weights or {}
        if not set(weights) <= set(lanes) or min(weights.values(), default=1) < 1:
            raise ValueError(f"weights {dict(weights)} must be at least 1, for lanes of {lanes}")
        self._weights = [weights.get(name, 1) for name in self._order]
        self._next = 0  # index in _order of the lane whose turn it is
        self._streak = 0  # jobs taken in a row from the lane at _next
        self._ready = threading.Condition()
        self._closed = False
        self._threads = [
            threading.Thread(
                target=self._work,
                name=thread_name if threads == 1 else f"{thread_name}_{index}",
                daemon=True,
            )
            for index in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    @property
    def threads(self) -> int:
        """How many jobs may run at once."""
        return len(self._threads)

    def lane(self, name: str) -> Executor:
        if name not in self._lanes:
            raise KeyError(f"unknown lane {name!r}; the lanes are {self._order}")
        return _Lane(self, name)

    def submit_to(self, lane: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future:
        future: Future = Future()
        with self._ready:
            if self._closed:
                raise RuntimeError("cannot submit to a worker that was shut down")
            self._lanes[lane].append((future, fn, args, kwargs))
            self._ready.notify()
        return future

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        with self._ready:
            self._closed = True
            if cancel_futures:
                for jobs in self._lanes.values():
                    while jobs:
                        jobs.popleft()[0].cancel()
            self._ready.notify_all()
        if wait:
            for thread in self._threads:
                thread.join()

    def _take(self) -> _Job | None:
        """The next job: from the lane whose turn it is while it has work and has taken
        fewer jobs in a row than its weight, else from the next lane with work; None once
        shut down with nothing left. Called with the condition held."""
        while True:
            for offset in range(len(self._order)):
                index = (self._next + offset) % len(self._order)
                jobs = self._lanes[self._order[index]]
                if jobs:
                    self._streak = self._streak + 1 if offset == 0 else 1
                    if self._streak >= self._weights[index]:
                        self._next, self._streak = (index + 1) % len(self._order), 0
                    else:
                        self._next = index
                    return jobs.popleft()
            if self._closed:
                return None
            self._ready.wait()

    def _work(self) -> None:
        while True:
            with self._ready:
                job = self._take()
            if job is None:
                return
            future, fn, args, kwargs = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = fn(*args, **kwargs)
            except BaseException as error:  # handed to the caller, as ThreadPoolExecutor does
                future.set_exception(error)
            else:
                future.set_result(result)


class _Lane(Executor):
    def __init__(self, worker: LaneWorker, name: str) -> None:
        self._worker, self._name = worker, name

    def submit(self, fn, /, *args, **kwargs) -> Future:  # type: ignore[override]
        return self._worker.submit_to(self._name, fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._worker.shutdown(wait, cancel_futures)
