"""Read a Hugging Face directory into Rosetta's modules through the family registry.

    config.json                    → model_type → its ``HFFamily`` (registry.py) → ModelConfig
    model.safetensors              → tensors (or model.safetensors.index.json and its shards)
    tokenizer files                → the family's tokenizer(s)

Only safetensors are read: ``pytorch_model.bin`` is a pickle, which can run code when loaded; a directory that
has only that is refused with the command that converts it (``rosetta.checkpoint.files.refuse_pickle``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rosetta.checkpoint.files import refuse_pickle
from rosetta.hub.generation import tasks_from_params
from rosetta.hub.registry import hf_family
from rosetta.models.pretrained import CONFIG_FILE, WEIGHTS_FILE, PretrainedError, resolve_pretrained

INDEX_FILE = "model.safetensors.index.json"



@dataclass
class HFModel:
    """A Hugging Face checkpoint as Rosetta objects: the module (eval mode), its tokenizer(s), the config.json."""

    family: str
    model: nn.Module
    tokenizer: Any
    target_tokenizer: Any
    hf_config: dict[str, Any]
    info: dict[str, Any] = field(default_factory=dict)


def read_hf_config(path: Path) -> dict[str, Any]:
    file = path / CONFIG_FILE
    if not file.is_file():
        raise PretrainedError(f"{file} not found: a Hugging Face directory holds config.json, model.safetensors "
                              "and its tokenizer files")
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise PretrainedError(f"{file} is not valid JSON ({e}); copy the directory again") from e


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """All tensors of the directory: model.safetensors, or the shards model.safetensors.index.json names."""
    from safetensors.torch import load_file

    if (path / WEIGHTS_FILE).is_file():
        files = [path / WEIGHTS_FILE]
    elif (path / INDEX_FILE).is_file():
        index = json.loads((path / INDEX_FILE).read_text(encoding="utf-8"))
        files = [path / name for name in sorted(set(index["weight_map"].values()))]
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise PretrainedError(f"{INDEX_FILE} names shards that are missing: {', '.join(missing)}")
    else:
        refuse_pickle(path)  # pickle-only weights: refused with the one-liner that converts them
        raise PretrainedError(f"{path / WEIGHTS_FILE} not found (nor {INDEX_FILE})")
    tensors: dict[str, torch.Tensor] = {}
    for file in files:
        try:
            tensors.update(load_file(file))
        except Exception as e:  # safetensors raises its own error types for a truncated or damaged file
            raise PretrainedError(f"{file} cannot be read ({str(e).splitlines()[0] if str(e) else type(e).__name__}); "
                                  "it is truncated or damaged: download it again") from e
    return tensors


def load_state(model: nn.Module, state: dict[str, torch.Tensor], source: Path) -> None:
    """``model.load_state_dict(state, strict=True)`` after a shape check whose error names the tensors."""
    expected = model.state_dict()
    wrong = [f"{k}: {tuple(v.shape)} ≠ {tuple(expected[k].shape)}" for k, v in state.items()
             if k in expected and v.shape != expected[k].shape]
    if wrong:
        raise PretrainedError(f"weight shapes do not match {source / CONFIG_FILE}: {'; '.join(wrong[:4])}")
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise PretrainedError(f"{source}: weights missing {missing[:6]}, unexpected {unexpected[:6]}")
    model.load_state_dict(state, strict=True)


def read_hf(directory: str | Path, dtype: torch.dtype = torch.float32) -> HFModel:
    """A Hugging Face directory (or the name all-MiniLM-L6-v2) → ``HFModel``. Every problem is a
    ``PretrainedError`` of one line naming the file and what to do."""
    path = resolve_pretrained(directory)
    hf = read_hf_config(path)
    spec = hf_family(hf.get("model_type"))
    config = spec.config_from_hf(hf)
    tensors = read_tensors(path)
    model = spec.build(config, hf, set(tensors))
    load_state(model, spec.weights_from_hf(tensors, config), path)
    tokenizer, target_tokenizer = spec.tokenizers(path, hf)
    info = {"source": "huggingface", "model_type": spec.model_type, "path": str(path)}
    tasks = tasks_from_params(hf)  # translation prefixes (t5-small's, a text-to-text run's export)
    return HFModel(spec.family, model.to(dtype).eval(), tokenizer, target_tokenizer, hf,
                   {**info, "tasks": tasks} if tasks else info)
