"""Training: the loop every task shares (``trainer``), its losses, schedules, precision and recipes.

    recipe (TOML) ─ tasks.build_task ─ Trainer.fit ─ OUT/checkpoints/…, OUT/model
"""

from rosetta.train.losses import label_smoothed_nll, linear_label_smoothed_nll
from rosetta.train.precision import autocast_for, cpu_has_native_bf16, resolve_device, use_bf16
from rosetta.train.recipe import Recipe, TrainSection, load_recipe
from rosetta.train.schedule import learning_rate
from rosetta.train.trainer import Batches, MetricsLog, Task, Trainer, distributed_env

__all__ = [
    "Batches", "MetricsLog", "Recipe", "Task", "TrainSection", "Trainer", "autocast_for", "cpu_has_native_bf16",
    "distributed_env", "label_smoothed_nll", "learning_rate", "linear_label_smoothed_nll", "load_recipe",
    "resolve_device", "use_bf16",
]
