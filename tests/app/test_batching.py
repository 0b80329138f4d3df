import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest

from app.batching import MicroBatcher
from app.metrics import Metrics


def _run(coroutine):
    return asyncio.run(coroutine)


def _batch_sizes(metrics: Metrics) -> tuple[float, float, dict[float, float]]:
    """(passes, items, {bucket upper bound: passes of at most that size}) from the
    wbc_batch_size histogram, as /metrics reports it."""
    sample = metrics.registry.get_sample_value
    labels = {"pass_kind": "test"}
    buckets = {bound: sample("wbc_batch_size_bucket", labels | {"le": f"{bound:.1f}"})
               for bound in (1, 2, 4, 8)}
    return (sample("wbc_batch_size_count", labels), sample("wbc_batch_size_sum", labels),
            buckets)


def test_concurrent_items_share_a_batch_and_keep_their_order():
    calls: list[list[int]] = []

    def double(items):
        calls.append(list(items))
        return [2 * item for item in items]

    async def scenario():
        batcher = MicroBatcher(double, ThreadPoolExecutor(1), max_size=8, max_wait_s=0.05,
                               observer=metrics.batch_observer("test"))
        with batcher.expecting(5):
            results = await asyncio.gather(*(batcher.submit(i) for i in range(5)))
        await batcher.close()
        return results

    metrics = Metrics()
    results = _run(scenario())
    passes, items, _ = _batch_sizes(metrics)
    assert results == [0, 2, 4, 6, 8]
    assert items == 5 and passes < 5  # some pass held more than one item
    assert len(calls) == passes


def test_batches_never_exceed_the_limit():
    async def scenario():
        batcher = MicroBatcher(lambda items: items, ThreadPoolExecutor(1), 3, 0.01,
                               observer=metrics.batch_observer("test"))
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

    from app.worker import LaneWorker

    ran: list[list[int]] = []
    worker = LaneWorker(("forward",))
    gate, started = threading.Event(), threading.Event()
    worker.submit_to("forward", lambda: (started.set(), gate.wait()))
    assert started.wait(30)

    def record(items):
        ran.append(list(items))
        return items

    async def scenario():
        batcher = MicroBatcher(record, worker.lane("forward"), 8, 0.0,
                               observer=metrics.batch_observer("test"))
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
