"""Batcher: concurrent single requests answered by batched calls (dynamic batching).

Why not Gradio's own `batch=True`: Gradio runs a batch as one event, so an error raised for one
request (a corrupt upload) fails every request batched with it, and the validator that could refuse
it first is ignored for batched events (gradio 6.31). Here each request is checked on its own, in
its own event, and only checked inputs are batched: one bad upload fails only itself.

How batches form: the first request to find the batcher idle runs at once, alone (no waiting
window, so a lone client sees no added latency). Requests that arrive while a batch runs wait;
when it ends, the oldest waiting request runs the next batch with everything waiting (up to
`max_size`). Each batch runs in the thread, and so in the Gradio request context, of one of its
own requests: on ZeroGPU that visitor's quota pays for the batch.

A failed batch fails no one for someone else: when a batch of several raises (on ZeroGPU, the
leading visitor's "ZeroGPU quota exceeded", or a GPU error such as running out of memory), each of
its requests runs again alone, in its own thread and so in its own request context, paid by its own
visitor's quota. Only a request that also fails alone gets an error, and it is its own.
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
    """One request in the batcher: its input, its answer to come, whether it runs the next batch or runs alone."""

    item: Any
    answer: Future = field(default_factory=Future)
    leads: bool = False
    alone: bool = False  # its batch failed: run it again by itself, in this request's own thread


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
        self.retried = 0  # requests run again alone after their batch failed

    def __call__(self, item):
        """The answer for `item`, from a batch run by this thread or by another request's, or run alone here."""
        me = _Waiting(item)
        with self.changed:
            self.waiting.append(me)
            if not self.busy:
                self.busy = me.leads = True
            while not me.leads and not me.alone and not me.answer.done():
                self.changed.wait()
        if me.leads:
            self._run_batch()
        if me.alone:
            self._run_alone(me)
        return me.answer.result()

    def _answers(self, items: list) -> list:
        answers = list(self.run(items))
        if len(answers) != len(items):
            raise RuntimeError(f"a batch of {len(items)} got {len(answers)} answers")
        return answers

    def _run_batch(self) -> None:
        """Run the waiting requests (oldest first, at most max_size), answer them, pass the lead on."""
        with self.changed:
            batch = [self.waiting.popleft() for _ in range(min(self.max_size, len(self.waiting)))]
            self.sizes.append(len(batch))
        try:
            answers = self._answers([w.item for w in batch])
        except Exception as exc:  # noqa: BLE001 - one request's failure is never handed to the others
            if len(batch) == 1:
                batch[0].answer.set_exception(exc)
            else:  # each runs again alone, in its own thread (its own request context, its own quota)
                with self.changed:
                    for w in batch:
                        w.alone = True
        except BaseException as exc:  # noqa: BLE001 - an exit or interrupt stops every request of the batch
            for w in batch:
                w.answer.set_exception(exc)
        else:
            for w, answer in zip(batch, answers):
                w.answer.set_result(answer)
        finally:
            with self.changed:
                if self.waiting:
                    self.waiting[0].leads = True
                else:
                    self.busy = False
                self.changed.notify_all()

    def _run_alone(self, me: _Waiting) -> None:
        """Run one request of a failed batch by itself: its answer, or its own error."""
        with self.changed:
            self.retried += 1
        try:
            me.answer.set_result(self._answers([me.item])[0])
        except BaseException as exc:  # noqa: BLE001 - re-raised in this request by answer.result()
            me.answer.set_exception(exc)
