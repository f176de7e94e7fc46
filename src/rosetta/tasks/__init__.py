"""Training tasks: each turns a recipe into a model, batches, a loss and an evaluation for the Trainer."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from rosetta.train.recipe import Recipe

# The recipe's [data] task → the class that trains it ("module:Class"), imported only when a recipe asks for it:
# each task pulls in its own data code. The one list of trainable tasks (rosetta train's error lists it too).
TASK_CLASSES = {
    "translation": "rosetta.tasks.translation:TranslationTask",
    "text-to-text": "rosetta.tasks.text_to_text:TextToTextTask",
    "lm": "rosetta.tasks.language_model:LanguageModelTask",
    "classification": "rosetta.tasks.classification:ClassificationTask",
    "image-classification": "rosetta.tasks.image_classification:ImageClassificationTask",
    "mlm": "rosetta.tasks.mlm:MLMTask",
    "electra": "rosetta.tasks.electra:ElectraTask",
    "qa": "rosetta.tasks.qa:QATask",
    "summarisation": "rosetta.tasks.summarise:SummarisationTask",
}


def task_class(kind: str) -> type:
    """The class of the task ``kind`` (a key of ``TASK_CLASSES``); ValueError listing the known ones."""
    if kind not in TASK_CLASSES:
        raise ValueError(f"unknown task {kind!r}; rosetta train handles: {', '.join(TASK_CLASSES)}")
    module, name = TASK_CLASSES[kind].split(":")
    return getattr(importlib.import_module(module), name)


def build_task(recipe: Recipe, data_dir: Path | None = None, run_dir: Path | None = None, resume: bool = False):
    """The task object for ``recipe.data.task`` (see ``TASK_CLASSES``)."""
    return task_class(recipe.data.task)(recipe, data_dir, run_dir, resume)


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
