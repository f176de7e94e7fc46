"""One worker thread that owns the model, and a micro-batcher in front of it.

Why a thread: decoding takes milliseconds to seconds of CPU (or GPU) time; run on the event loop it would
stall every other connection, health checks included. Why one: the model is one set of weights and torch
already spreads one call over all cores, so two calls at once only compete for them.

Why batching: a batch of n sentences costs far less than n single calls (one matrix product instead of n
thin ones). While the worker decodes, new requests queue up; when it comes back it takes *everything*
waiting, groups the requests that ask for the same decoding options (beam, max_length), and translates each
group with one ``Translator.translate`` call — up to ``max_batch`` sentences, the rest wait for the next
round. Answers are split back per request, in order. Nobody waits on purpose: an idle server answers a lone
request at once (``max_wait_ms`` can add a short wait for company).

    request ─ submit_translate ─┐                 ┌─ group (beam 4): texts of r1 + r3 → translate ─ split
    request ─ submit_translate ─┼─ queue ─ worker ┤
    request ─ submit_call ──────┘                 └─ group (beam 1): texts of r2 → translate ─ split

The same merging serves every batch-shaped model call, not only translation: ``functions`` names them
(``{"classify": classifier.classify, "embed": …}``) and ``submit_batch(name, texts, **options)`` queues a
request; requests merge when they call the same function with the same options.

If a merged call raises, each of its requests is retried alone, so one bad request cannot fail the others.

A request that is no longer waited for (its client went away, or it timed out: the caller cancelled the
future) is dropped when the worker comes to it, unrun: an abandoned generation stops at once instead of
spending the model's time on tokens nobody reads (``stats["cancelled"]`` counts them). A job the worker has
started runs to its end; its answer is then thrown away.
"""

from __future__ import annotations

import collections
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

Options = tuple[tuple[str, Any], ...]  # sorted (name, value) pairs, e.g. beam and max_length: merge only when equal


@dataclass
class BatchJob:
    """``texts`` for the batch function ``name``, called with keyword ``options``."""

    texts: list[str]
    options: Options
    name: str = "translate"
    future: Future = field(default_factory=Future)


@dataclass
class CallJob:
    fn: Callable[[], Any]
    future: Future = field(default_factory=Future)


_STOP = object()


class Batcher:
    """Runs ``translate(texts, beam=, max_length=)`` and other model work on one daemon thread (``translate``
    None: a model that does not translate, e.g. an image classifier). ``functions``: more batch functions by
    name, each ``fn(texts, **options) -> one result per text`` (``submit_batch``).

    ``batching=False``: every request is its own call (the baseline the benchmark compares against).
    ``stats`` counts requests, sentences and model calls; ``largest_batch`` is the most sentences (from
    how many requests) that went through one call.
    """

    def __init__(self, translate: Callable[..., list[str]] | None = None, batching: bool = True, max_batch: int = 64,
                 max_wait_ms: float = 0.0, functions: dict[str, Callable[..., list]] | None = None):
        self.translate, self.batching = translate, batching
        self.functions = {**({"translate": translate} if translate else {}), **(functions or {})}
        self.max_batch, self.max_wait = max(1, max_batch), max_wait_ms / 1000
        self.queue: queue.Queue = queue.Queue()
        self.lock = threading.Lock()
        self.stats = {"requests": 0, "sentences": 0, "model_calls": 0, "merged_calls": 0, "largest_batch": 0,
                      "largest_batch_requests": 0, "errors": 0, "cancelled": 0}
        self.thread = threading.Thread(target=self._run, name="rosetta-model", daemon=True)
        self.thread.start()

    # ------------------------------------------------------------------ called from the event loop
    def submit_translate(self, texts: list[str], beam: int | None = None, max_length: int | None = None) -> Future:
        if self.translate is None:
            raise RuntimeError("this batcher serves a model that does not translate (only submit_call)")
        return self.submit_batch("translate", texts, beam=beam, max_length=max_length)

    def submit_batch(self, name: str, texts: list[str], **options: Any) -> Future:
        """Queue ``functions[name](texts, **options)``; merged with waiting requests for the same name and options.
        The future's result: the function's outputs for these texts, in order."""
        if name not in self.functions:
            raise RuntimeError(f"this batcher has no batch function {name!r} (it has: {', '.join(self.functions)})")
        job = BatchJob(list(texts), tuple(sorted(options.items())), name)
        self.queue.put(job)
        return job.future

    def submit_call(self, fn: Callable[[], Any]) -> Future:
        """Run ``fn()`` on the model thread (e.g. an attention request), between translation batches."""
        job = CallJob(fn)
        self.queue.put(job)
        return job.future

    def pending(self) -> int:
        return self.queue.qsize()

    def close(self, timeout: float = 5.0) -> None:
        self.queue.put(_STOP)
        self.thread.join(timeout)

    # ------------------------------------------------------------------ the worker thread
    def _run(self) -> None:
        waiting: collections.deque = collections.deque()
        while True:
            if not waiting:
                waiting.append(self.queue.get())  # block until there is work
                if self.max_wait and self.batching:
                    time.sleep(self.max_wait)
            while True:  # take everything else that has arrived meanwhile
                try:
                    waiting.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            if any(job is _STOP for job in waiting):
                for job in waiting:
                    if job is not _STOP and self._claim(job):
                        job.future.set_exception(RuntimeError("the server is shutting down"))
                return
            self._one_round(waiting)

    def _one_round(self, waiting: collections.deque) -> None:
        """Serve the oldest job, together with every later batch job for the same function and options (up to
        ``max_batch`` sentences); the others stay in ``waiting``, in order."""
        first = waiting.popleft()
        if not self._claim(first):
            return
        if isinstance(first, CallJob):
            self._settle(first.future, first.fn)
            return
        group = [first]
        if self.batching:
            size, keep = len(first.texts), collections.deque()
            while waiting:
                job = waiting.popleft()
                if isinstance(job, BatchJob) and (job.name, job.options) == (first.name, first.options) and (
                        size + len(job.texts) <= self.max_batch):
                    if self._claim(job):
                        group.append(job)
                        size += len(job.texts)
                else:
                    keep.append(job)
            waiting.extend(keep)
        self._run_group(group)

    def _claim(self, job: BatchJob | CallJob) -> bool:
        """Mark ``job`` as running (from now on its caller can no longer cancel it, so its answer can always be
        set); False, and counted, if the caller had already cancelled it: nobody waits for its answer."""
        if job.future.set_running_or_notify_cancel():
            return True
        with self.lock:
            self.stats["cancelled"] += 1
        return False

    def _run_group(self, group: list[BatchJob]) -> None:
        texts = [t for job in group for t in job.texts]
        try:
            outputs = self.functions[group[0].name](texts, **dict(group[0].options))
            if len(outputs) != len(texts):
                raise RuntimeError(f"{group[0].name} gave {len(outputs)} results for {len(texts)} texts")
        except Exception as error:  # reported to its requests; never kills the thread
            if len(group) > 1:
                for job in group:  # find the culprit: the others still get their answers
                    self._run_group([job])
                return
            self._count(group, texts, error=True)
            group[0].future.set_exception(error)
            return
        self._count(group, texts)
        start = 0
        for job in group:
            job.future.set_result(outputs[start : start + len(job.texts)])
            start += len(job.texts)

    def _count(self, group: list[BatchJob], texts: list[str], error: bool = False) -> None:
        with self.lock:
            s = self.stats
            s["requests"] += len(group)
            s["sentences"] += len(texts)
            s["model_calls"] += 1
            s["merged_calls"] += len(group) > 1
            s["errors"] += error
            if len(texts) > s["largest_batch"]:
                s["largest_batch"], s["largest_batch_requests"] = len(texts), len(group)

    def _settle(self, future: Future, fn: Callable[[], Any]) -> None:
        try:
            future.set_result(fn())
        except Exception as error:  # the caller gets it as a 500
            with self.lock:
                self.stats["errors"] += 1
            future.set_exception(error)

    def snapshot(self) -> dict[str, int]:
        with self.lock:
            return dict(self.stats)
