"""A Hugging Face checkpoint as the start of a Rosetta run (``[model] pretrained = "DIR"``), and read back after it.

    read_hf(DIR)            → the family's module (fp32, train mode), its tokenizer(s), config.json (``Start``)
    the task trains it      as it trains its own models (same loss, batches, checkpoints, resume)
    OUT/model/config.json   Rosetta's config (family, "model": the ModelConfig of the flags the family set) plus
                            "huggingface": {"model_type", "config"}: what the tokenizer files are and how to read them
    OUT/model/…             model.safetensors (Rosetta's names) and the checkpoint's tokenizer files, copied byte
                            for byte (``TOKENIZER_FILES``): the fine-tuned model reads text exactly as the original

``read_tokenizers(path, record)`` reads them back with the family's own reader (``HFFamily.tokenizers``), so a run,
a checkpoint and an ONNX / CTranslate2 export of it all tokenise as the checkpoint did.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from torch import nn

from rosetta.hub.reader import read_hf
from rosetta.hub.registry import hf_family

RECORD_KEY = "huggingface"  # config.json's key holding {"model_type", "config"}
# The files a checkpoint's tokenizer (or image processor) may need; whichever exist are copied into the run.
TOKENIZER_FILES = ("source.spm", "target.spm", "vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json",
                   "special_tokens_map.json", "added_tokens.json", "spiece.model", "vocab.txt",
                   "preprocessor_config.json", "generation_config.json",
                   "target/tokenizer.json", "target/tokenizer_config.json")  # target/: a Rosetta export's target side


@dataclass
class Start:
    """A Hugging Face checkpoint ready to fine-tune: its module, tokenizer(s) and where they came from."""

    model: nn.Module
    tokenizer: Any
    target_tokenizer: Any
    hf_config: dict[str, Any]
    path: Path

    @property
    def record(self) -> dict[str, Any]:
        """What config.json keeps under ``RECORD_KEY``: enough to read the copied tokenizer files again."""
        return {"model_type": self.hf_config["model_type"], "config": self.hf_config, "from": str(self.path)}

    @property
    def entry(self) -> dict[str, Any]:
        """The config.json entry of a model made from this checkpoint: ``{RECORD_KEY: record}``."""
        return {RECORD_KEY: self.record}

    @cached_property
    def generation(self) -> dict[str, Any]:
        """The checkpoint's decoding options (generation_config.json in Hugging Face's conventions:
        ``rosetta.hub.generation.generation_options``), read once."""
        from rosetta.hub.generation import generation_options

        return generation_options(self.path, self.hf_config)

    def decode_options(self, chosen: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
        """The saved model's decoding options: the checkpoint's (``generation``), except where the recipe's
        [decode] ``chosen`` differs from Rosetta's ``defaults`` (a value the recipe set)."""
        changed = {k: v for k, v in chosen.items() if defaults.get(k) != v}
        return {**self.generation, **changed}

    def write_tokenizers(self, directory: str | Path) -> None:
        """Copy the checkpoint's tokenizer files into ``directory`` (``copy_tokenizer_files``)."""
        copy_tokenizer_files(self.path, directory)


def copy_tokenizer_files(source: str | Path, directory: str | Path) -> None:
    """Copy the ``TOKENIZER_FILES`` that exist in ``source`` into ``directory``, byte for byte."""
    for name in TOKENIZER_FILES:
        if (Path(source) / name).is_file():
            (Path(directory) / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(Path(source) / name, Path(directory) / name)


def start_from(pretrained: str | Path, family: str, task: str, overrides: dict[str, Any] | None = None,
               load_weights: bool = True) -> Start:
    """The Hugging Face directory ``pretrained`` as a ``Start`` for a task that trains ``family`` models; a
    directory of another family is a ValueError saying which family it holds and what the task needs.

    The checkpoint's architecture, dropout included, is its config.json's: [model] keys that would change it
    (``overrides``) are refused rather than ignored, and so is ``load_weights = false``."""
    if overrides:
        raise ValueError(f"[model] {', '.join(sorted(overrides))}: a Hugging Face start keeps the architecture of "
                         f"{pretrained}/config.json; remove these keys (or edit a copy of that config.json)")
    if not load_weights:
        raise ValueError(f"model.load_weights = false builds an encoder from scratch; a {family} start from "
                         f"{pretrained} fine-tunes its weights: remove load_weights")
    loaded = read_hf(pretrained)
    if loaded.family != family:
        raise ValueError(f"{pretrained} holds a {loaded.info['model_type']} model (Rosetta family {loaded.family!r}); "
                         f"task {task!r} fine-tunes {family!r} models")
    if family == "vit":  # its "tokenizer" is preprocessor_config.json's ImageSpec: what the model reads
        loaded.model.image = loaded.tokenizer
    return Start(loaded.model.float().train(), loaded.tokenizer, loaded.target_tokenizer, loaded.hf_config,
                 Path(loaded.info["path"]))


def recorded(info: dict[str, Any]) -> dict[str, Any] | None:
    """The record (``Start.record``) in a model's config.json ``info``; None for a model not made from one."""
    return info.get(RECORD_KEY)


def read_tokenizers(path: str | Path, record: dict[str, Any]) -> tuple[Any, Any]:
    """(tokenizer, target tokenizer or None) of a folder whose config.json carries ``record`` (``Start.record``):
    the copied files read by the family's own reader."""
    if not isinstance(record, dict) or not isinstance(record.get("config"), dict):
        raise ValueError(f'"{RECORD_KEY}" must be an object with the checkpoint\'s "model_type" and "config"')
    return hf_family(record.get("model_type")).tokenizers(Path(path), record["config"])
