"""The single worker thread takes its lanes in turn: a flood in one lane never queues
ahead of another lane's work."""

import asyncio
import threading

import pytest

from app.engine.worker import LaneWorker


def _blocked(worker: LaneWorker, lane: str) -> threading.Event:
    """Occupy the worker with a job in `lane` until the returned event is set."""
    gate, started = threading.Event(), threading.Event()

    def hold() -> None:
        started.set()
        gate.wait()

    worker.submit_to(lane, hold)
    assert started.wait(30), "the worker never started the blocking job"
    return gate


def _order_run(worker: LaneWorker, explains: int, forwards: int) -> list[str]:
    """With the worker held, queue `explains` explanation jobs then `forwards` forward jobs;
    release it and return the order they ran in."""
    ran: list[str] = []
    gate = _blocked(worker, "explain")
    futures = [worker.submit_to("explain", ran.append, f"explain{i}") for i in range(explains)]
    futures += [worker.submit_to("forward", ran.append, f"forward{i}") for i in range(forwards)]
    gate.set()
    for future in futures:
        future.result(timeout=30)
    worker.shutdown()
    return ran


def test_lanes_are_taken_in_turn_and_each_lane_in_order():
    ran = _order_run(LaneWorker(("forward", "explain")), explains=3, forwards=3)
    # FIFO would run the three explanations first; the worker alternates instead.
    assert ran == ["forward0", "explain0", "forward1", "explain1", "forward2", "explain2"]


def test_a_weighted_lane_takes_that_many_turns_in_a_row_while_the_other_waits():
    worker = LaneWorker(("forward", "explain"), weights={"forward": 3})
    ran = _order_run(worker, explains=3, forwards=5)
    # Three predictions per explanation while both wait, then whatever is left in order.
    assert ran == [
        "forward0",
        "forward1",
        "forward2",
        "explain0",
        "forward3",
        "forward4",
        "explain1",
        "explain2",
    ]


def test_weights_below_one_or_for_unknown_lanes_are_refused():
    with pytest.raises(ValueError):
        LaneWorker(("forward", "explain"), weights={"forward": 0})
    with pytest.raises(ValueError):
        LaneWorker(("forward",), weights={"explain": 2})


def test_a_lane_is_an_executor_for_asyncio_and_errors_reach_the_caller():
    worker = LaneWorker(("forward",))

    def fail() -> None:
        raise ValueError("bad pass")

    async def scenario():
        loop = asyncio.get_running_loop()
        doubled = await loop.run_in_executor(worker.lane("forward"), lambda: 2 * 21)
        with pytest.raises(ValueError, match="bad pass"):
            await loop.run_in_executor(worker.lane("forward"), fail)
        return doubled

    assert asyncio.run(scenario()) == 42
    worker.shutdown()
    with pytest.raises(KeyError, match="unknown lane"):
        worker.lane("nope")


def test_shutdown_cancels_waiting_jobs_and_refuses_new_ones():
    worker = LaneWorker(("forward",))
    gate = _blocked(worker, "forward")
    waiting = worker.submit_to("forward", lambda: "never")
    worker.shutdown(wait=False, cancel_futures=True)
    gate.set()
    assert waiting.cancelled()
    with pytest.raises(RuntimeError, match="shut down"):
        worker.submit_to("forward", lambda: None)
