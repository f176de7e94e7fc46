"""Learning-rate schedules: warm-up, then inverse square root (the paper), cosine, linear or constant decay."""

from __future__ import annotations

import math

from rosetta.train.recipe import TrainSection


def learning_rate(step: int, cfg: TrainSection, time_fraction: float | None = None) -> float:
    """Learning rate at optimizer step ``step`` (1-based).

    inverse_sqrt: lr · min(step / warmup, √(warmup / step)) — the paper's
    d_model^-0.5 · min(step^-0.5, step · warmup^-1.5) with its peak written as ``lr``.
    cosine / linear: linear warm-up, then decay to ``min_lr`` at the end of the budget. constant: warm-up,
    then flat. The budget is ``max_steps`` or, when ``time_fraction`` (share of ``max_minutes`` spent) is
    given, whichever runs out first: a wall-clock recipe anneals to ``min_lr`` exactly when its time is up,
    which is what a fixed compute budget wants (Li et al., 2020, "Budgeted Training").
    """
    step = max(step, 1)
    warm = step / cfg.warmup_steps if cfg.warmup_steps else 1.0
    if cfg.schedule == "inverse_sqrt":
        return cfg.lr * min(warm, math.sqrt(cfg.warmup_steps / step) if cfg.warmup_steps else 1.0)
    if step < cfg.warmup_steps:
        return cfg.lr * warm
    if cfg.schedule == "constant":
        return cfg.lr
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps))
    if time_fraction is not None:
        progress = max(progress, min(1.0, time_fraction))
    if cfg.schedule == "cosine":
        return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * progress))
    if cfg.schedule == "linear":
        return cfg.min_lr + (cfg.lr - cfg.min_lr) * (1 - progress)
    raise ValueError(f"unknown schedule {cfg.schedule!r}: use inverse_sqrt, cosine, linear or constant")
