"""One training run in a child process that tests/test_kill_resume.py can stop with SIGKILL at a chosen moment.

The test starts ``run`` in a fresh process (multiprocessing's forkserver: torch is imported once, each run is a
fork of that clean server). With a ``kill`` point the run stops there, tells the test through ``queue`` and
waits; the test then sends SIGKILL, so nothing of the run's own clean-up (``finally``, ``atexit``) runs.

Kill points, (where, n):

    ("step", n)      after optimizer step n, between checkpoints
    ("writing", n)   inside the write of checkpoint step n: every file written into its temporary directory
                     except manifest.json
    ("marking", n)   after checkpoint step n is renamed into place, before ``latest`` names it
    ("teacher", n)   while the distillation teacher translates its chunk n (0-based) of the training sources
"""

from __future__ import annotations

import time
import traceback
from pathlib import Path

import torch

from rosetta import checkpoint as ckpt
from rosetta.checkpoint import files
from rosetta.decode.translator import Translator
from rosetta.tasks import build_task
from rosetta.train import Trainer, load_recipe

# What the forkserver imports once, so that each run does not (it cannot import this file: Python 3.11's forkserver
# does not get the tests' sys.path). torch._dynamo is imported by the first torch.optim optimizer: 2 s a run.
# sklearn (the digits) and rouge_score (nltk, scipy) take seconds to import.
PRELOAD = ["torch._dynamo", "sklearn.datasets", "rouge_score.rouge_scorer", "rosetta.compress.distill",
           "rosetta.decode.translator", "rosetta.train",
           *(f"rosetta.tasks.{name}" for name in ("classification", "image_classification", "language_model", "mlm",
                                                  "qa", "summarise", "translation"))]


def _pause(queue, where: str, n: int) -> None:
    queue.put(("paused", where, n))
    time.sleep(300)  # the test kills us long before this ends
    raise RuntimeError("kill_worker: not killed")


def _install(kill: tuple[str, int], queue) -> None:
    """Monkeypatch the one function the kill point is in, in this process only."""
    where, n = kill
    if where == "step":
        train_step = Trainer.train_step

        def step_then_pause(self, micro_batches):
            stats = train_step(self, micro_batches)
            if self.step == n:
                _pause(queue, where, n)
            return stats
        Trainer.train_step = step_then_pause
    elif where == "writing":
        write_manifest = files.write_manifest

        def pause_before_manifest(directory):
            if Path(directory).name.startswith(f".{ckpt.step_name(n)}."):
                _pause(queue, where, n)
            return write_manifest(directory)
        files.write_manifest = pause_before_manifest
    elif where == "marking":
        atomic_write_text = ckpt.atomic_write_text

        def pause_before_latest(path, text):
            if Path(path).name == ckpt.LATEST and text.strip() == ckpt.step_name(n):
                _pause(queue, where, n)
            return atomic_write_text(path, text)
        ckpt.atomic_write_text = pause_before_latest
    elif where == "teacher":
        translate, calls = Translator.translate, []

        def translate_or_pause(self, *args, **kwargs):
            if len(calls) == n:
                _pause(queue, where, n)
            calls.append(1)
            return translate(self, *args, **kwargs)
        Translator.translate = translate_or_pause
    else:
        raise ValueError(f"unknown kill point {where!r}")


def run(recipe: str, out: str, resume: bool, kill: tuple[str, int] | None, queue, data_dir: str | None = None,
        teacher: str | None = None, chunk_size: int = 5, word_kd: float = 0.0) -> None:
    """Train ``recipe`` into ``out`` (``rosetta train``, or ``rosetta distill`` from ``teacher``); put
    ("done",) on ``queue`` at the end, ("error", traceback) on an exception."""
    try:
        torch.set_num_threads(1)
        if kill is not None:
            _install(kill, queue)
        rcp = load_recipe(recipe)
        data = Path(data_dir) if data_dir else None
        if teacher is not None:
            from rosetta.compress.distill import distill

            distill(teacher, rcp, out, word_kd, chunk_size=chunk_size, data_dir=data, resume=resume, quiet=True)
        else:
            task = build_task(rcp, data_dir=data, run_dir=Path(out), resume=resume)
            Trainer(rcp, task, out, progress=False).fit(resume=resume)
        queue.put(("done",))
    except BaseException:
        queue.put(("error", traceback.format_exc()))
