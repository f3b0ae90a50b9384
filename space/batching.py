"""Batcher: concurrent single requests answered by batched calls (dynamic batching).

Why not Gradio's own `batch=True`: Gradio runs a batch as one event, so an error raised for one
request (a corrupt upload) fails every request batched with it, and the validator that could refuse
it first is ignored for batched events (gradio 6.31). Here each request is checked on its own, in
its own event, and only checked inputs are batched: one bad upload fails only itself.

How batches form: the first request to find the batcher idle runs at once, alone (no waiting
window, so a lone client sees no added latency). Requests that arrive while a batch runs wait;
when it ends, the oldest waiting request runs the next batch with everything waiting (up to
`max_size`). Each batch runs in the thread, and so in the Gradio request context, of one of its
own requests: on ZeroGPU that visitor's quota pays for the batch, as with Gradio's batching.
"""
from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any


@dataclass(eq=False)
class _Waiting:
    """One request in the batcher: its input, its answer to come, whether it runs the next batch."""

    item: Any
    answer: Future = field(default_factory=Future)
    leads: bool = False


class Batcher:
    """`batcher(item)` returns `run([..., item, ...])[i]`, computed together with the requests waiting beside it."""

    def __init__(self, run: Callable[[list], Sequence], max_size: int):
        if max_size < 1:
            raise ValueError(f"max_size must be at least 1, got {max_size}")
        self.run, self.max_size = run, max_size
        self.changed = threading.Condition()
        self.waiting: deque[_Waiting] = deque()
        self.busy = False
        self.sizes: list[int] = []  # the size of every batch run so far (for tests and benchmarks)

    def __call__(self, item):
        """The answer for `item`, from a batch run by this thread or by another request's."""
        me = _Waiting(item)
        with self.changed:
            self.waiting.append(me)
            if not self.busy:
                self.busy = me.leads = True
            while not me.leads and not me.answer.done():
                self.changed.wait()
        if me.leads:
            self._run_batch()
        return me.answer.result()

    def _run_batch(self) -> None:
        """Run the waiting requests (oldest first, at most max_size), answer them, pass the lead on."""
        with self.changed:
            batch = [self.waiting.popleft() for _ in range(min(self.max_size, len(self.waiting)))]
            self.sizes.append(len(batch))
        try:
            answers = list(self.run([w.item for w in batch]))
            if len(answers) != len(batch):
                raise RuntimeError(f"a batch of {len(batch)} got {len(answers)} answers")
        except BaseException as exc:  # noqa: BLE001 - every request of the batch gets the failure, re-raised there
            for w in batch:
                w.answer.set_exception(exc)
        else:
            for w, answer in zip(batch, answers):
                w.answer.set_result(answer)
        with self.changed:
            if self.waiting:
                self.waiting[0].leads = True
            else:
                self.busy = False
            self.changed.notify_all()
