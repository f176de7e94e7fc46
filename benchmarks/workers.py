"""Each system in its own process, timed in turn: decoding engines measured without disturbing each other.

Why: in one process, a live CTranslate2 ``Translator`` slows PyTorch's CPU kernels that run next to it by a
third (2 cores, measured: Rosetta greedy 259 → 170 sentences/s while a CT2 translator merely exists; back to
259 once it is deleted; CT2 brings its own OpenMP runtime beside PyTorch's). A benchmark that loads every
engine into one process therefore measures the interference, not the engines.

``IsolatedSystems`` starts one worker per system (``spawn``: a fresh interpreter, nothing inherited), each
builds only its own system, and the parent calls them one at a time: the worker times its own call and
sends back (seconds, result). Only one worker computes at any moment; the others wait on a pipe.
"""

from __future__ import annotations

import importlib.util
import multiprocessing as mp
import pickle
import sys
import time
from collections.abc import Callable
from typing import Any

Builder = Callable[..., dict[str, Callable[[], Any]]]  # (*args) → mode → zero-argument run


def _builder_in_child(module_name: str, module_file: str, function: str) -> Builder:
    """The builder function, importing its module here by file under the parent's name for it (a benchmark
    loaded by path, e.g. by a test, is not importable by name), so that its classes unpickle too."""
    module = sys.modules.get(module_name)  # "__main__": spawn already re-ran the parent's script
    if module is None:
        spec = importlib.util.spec_from_file_location(module_name, module_file)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    return getattr(module, function)


def _worker(where: tuple[str, str, str], args_blob: bytes, threads: int, conn) -> None:
    import torch

    torch.set_num_threads(threads)
    try:
        builder = _builder_in_child(*where)
        runs = builder(*pickle.loads(args_blob))
        conn.send(("ready", sorted(runs)))
    except Exception as exc:  # the parent reports it and goes on without this system
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    while True:
        mode = conn.recv()
        if mode is None:
            return
        start = time.perf_counter()
        result = runs[mode]()
        conn.send((time.perf_counter() - start, result))


class IsolatedSystems:
    """name → a worker process holding that system; ``case(name, mode)`` is a call that runs it once there.

    ``builders``: name → (builder, args); ``builder(*args)`` runs in the worker and returns mode → run.
    Use as a context manager: the workers end with it. ``errors`` holds the systems that failed to build.
    """

    def __init__(self, builders: dict[str, tuple[Builder, tuple]], threads: int):
        ctx = mp.get_context("spawn")
        self.workers: dict[str, tuple[Any, Any]] = {}
        self.modes: dict[str, list[str]] = {}
        self.errors: dict[str, str] = {}
        self.last_seconds: dict[tuple[str, str], float] = {}
        for name, (builder, args) in builders.items():
            parent, child = ctx.Pipe()
            where = (builder.__module__, sys.modules[builder.__module__].__file__, builder.__name__)
            proc = ctx.Process(target=_worker, args=(where, pickle.dumps(args), threads, child), daemon=True)
            proc.start()
            self.workers[name] = (proc, parent)
        for name, (_proc, conn) in list(self.workers.items()):  # built concurrently, then wait for each
            status, payload = conn.recv()
            if status == "ready":
                self.modes[name] = payload
            else:
                self.errors[name] = payload
                self._stop(name)

    def case(self, name: str, mode: str) -> Callable[[], Any]:
        """A call that runs ``mode`` of ``name`` once in its worker; the worker's own timing of it is kept in
        ``last_seconds[(name, mode)]`` (the pipe's round trip excluded)."""
        conn = self.workers[name][1]

        def run() -> Any:
            conn.send(mode)
            seconds, result = conn.recv()
            self.last_seconds[(name, mode)] = seconds
            return result

        return run

    def _stop(self, name: str) -> None:
        proc, conn = self.workers.pop(name)
        try:
            conn.send(None)
        except (BrokenPipeError, OSError):
            pass
        proc.join(timeout=10)
        if proc.is_alive():
            proc.kill()

    def __enter__(self) -> IsolatedSystems:
        return self

    def __exit__(self, *exc) -> None:
        for name in list(self.workers):
            self._stop(name)
