"""Training tasks: each turns a recipe into a model, batches, a loss and an evaluation for the Trainer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rosetta.recipe import Recipe


def build_task(recipe: Recipe, data_dir: Path | None = None, run_dir: Path | None = None, resume: bool = False):
    """The task object for ``recipe.data.task``."""
    kind = recipe.data.task
    if kind == "translation":
        from rosetta.tasks.translation import TranslationTask

        return TranslationTask(recipe, data_dir, run_dir, resume)
    raise ValueError(f"unknown task {kind!r}; rosetta train handles: translation")


def load_eval_pairs(corpus: str, split: str, info: dict[str, Any], data_dir: Path | None) -> list[tuple[str, str]]:
    """Evaluation pairs of a known corpus in the model's direction (its src_lang → tgt_lang)."""
    from rosetta.data import corpora

    # The same seed and clean-up as training, so a seeded split (Tatoeba) gives the same held-out pairs.
    return corpora.load_parallel(corpus, split, data_dir, src_lang=info.get("src_lang"), tgt_lang=info.get("tgt_lang"),
                                 seed=info.get("data_seed", 1), clean=info.get("clean"))
