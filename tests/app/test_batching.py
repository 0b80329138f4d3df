import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest

from app.batching import MicroBatcher


def _run(coroutine):
    return asyncio.run(coroutine)


def test_concurrent_items_share_a_batch_and_keep_their_order():
    calls: list[list[int]] = []

    def double(items):
        calls.append(list(items))
        return [2 * item for item in items]

    async def scenario():
        batcher = MicroBatcher(double, ThreadPoolExecutor(1), max_size=8, max_wait_s=0.05)
        with batcher.expecting(5):
            results = await asyncio.gather(*(batcher.submit(i) for i in range(5)))
        await batcher.close()
        return results, batcher.batch_sizes

    results, sizes = _run(scenario())
    assert results == [0, 2, 4, 6, 8]
    assert sum(sizes) == 5 and max(sizes) > 1
    assert len(calls) == len(sizes)


def test_batches_never_exceed_the_limit():
    async def scenario():
        batcher = MicroBatcher(lambda items: items, ThreadPoolExecutor(1), 3, 0.01)
        with batcher.expecting(10):
            results = await asyncio.gather(*(batcher.submit(i) for i in range(10)))
        await batcher.close()
        return results, batcher.batch_sizes

    results, sizes = _run(scenario())
    assert results == list(range(10))
    assert max(sizes) <= 3


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
