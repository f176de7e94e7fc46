"""The training loop, shared by every task (translation, language model, classification).

A task supplies the model, the batches, the loss and the evaluation; the Trainer supplies the rest:
Adam with the paper's warm-up + inverse-square-root schedule, gradient accumulation and clipping,
autocast, periodic evaluation with keep-best and early stopping, atomic checkpoints with an exact
``--resume``, checkpoint averaging, a progress bar and a JSONL metrics log, and DistributedDataParallel
under ``torchrun``.

A run survives ``kill -9`` at any moment: ``--resume`` continues from the checkpoint ``latest`` names, after
tidying what the killed run left (half-written copies, checkpoints written but not yet marked, log lines of the
steps it redoes), and computes the same numbers, bit for bit, as a run that was never stopped (same device and
threads). A full disk stops the run with one line saying which checkpoint is intact.

The run directory's layout (OUT/checkpoints/step_N, OUT/model, …) is ``rosetta.checkpoint.layout``'s.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import random
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.distributed as dist
from torch import nn

from rosetta import checkpoint as ckpt
from rosetta.train.optimizers import build_optimizer
from rosetta.train.precision import autocast_for, resolve_device
from rosetta.train.progress import MetricsLog, ProgressBar
from rosetta.train.recipe import Recipe
from rosetta.train.schedule import learning_rate


class Batches(Protocol):
    """An endless, resumable stream of batches (see rosetta.data.batching)."""

    def __iter__(self) -> Iterator[Any]: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class Task(Protocol):
    """What a Trainer needs from a task."""

    model: nn.Module
    metric: str  # the validation metric that decides "best", e.g. "bleu" or "valid_loss"
    higher_is_better: bool

    def batches(self, rank: int, world_size: int) -> Batches: ...
    def loss(self, model: nn.Module, batch: Any, label_smoothing: float) -> tuple[torch.Tensor, torch.Tensor, int]:
        """(summed training loss, summed NLL, number of targets) of one batch."""
    def count_tokens(self, batch: Any) -> int: ...
    def evaluate(self, model: nn.Module, full: bool) -> dict[str, float]: ...
    def model_config(self) -> dict[str, Any]: ...
    def write_tokenizers(self, directory: Path) -> None: ...
    def to(self, device: torch.device) -> None: ...


def distributed_env() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun's environment; (0, 1, 0) when run directly."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


class Trainer:
    """Runs a task's training to ``max_steps`` / ``max_minutes`` / early stop, resumable at any checkpoint."""

    def __init__(self, recipe: Recipe, task: Task, out_dir: str | Path, progress: bool = True):
        self.recipe, self.task, self.cfg = recipe, task, recipe.train
        self.out = Path(out_dir)
        self.rank, self.world_size, local_rank = distributed_env()
        self.is_main = self.rank == 0
        if self.world_size > 1 and not dist.is_initialized():
            backend = "nccl" if torch.cuda.is_available() and self.cfg.device != "cpu" else "gloo"
            dist.init_process_group(backend)
        device = resolve_device(self.cfg.device)
        if device.type == "cuda" and self.world_size > 1:
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
        self.device = device
        if self.cfg.threads:
            torch.set_num_threads(self.cfg.threads)
        task.to(device)
        self.model = task.model
        self.train_model: nn.Module = self.model
        if self.world_size > 1:
            self.train_model = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[device.index] if device.type == "cuda" else None)
        if self.cfg.compile:
            self.train_model = torch.compile(self.train_model)
        self.optimizer = build_optimizer(self.model, self.cfg.optimizer, self.cfg.lr, self.cfg.weight_decay,
                                         self.cfg.betas, self.cfg.eps)
        self.batches = task.batches(self.rank, self.world_size)
        self.step = 0
        self.best: float | None = None
        self.best_checkpoint: str | None = None  # the checkpoint saved with the best metric (``best`` names it)
        self.bad_evals = 0
        self.elapsed = 0.0  # training seconds before this process (resume)
        self.budget_elapsed = 0.0  # seconds of the max_minutes budget spent, by rank 0's clock
        self._t0 = time.time()  # reset by fit()
        self.progress = progress and self.is_main
        self.log = MetricsLog(self.out / ckpt.METRICS_FILE, self.is_main)

    # ---------------------------------------------------------------- checkpoints
    @property
    def checkpoints(self) -> Path:
        return ckpt.checkpoints_dir(self.out)

    def _trainer_state(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        state = {
            "step": self.step,
            "best": self.best,
            "best_checkpoint": self.best_checkpoint,
            "bad_evals": self.bad_evals,
            "elapsed": self.elapsed + (time.time() - self._t0),
            "data": self.batches.state_dict(),
            "python_rng": random.getstate()[1][:625],
            "python_rng_version": random.getstate()[0],
            "recipe": self.recipe.to_dict(),
        }
        tensors = {"torch_rng": torch.get_rng_state()}
        if self.device.type == "cuda":
            tensors["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        return state, tensors

    def save(self, best: bool = False) -> Path:
        """Write checkpoints/step_N atomically (rank 0 only), mark it ``latest`` (and first ``best``, when it is
        the best so far), then prune to ``keep_last``. A write that fails (a full disk) raises
        ``CheckpointWriteError``, saying which checkpoint is still intact."""
        path = self.checkpoints / ckpt.step_name(self.step)
        if self.is_main:
            if best:
                self.best_checkpoint = path.name
            state, tensors = self._trainer_state()
            with self._saying_what_is_intact():
                ckpt.save_checkpoint(path, self.model, self.task.model_config(), self.task.write_tokenizers,
                                     self.optimizer, state, tensors)
                for marker in ([ckpt.BEST] if best else []) + [ckpt.LATEST]:
                    self._mark(marker, path.name)
            keep = max(self.cfg.keep_last, self.cfg.average_last)
            for old in self.saved_checkpoints()[:-keep]:
                if old.name != self.best_checkpoint:
                    shutil.rmtree(old, ignore_errors=True)
        self._barrier()
        return path

    def _mark(self, marker: str, name: str) -> None:
        """Point ``marker`` (``latest`` or ``best``) at the checkpoint ``name``."""
        try:
            ckpt.atomic_write_text(self.checkpoints / marker, name + "\n")
        except OSError as e:
            raise ckpt.write_error(f"marking checkpoint {name} as {marker} in {self.checkpoints}", e) from e

    @contextlib.contextmanager
    def _saying_what_is_intact(self) -> Iterator[None]:
        """A failed checkpoint write becomes one line: what failed, which checkpoint is intact, what to do."""
        latest = ckpt.marked_checkpoint(self.out, ckpt.LATEST)
        try:
            yield
        except ckpt.CheckpointWriteError as e:
            fix = "free some space" if e.errno == errno.ENOSPC else "fix that"
            then = (f"the latest checkpoint {latest.name} is intact — {fix} and run again with --resume" if latest
                    else f"no checkpoint was saved before — {fix} and run again")
            raise ckpt.CheckpointWriteError(f"{e}; {then}", e.errno) from e

    def _best_name(self) -> str | None:
        best = ckpt.marked_checkpoint(self.out, ckpt.BEST)
        return best.name if best is not None else None

    def saved_checkpoints(self) -> list[Path]:
        if not self.checkpoints.exists():
            return []
        return sorted(p for p in self.checkpoints.glob("step_*") if p.is_dir() and not p.name.endswith(".tmp"))

    def resume(self) -> bool:
        """Restore model, optimizer, RNGs, data position and counters from the checkpoint ``latest`` names, after
        removing what a killed save left half done (``remove_leftovers``); then ``_forget_newer``."""
        if self.is_main:
            for folder in (self.out, self.checkpoints):
                ckpt.remove_leftovers(folder)
        self._barrier()
        path = ckpt.marked_checkpoint(self.out, ckpt.LATEST)
        if path is None:
            return False
        ckpt.verify_checkpoint(path)
        ckpt.load_weights(path, self.model, self.device)
        state, tensors = ckpt.load_trainer_state(path)
        opt = {k.removeprefix("optimizer."): v for k, v in tensors.items() if k.startswith("optimizer.")}
        self.optimizer.load_state_dict(ckpt.optimizer_from_tensors(opt, state["optimizer"]))
        self.batches.load_state_dict(state["data"])
        self.step, self.best, self.bad_evals = state["step"], state["best"], state["bad_evals"]
        self.best_checkpoint = state.get("best_checkpoint", self._best_name())  # older checkpoints: the marker
        self.elapsed = state["elapsed"]
        random.setstate((state["python_rng_version"], tuple(state["python_rng"]), None))
        torch.set_rng_state(tensors["extra.torch_rng"])
        if "extra.cuda_rng" in tensors and self.device.type == "cuda":
            torch.cuda.set_rng_state(tensors["extra.cuda_rng"], self.device)
        if self.is_main:
            self._forget_newer()
        return True

    def _forget_newer(self) -> None:
        """Remove the checkpoints newer than the resumed one (a killed run wrote them but had not marked them
        ``latest``): this run writes them again, and pruning must not keep them instead of its own. ``best``
        is set to what the resumed trainer state says."""
        for path in self.saved_checkpoints():
            if path.name > ckpt.step_name(self.step):
                shutil.rmtree(path)
        if self.best_checkpoint is not None:
            self._mark(ckpt.BEST, self.best_checkpoint)
        else:
            (self.checkpoints / ckpt.BEST).unlink(missing_ok=True)

    def _barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()

    # ---------------------------------------------------------------- evaluation
    def evaluate(self, full: bool) -> dict[str, float]:
        self.model.eval()
        with torch.no_grad(), autocast_for(self.device, self.cfg.precision):
            metrics = self.task.evaluate(self.model, full) if self.is_main else {}
        self.model.train()
        if self.is_main and self.task.metric in metrics:
            value = metrics[self.task.metric]
            better = self.best is None or (value > self.best if self.task.higher_is_better else value < self.best)
            if better:
                self.best, self.bad_evals = value, 0
                metrics["is_best"] = True
            else:
                self.bad_evals += 1
        self.log.write(kind="valid", step=self.step, **metrics)
        return metrics

    # ---------------------------------------------------------------- the loop
    def _micro_batches(self, it: Iterator[Any]) -> list[Any]:
        return [next(it) for _ in range(self.cfg.accum_steps)]

    def _time_fraction(self) -> float | None:
        """Share of the wall-clock budget spent (rank 0's clock), or None without ``max_minutes``."""
        if self.cfg.max_minutes is None:
            return None
        return self.budget_elapsed / (self.cfg.max_minutes * 60)

    def train_step(self, micro_batches: list[Any]) -> dict[str, float]:
        """One optimizer step over ``accum_steps`` micro-batches: the loss is the sum over every target
        token of the global batch divided by their count, so accumulation and DDP change nothing."""
        local_tokens = float(sum(self.task.count_tokens(b) for b in micro_batches))
        # Rank 0's clock rides along with the token count, so every rank sees the same time budget (the
        # same learning rate, the same stopping step).
        clock = self.elapsed + time.time() - self._t0 if self.is_main else 0.0
        counts = torch.tensor([local_tokens, clock], dtype=torch.float64)
        if self.world_size > 1:
            dist.all_reduce(counts)
        total_tokens = max(float(counts[0]), 1.0)
        self.budget_elapsed = float(counts[1])
        lr = learning_rate(self.step + 1, self.cfg, self._time_fraction())
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        loss_sum = nll_sum = 0.0
        for i, batch in enumerate(micro_batches):
            sync = i == len(micro_batches) - 1 or self.world_size == 1
            ctx = contextlib.nullcontext() if sync else self.train_model.no_sync()
            with ctx, autocast_for(self.device, self.cfg.precision):
                loss, nll, _ = self.task.loss(self.train_model, batch, self.cfg.label_smoothing)
                # DDP averages gradients over ranks; scale so the result is the global token mean.
                (loss * self.world_size / total_tokens).backward()
            loss_sum += float(loss.detach())
            nll_sum += float(nll)
        grad_norm = float(nn.utils.clip_grad_norm_(self.model.parameters(),
                                                   self.cfg.clip_norm if self.cfg.clip_norm else float("inf")))
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return {"loss": loss_sum / max(local_tokens, 1), "nll": nll_sum / max(local_tokens, 1), "lr": lr,
                "grad_norm": grad_norm, "tokens": total_tokens}

    def fit(self, resume: bool = False) -> Path:
        """Train; return the directory of the final model (OUT/model)."""
        cfg = self.cfg
        self.out.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(cfg.seed)
        random.seed(cfg.seed)
        self._t0 = time.time()
        resumed = resume and self.resume()
        if resume:  # the records of the steps a killed run did after its checkpoint (all, if it had none) go
            self.log.rewind(self.step)
        if resumed:
            self.log.write(kind="resume", step=self.step)
        elif self.is_main:
            ckpt.atomic_write_text(self.out / ckpt.RECIPE_FILE, json.dumps(self.recipe.to_dict(), indent=2) + "\n")
        self.budget_elapsed = self.elapsed
        self.model.train()
        it = iter(self.batches)
        bar = ProgressBar(cfg.max_steps, self.step, enabled=self.progress)
        window_tokens, window_start, stop_reason = 0.0, time.time(), "max_steps"
        with bar:
            while self.step < cfg.max_steps:
                if cfg.max_minutes is not None and self.budget_elapsed >= cfg.max_minutes * 60:
                    stop_reason = "max_minutes"
                    break
                stats = self.train_step(self._micro_batches(it))
                window_tokens += stats["tokens"]
                if self.step % cfg.log_every == 0 or self.step == 1:
                    dt = max(time.time() - window_start, 1e-9)
                    stats["tokens_per_s"] = window_tokens / dt
                    window_tokens, window_start = 0.0, time.time()
                    self.log.write(kind="train", step=self.step,
                                   elapsed=round(self.elapsed + time.time() - self._t0, 2), **stats)
                    bar.update(self.step, stats, self._eta())
                evaluated = False
                if cfg.eval_every and self.step % cfg.eval_every == 0:
                    metrics = self.evaluate(full=bool(cfg.bleu_every) and self.step % cfg.bleu_every == 0)
                    evaluated = True
                    bar.note(self.step, metrics)
                if cfg.save_every and self.step % cfg.save_every == 0:
                    self._save_and_mark(evaluated)
                if cfg.patience is not None and self.bad_evals >= cfg.patience:
                    stop_reason = "early_stop"
                    break
        if not self.saved_checkpoints() or self.saved_checkpoints()[-1].name != ckpt.step_name(self.step):
            self._save_and_mark(False)
        final = self.finish(stop_reason)
        return final

    def _save_and_mark(self, evaluated: bool) -> None:
        self.save(best=evaluated and self.best is not None and self.bad_evals == 0)

    def _eta(self) -> float | None:
        done = self.step
        spent = self.elapsed + time.time() - self._t0
        if done == 0:
            return None
        by_steps = spent / done * (self.cfg.max_steps - done)
        if self.cfg.max_minutes is not None:
            return min(by_steps, self.cfg.max_minutes * 60 - spent)
        return by_steps

    def finish(self, stop_reason: str) -> Path:
        """Write OUT/model: the average of the last N checkpoints (N = average_last), else the best (or last)."""
        final = self.out / ckpt.FINAL_DIR
        if self.is_main:
            saved = self.saved_checkpoints()
            if self.cfg.average_last > 1 and len(saved) > 1:
                chosen = saved[-self.cfg.average_last:]
                self.model.load_state_dict(ckpt.average_checkpoints(chosen), strict=False)
                source = {"averaged": [p.name for p in chosen]}
            else:
                best = self._best_name()
                source_dir = self.checkpoints / best if best and (self.checkpoints / best).exists() else saved[-1]
                ckpt.load_weights(source_dir, self.model, self.device)
                source = {"checkpoint": source_dir.name}
            metrics = self.evaluate(full=True)
            summary = {"steps": self.step, "stop_reason": stop_reason, "source": source,
                       "train_seconds": round(self.elapsed + time.time() - self._t0, 1),
                       "final_metrics": metrics}
            config = {**self.task.model_config(), "training": summary}
            # A task may keep only part of what it trained (ELECTRA: the discriminator, not the generator).
            kept = self.task.final_model() if hasattr(self.task, "final_model") else self.model
            with self._saying_what_is_intact():
                ckpt.save_checkpoint(final, kept, config, self.task.write_tokenizers)
            self.log.write(kind="final", **summary)
        self._barrier()
        return final
