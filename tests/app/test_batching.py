import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from app.core.prometheus import Metrics
from app.engine.batching import MicroBatcher


def _run(coroutine):
    return asyncio.run(coroutine)


def _batch_sizes(metrics: Metrics) -> tuple[float, float, dict[float, float]]:
    """(passes, items, {bucket upper bound: passes of at most that size}) from the
    wbc_batch_size histogram, as /metrics reports it."""
    sample = metrics.registry.get_sample_value
    labels = {"pass_kind": "test"}
    buckets = {
        bound: sample("wbc_batch_size_bucket", labels | {"le": f"{bound:.1f}"})
        for bound in (1, 2, 4, 8)
    }
    return (sample("wbc_batch_size_count", labels), sample("wbc_batch_size_sum", labels), buckets)


def test_concurrent_items_share_a_batch_and_keep_their_order():
    calls: list[list[int]] = []

    def double(items):
        calls.append(list(items))
        return [2 * item for item in items]

    async def scenario():
        # The wait for more items ends when every announced item is queued (an event), not
        # on a clock: the 60 s ceiling is never reached by a passing run, so the five share
        # one pass however slowly the machine runs.
        batcher = MicroBatcher(
            double,
            ThreadPoolExecutor(1),
            max_size=8,
            max_wait_s=60.0,
            observer=metrics.batch_observer("test"),
        )
        with batcher.expecting(5):
            results = await asyncio.gather(*(batcher.submit(i) for i in range(5)))
        await batcher.close()
        return results

    metrics = Metrics()
    results = _run(scenario())
    passes, items, buckets = _batch_sizes(metrics)
    assert results == [0, 2, 4, 6, 8]
    assert calls == [[0, 1, 2, 3, 4]]  # one pass, in submission order
    assert (passes, items) == (1, 5) and buckets[4] == 0 and buckets[8] == 1


def test_items_queued_during_a_pass_join_the_next_one():
    """While a pass runs, new items wait in the queue and go together in the next pass. The
    pass is held on an event until they are queued: no clock decides the outcome."""
    started, release = threading.Event(), threading.Event()
    calls: list[list[int]] = []

    def gated(items):
        calls.append(list(items))
        if items == [0]:
            started.set()
            release.wait(timeout=60)
        return items

    async def scenario():
        batcher = MicroBatcher(gated, ThreadPoolExecutor(1), max_size=8, max_wait_s=0.0)
        first = asyncio.ensure_future(batcher.submit(0))
        # The first pass has started and holds the executor.
        assert await asyncio.to_thread(started.wait, 60)
        rest = [asyncio.ensure_future(batcher.submit(i)) for i in (1, 2, 3)]
        for _ in range(3):  # each submit runs to its queue.put in one loop iteration
            await asyncio.sleep(0)
        release.set()
        results = await asyncio.gather(first, *rest)
        await batcher.close()
        return results

    assert _run(scenario()) == [0, 1, 2, 3]
    assert calls == [[0], [1, 2, 3]]


def test_batches_never_exceed_the_limit():
    async def scenario():
        batcher = MicroBatcher(
            lambda items: items,
            ThreadPoolExecutor(1),
            3,
            0.01,
            observer=metrics.batch_observer("test"),
        )
        with batcher.expecting(10):
            results = await asyncio.gather(*(batcher.submit(i) for i in range(10)))
        await batcher.close()
        return results

    metrics = Metrics()
    results = _run(scenario())
    passes, items, buckets = _batch_sizes(metrics)
    assert results == list(range(10))
    assert items == 10
    # No pass above 3: every pass falls in the le=4 bucket, and at least 4 passes ran.
    assert buckets[4] == passes and passes >= 4


def test_a_failing_batch_fails_its_callers_and_the_batcher_lives_on():
    def flaky(items):
        if -1 in items:
            raise ValueError("bad batch")
        return items

    async def scenario():
        batcher = MicroBatcher(flaky, ThreadPoolExecutor(1), 4, 0.0)
        with pytest.raises(ValueError, match="bad batch"):
            await batcher.submit(-1)
        after = await batcher.submit(7)
        await batcher.close()
        return after

    assert _run(scenario()) == 7


def test_an_item_whose_caller_stopped_waiting_never_runs():
    """A caller cancelled (deadline, disconnect) while its batch waits for the worker: the
    batch's other items run, the cancelled one is dropped and never counted as a pass."""
    import threading

    from app.engine.worker import LaneWorker

    ran: list[list[int]] = []
    worker = LaneWorker(("forward",))
    gate, started = threading.Event(), threading.Event()
    worker.submit_to("forward", lambda: (started.set(), gate.wait()))
    assert started.wait(30)

    def record(items):
        ran.append(list(items))
        return items

    async def scenario():
        batcher = MicroBatcher(
            record, worker.lane("forward"), 8, 0.0, observer=metrics.batch_observer("test")
        )
        callers = [asyncio.create_task(batcher.submit(i)) for i in range(3)]
        while batcher._queue is None or not batcher._queue.empty():
            await asyncio.sleep(0.01)  # until the batch of three waits at the blocked worker
        callers[1].cancel()
        await asyncio.sleep(0)
        gate.set()
        results = await asyncio.gather(*callers, return_exceptions=True)
        await batcher.close()
        return results

    metrics = Metrics()
    results = _run(scenario())
    worker.shutdown()
    passes, items, _ = _batch_sizes(metrics)
    assert results[0] == 0 and results[2] == 2
    assert isinstance(results[1], asyncio.CancelledError)
    assert ran == [[0, 2]] and items == 2 and passes == 1


def test_passes_run_at_once_up_to_the_limit_and_items_still_batch_behind_them():
    """Two passes may run at once (two executor threads): while both are held, the third
    item waits, and items queued meanwhile go together into the next pass. Events, not
    clocks, decide the outcome."""
    running, release = threading.Semaphore(0), threading.Event()
    calls: list[list[int]] = []
    lock = threading.Lock()

    def gated(items):
        with lock:
            calls.append(list(items))
        if items[0] in (0, 1):
            running.release()
            release.wait(timeout=60)
        return items

    async def scenario():
        batcher = MicroBatcher(
            gated, ThreadPoolExecutor(2), max_size=8, max_wait_s=0.0, max_in_flight=2
        )
        first = [asyncio.ensure_future(batcher.submit(i)) for i in (0,)]
        assert await asyncio.to_thread(running.acquire, True, 60)  # pass [0] runs
        first.append(asyncio.ensure_future(batcher.submit(1)))
        assert await asyncio.to_thread(running.acquire, True, 60)  # pass [1] runs beside it
        rest = [asyncio.ensure_future(batcher.submit(i)) for i in (2, 3, 4)]
        for _ in range(5):
            await asyncio.sleep(0)
        assert calls == [[0], [1]]  # both slots held: nothing else has started
        release.set()
        results = await asyncio.gather(*first, *rest)
        await batcher.close()
        return results

    assert _run(scenario()) == [0, 1, 2, 3, 4]
    assert calls[:2] == [[0], [1]] and calls[2] == [2, 3, 4]
