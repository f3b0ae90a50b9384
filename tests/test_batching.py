"""space/batching.py: concurrent requests answered by batched calls, each with its own answer, in order."""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from space.batching import Batcher


def slow_square(seen: list, delay: float = 0.05):
    def run(items: list[int]) -> list[int]:
        seen.append(list(items))
        time.sleep(delay)  # while this batch runs, the other requests pile up for the next one
        return [x * x for x in items]
    return run


def test_a_lone_request_runs_at_once_and_alone():
    seen = []
    batcher = Batcher(slow_square(seen, 0.0), max_size=8)
    assert [batcher(x) for x in range(5)] == [0, 1, 4, 9, 16]
    assert batcher.sizes == [1, 1, 1, 1, 1] and not batcher.busy


def test_concurrent_requests_share_batches_and_each_gets_its_own_answer():
    seen = []
    batcher = Batcher(slow_square(seen), max_size=8)
    start = threading.Barrier(30)

    def call(x):
        start.wait()
        return batcher(x)

    with ThreadPoolExecutor(30) as pool:
        answers = list(pool.map(call, range(30)))
    assert answers == [x * x for x in range(30)]
    assert sum(batcher.sizes) == 30 and max(batcher.sizes) <= 8 and max(batcher.sizes) > 1
    assert sorted(x for batch in seen for x in batch) == list(range(30))  # every request ran exactly once
    assert not batcher.busy and not batcher.waiting


def test_a_failing_batch_fails_its_requests_only():
    calls = []

    def run(items):
        calls.append(list(items))
        if -1 in items:
            raise RuntimeError("out of memory")
        return items

    batcher = Batcher(run, max_size=4)
    with pytest.raises(RuntimeError, match="out of memory"):
        batcher(-1)
    assert batcher(3) == 3 and not batcher.busy  # the batcher goes on after a failure
    with pytest.raises(RuntimeError, match="a batch of 1 got 0 answers"):
        Batcher(lambda items: [], max_size=2)(1)
    with pytest.raises(ValueError, match="at least 1"):
        Batcher(run, max_size=0)


# ---- ZeroGPU: a batch runs in one visitor's request and is paid by that visitor's quota ---------------------------
#
# What `spaces.GPU` (spaces 0.51.3, spaces/zero/wrappers.py and client.py) does around a function on ZeroGPU, as far
# as a batch is concerned: it reads the visitor from Gradio's request context variable (`LocalContext.request`, the
# thread's own), asks the scheduler for the call's duration against that visitor's quota, and when the quota does
# not cover it raises `gr.Error("You have exceeded your free ZeroGPU quota (60s requested vs. 55s left). Try again
# in 23:59:00. ", title="ZeroGPU quota exceeded", print_exception=False)`. An exception inside the GPU function comes
# back as `gr.Error(<its class name>, title="ZeroGPU worker error")`. FakeZeroGPU does those two things, no more.

class FakeZeroGPU:
    """`spaces.GPU(fn)` reduced to its quota check and its worker error; `calls` records who paid for what."""

    def __init__(self, fn, quota: dict[str, int], seconds: int = 6, fails=lambda items: False):
        self.fn, self.quota, self.seconds, self.fails = fn, quota, seconds, fails
        self.calls: list[tuple[str, list, str]] = []  # (visitor whose request context ran it, items, outcome)
        self.lock = threading.Lock()

    def __call__(self, items):
        import gradio as gr
        from gradio.context import LocalContext

        visitor = LocalContext.request.get(None).visitor
        with self.lock:
            left = self.quota[visitor]
            if left < self.seconds:
                self.calls.append((visitor, list(items), "quota"))
                raise gr.Error(f"You have exceeded your free ZeroGPU quota ({self.seconds}s requested vs. {left}s "
                               "left). Try again in 23:59:00. ", title="ZeroGPU quota exceeded", print_exception=False)
            self.quota[visitor] = left - self.seconds
        if self.fails(items):
            self.calls.append((visitor, list(items), "gpu"))
            raise gr.Error("OutOfMemoryError", title="ZeroGPU worker error", print_exception=False)
        self.calls.append((visitor, list(items), "ok"))
        return self.fn(items)


def visit(batcher, visitor: str, item):
    """A request of `visitor` as Gradio runs it: in a thread whose request context names the visitor."""
    from types import SimpleNamespace

    from gradio.context import LocalContext

    LocalContext.request.set(SimpleNamespace(visitor=visitor))
    return batcher(item)


def batch_led_by(batcher, gate: threading.Event, visitors: list[str]) -> dict:
    """Each visitor sends one request (its index) while a first request holds the batcher; the first of them leads
    the next batch with all the others. Returns {visitor: answer or exception}."""
    results = {}

    def run(visitor, item):
        try:
            results[visitor] = visit(batcher, visitor, item)
        except Exception as exc:  # noqa: BLE001 - kept for the assertions
            results[visitor] = exc

    holder = threading.Thread(target=run, args=("holder", 0))
    holder.start()
    threads = [holder]
    for i, visitor in enumerate(visitors, start=1):
        while not batcher.busy:
            time.sleep(0.001)
        threads.append(threading.Thread(target=run, args=(visitor, i)))
        threads[-1].start()
        while len(batcher.waiting) < i:  # in this order: the first visitor leads the next batch
            time.sleep(0.001)
    gate.set()
    for thread in threads:
        thread.join(10)
    return results


def held(fn, gate: threading.Event):
    """`fn`, whose first call waits for `gate` (a request that keeps the batcher busy while the others queue)."""
    first = [True]

    def run(items):
        if first[0]:
            first[0] = False
            gate.wait(10)
        return fn(items)
    return run


def test_a_quota_error_fails_only_the_visitor_whose_quota_ran_out():
    import gradio as gr

    gate = threading.Event()
    gpu = FakeZeroGPU(lambda items: [x * x for x in items], {"holder": 60, "a": 0, "b": 60, "c": 60, "d": 60})
    batcher = Batcher(held(gpu, gate), max_size=8)
    results = batch_led_by(batcher, gate, ["a", "b", "c", "d"])
    assert batcher.sizes == [1, 4] and not batcher.busy
    assert [results[v] for v in ("holder", "b", "c", "d")] == [0, 4, 9, 16]
    error = results["a"]
    assert isinstance(error, gr.Error) and error.title == "ZeroGPU quota exceeded"
    assert "exceeded your free ZeroGPU quota (6s requested vs. 0s left)" in error.message
    # The batch ran in a's request and was refused on a's quota; then each ran alone, on its own visitor's quota.
    assert gpu.calls[:2] == [("holder", [0], "ok"), ("a", [1, 2, 3, 4], "quota")]
    assert sorted(gpu.calls[2:]) == [("a", [1], "quota"), ("b", [2], "ok"), ("c", [3], "ok"), ("d", [4], "ok")]
    assert gpu.quota == {"holder": 54, "a": 0, "b": 54, "c": 54, "d": 54} and batcher.retried == 4


def test_a_gpu_error_of_a_batch_is_retried_alone_and_a_lone_failure_stays_its_own():
    import gradio as gr

    gate = threading.Event()
    # A batch of more than two runs out of GPU memory; alone, only the request for 3 fails (its own error).
    gpu = FakeZeroGPU(lambda items: [x * x for x in items], {v: 600 for v in ("holder", "a", "b", "c")},
                      fails=lambda items: len(items) > 2 or items == [3])
    batcher = Batcher(held(gpu, gate), max_size=8)
    results = batch_led_by(batcher, gate, ["a", "b", "c"])
    assert batcher.sizes == [1, 3]
    assert (results["holder"], results["a"], results["b"]) == (0, 1, 4)
    assert isinstance(results["c"], gr.Error) and results["c"].title == "ZeroGPU worker error"
    assert gpu.calls[1] == ("a", [1, 2, 3], "gpu")
    assert sorted(gpu.calls[2:]) == [("a", [1], "ok"), ("b", [2], "ok"), ("c", [3], "gpu")] and batcher.retried == 3


def test_under_load_a_failing_input_fails_only_its_own_requests():
    def run(items):
        time.sleep(0.01)
        if any(x % 7 == 0 for x in items):
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return [x * x for x in items]

    batcher = Batcher(run, max_size=8)
    start = threading.Barrier(40)

    def call(x):
        start.wait()
        try:
            return batcher(x)
        except RuntimeError as exc:
            return str(exc)

    with ThreadPoolExecutor(40) as pool:
        answers = list(pool.map(call, range(1, 41)))
    assert max(batcher.sizes) > 1  # batches formed
    for x, answer in zip(range(1, 41), answers):
        assert answer == ("CUDA error: an illegal memory access was encountered" if x % 7 == 0 else x * x), x
    assert batcher.retried > 0 and not batcher.busy and not batcher.waiting  # the failed batches were split
