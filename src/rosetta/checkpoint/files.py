"""Checkpoint directories, written atomically and read back with clear errors.

A checkpoint is a directory::

    config.json          ModelConfig (+ "family": translation / lm / encoder)
    model.safetensors    weights (tied tensors stored once)
    tokenizer.json       (or tokenizer.src.json + tokenizer.tgt.json for separate vocabularies)
    optimizer.safetensors, trainer_state.json   only in training checkpoints: optimizer moments,
                         schedule, step, RNG states and the data position, for an exact --resume
    manifest.json        size and sha256 of every file, so a truncated or corrupt file is named on load

It is written into a temporary sibling directory and renamed into place in one step, so a run killed at
any moment leaves either the old checkpoint or the new one, never half of one. No pickle anywhere:
tensors go to safetensors, everything else to JSON.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from rosetta.io import sha256_file

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
MANIFEST_FILE = "manifest.json"
OPTIMIZER_FILE = "optimizer.safetensors"
TRAINER_STATE_FILE = "trainer_state.json"


class CheckpointError(RuntimeError):
    """A checkpoint directory is missing, incomplete or corrupt; the message names the file."""


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write a small text file so that readers see the old or the new content, never a mix."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _stored_names(model: torch.nn.Module) -> list[str]:
    """State-dict names, skipping aliases of a tensor already listed (tied embeddings)."""
    seen: set[int] = set()
    names = []
    for name, tensor in model.state_dict().items():
        if tensor.numel() and tensor.data_ptr() in seen:
            continue
        seen.add(tensor.data_ptr())
        names.append(name)
    return names


def state_dict_for_saving(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Weights with shared (tied) tensors kept once: safetensors refuses aliased storage."""
    state = model.state_dict()
    return {name: state[name].detach().contiguous().cpu() for name in _stored_names(model)}


def optimizer_to_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer state dict into flat tensors (for safetensors) and JSON-able rest."""
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, per_param in state["state"].items():
        for name, value in per_param.items():
            if torch.is_tensor(value):
                tensors[f"{index}.{name}"] = value.detach().contiguous().cpu()
            else:
                scalars[f"{index}.{name}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def optimizer_from_tensors(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`optimizer_to_tensors`: an optimizer ``state_dict``."""
    state: dict[int, dict[str, Any]] = {}
    for key, value in list(tensors.items()) + list(meta["scalars"].items()):
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(
    directory: str | Path,
    model: torch.nn.Module,
    config: dict[str, Any],
    write_tokenizers: Callable[[Path], None] | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    trainer_state: dict[str, Any] | None = None,
    extra_tensors: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write a checkpoint directory atomically (temporary sibling, then one rename).

    ``write_tokenizers(dir)`` saves the tokenizer file(s) into the new directory. An existing
    checkpoint of the same name is replaced only after the new one is complete.
    """
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}.", suffix=".tmp"))
    try:
        save_file(state_dict_for_saving(model), tmp / MODEL_FILE)
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        if write_tokenizers is not None:
            write_tokenizers(tmp)
        if optimizer is not None or trainer_state is not None or extra_tensors:
            tensors: dict[str, torch.Tensor] = {}
            state = dict(trainer_state or {})
            if optimizer is not None:
                opt_tensors, state["optimizer"] = optimizer_to_tensors(optimizer)
                tensors.update({f"optimizer.{k}": v for k, v in opt_tensors.items()})
            tensors.update({f"extra.{k}": v.contiguous().cpu() for k, v in (extra_tensors or {}).items()})
            save_file(tensors, tmp / OPTIMIZER_FILE)
            (tmp / TRAINER_STATE_FILE).write_text(json.dumps(state, indent=1) + "\n", encoding="utf-8")
        write_manifest(tmp)
        for p in tmp.iterdir():
            with open(p, "rb") as f:
                os.fsync(f.fileno())
        if directory.exists():
            old = directory.with_name(f".{directory.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.rename(directory, old)
            os.rename(tmp, directory)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, directory)
        _fsync_dir(directory.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def write_manifest(directory: str | Path) -> dict[str, Any]:
    """Write ``manifest.json``: size and sha256 of every file under ``directory`` (subfolders too, by their
    relative path, e.g. an exported model's ``ctranslate2/model.bin``), for ``verify_checkpoint``."""
    directory = Path(directory)
    files = sorted(p for p in directory.rglob("*") if p.is_file() and p.name != MANIFEST_FILE)
    manifest = {p.relative_to(directory).as_posix(): {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
                for p in files}
    (directory / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def verify_checkpoint(directory: str | Path) -> dict[str, Any]:
    """Check every file against the manifest; raise CheckpointError naming the first bad one."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"checkpoint directory {directory} does not exist")
    manifest_path = directory / MANIFEST_FILE
    if not manifest_path.exists():
        raise CheckpointError(f"{manifest_path} is missing: {directory} is not a complete Rosetta checkpoint")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{manifest_path} is corrupt: {e}") from e
    for name, meta in manifest.items():
        path = directory / name
        if not path.exists():
            raise CheckpointError(f"{path} is missing from the checkpoint (listed in {MANIFEST_FILE})")
        if path.stat().st_size != meta["bytes"] or sha256_file(path) != meta["sha256"]:
            raise CheckpointError(
                f"{path} is corrupt: its size or sha256 does not match {MANIFEST_FILE}; "
                "restore it or use another checkpoint"
            )
    return manifest


def read_config(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / CONFIG_FILE
    if not path.exists():
        raise CheckpointError(f"{path} is missing: a checkpoint needs {CONFIG_FILE}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path} is corrupt (not valid JSON: {e})") from e


def load_weights(directory: str | Path, model: torch.nn.Module, device: str | torch.device = "cpu") -> None:
    """Load ``model.safetensors`` into ``model`` (strict: every weight present, no stray names)."""
    path = Path(directory) / MODEL_FILE
    if not path.exists():
        raise CheckpointError(f"{path} is missing: a checkpoint needs {MODEL_FILE}")
    try:
        tensors = load_file(path, device=str(device))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path} is corrupt or not a safetensors file: {e}") from e
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    stored = set(_stored_names(model))  # tied aliases were saved once and come back through the tie
    missing = [m for m in missing if m in stored]
    if missing or unexpected:
        raise CheckpointError(f"{path} does not fit the model in {CONFIG_FILE}: missing {missing}, unexpected "
                              f"{unexpected}")


def load_trainer_state(directory: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(trainer_state JSON with "optimizer" meta, tensors from optimizer.safetensors)."""
    directory = Path(directory)
    state_path, tensor_path = directory / TRAINER_STATE_FILE, directory / OPTIMIZER_FILE
    for path in (state_path, tensor_path):
        if not path.exists():
            raise CheckpointError(f"{path} is missing: {directory} has no trainer state to resume from")
    try:
        state = json.loads(state_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{state_path} is corrupt: {e}") from e
    try:
        tensors = load_file(tensor_path)
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{tensor_path} is corrupt: {e}") from e
    return state, tensors


def average_checkpoints(directories: list[Path]) -> dict[str, torch.Tensor]:
    """Element-wise mean of the weights of several checkpoints (the paper averaged the last 5 or 20)."""
    if not directories:
        raise ValueError("average_checkpoints needs at least one checkpoint")
    total: dict[str, torch.Tensor] = {}
    for d in directories:
        for name, t in load_file(Path(d) / MODEL_FILE).items():
            total[name] = total.get(name, 0) + t.double()
    return {name: (t / len(directories)).float() for name, t in total.items()}
