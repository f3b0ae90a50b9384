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
