"""Training tasks: each turns a recipe into a model, batches, a loss and an evaluation for the Trainer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rosetta.train.recipe import Recipe


def build_task(recipe: Recipe, data_dir: Path | None = None, run_dir: Path | None = None, resume: bool = False):
    """The task object for ``recipe.data.task``: translation, text-to-text, lm, classification,
    image-classification, mlm, electra, qa or summarisation."""
    kind = recipe.data.task
    if kind == "translation":
        from rosetta.tasks.translation import TranslationTask

        return TranslationTask(recipe, data_dir, run_dir, resume)
    if kind == "text-to-text":
        from rosetta.tasks.text_to_text import TextToTextTask

        return TextToTextTask(recipe, data_dir, run_dir, resume)
    if kind == "lm":
        from rosetta.tasks.language_model import LanguageModelTask

        return LanguageModelTask(recipe, data_dir, run_dir, resume)
    if kind == "classification":
        from rosetta.tasks.classification import ClassificationTask

        return ClassificationTask(recipe, data_dir, run_dir, resume)
    if kind == "qa":
        from rosetta.tasks.qa import QATask

        return QATask(recipe, data_dir, run_dir, resume)
    if kind == "image-classification":
        from rosetta.tasks.image_classification import ImageClassificationTask

        return ImageClassificationTask(recipe, data_dir, run_dir, resume)
    if kind == "mlm":
        from rosetta.tasks.mlm import MLMTask

        return MLMTask(recipe, data_dir, run_dir, resume)
    if kind == "electra":
        from rosetta.tasks.electra import ElectraTask

        return ElectraTask(recipe, data_dir, run_dir, resume)
    if kind == "summarisation":
        from rosetta.tasks.summarise import SummarisationTask

        return SummarisationTask(recipe, data_dir, run_dir, resume)
    raise ValueError(f"unknown task {kind!r}; rosetta train handles: translation, text-to-text, lm, classification, "
                     "image-classification, mlm, electra, qa, summarisation")


def preset_sizes(preset: str, depth: str) -> dict[str, Any]:
    """Sizes of a ``ModelConfig`` preset for a model with one stack of layers: d_model, n_heads, d_ff, dropout,
    and the preset's encoder depth under the name ``depth`` (n_decoder_layers for an LM, n_encoder_layers for
    an encoder). Recipe values given in [model] override these."""
    from rosetta.nn.config import PRESETS

    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    sizes = PRESETS[preset]
    return {**{k: sizes[k] for k in ("d_model", "n_heads", "d_ff", "dropout")}, depth: sizes["n_encoder_layers"]}


def load_eval_pairs(corpus: str, split: str, info: dict[str, Any],
                    data_dir: Path | None) -> tuple[list[tuple[str, str]], str | None]:
    """Evaluation pairs of a known corpus in the model's direction (its src_lang → tgt_lang), and the target
    language (for BLEU's tokenizer). A text-to-text model (config.json lists "tasks") reads the corpus in its
    task's direction and gets the task's prefix on every source."""
    from rosetta.data import corpora

    prefix, src_lang, tgt_lang = "", info.get("src_lang"), info.get("tgt_lang")
    if info.get("tasks"):
        from rosetta.tasks.text_to_text import task_for

        entry = task_for(info, corpus)
        prefix, src_lang, tgt_lang = entry["prefix"], entry["src_lang"], entry["tgt_lang"]
    # The same seed and clean-up as training, so a seeded split (Tatoeba) gives the same held-out pairs.
    pairs = corpora.load_parallel(corpus, split, data_dir, src_lang=src_lang, tgt_lang=tgt_lang,
                                  seed=info.get("data_seed", 1), clean=info.get("clean"))
    return [(prefix + s, t) for s, t in pairs], tgt_lang
