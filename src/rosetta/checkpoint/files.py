"""Checkpoint directories, written atomically and read back with clear errors.

A checkpoint is a directory::

    config.json          ModelConfig (+ "family": translation / lm / encoder)
    model.safetensors    weights (tied tensors stored once)
    tokenizer.json       (or tokenizer.src.json + tokenizer.tgt.json for separate vocabularies)
    optimizer.safetensors, trainer_state.json   only in training checkpoints: optimizer moments,
                         schedule, step, RNG states and the data position, for an exact --resume
    manifest.json        size and sha256 of every file, so a truncated or corrupt file is named on load

It is written into a temporary sibling directory and renamed into place in one step, so a run killed at
any moment leaves either the old checkpoint or the new one, never half of one (``remove_leftovers`` tidies
what such a kill leaves beside it). A write that fails (a full disk) removes its half-written copy and raises
``CheckpointWriteError``, saying why in one line. No pickle anywhere: tensors go to safetensors, everything else
to JSON.
"""

from __future__ import annotations

import errno
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
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")  # weights Rosetta refuses to unpickle


class CheckpointError(RuntimeError):
    """A checkpoint or model folder is missing, incomplete, corrupt or inconsistent (pickle weights only, a config
    that does not fit the weights, no tokenizer): every loader raises it, with one line naming the file and the fix."""


class CheckpointWriteError(CheckpointError):
    """Writing a checkpoint (or a file beside it) failed, e.g. on a full disk; the half-written copy was removed.
    ``errno`` is the operating system's reason (``errno.ENOSPC`` for a full disk)."""

    def __init__(self, message: str, errno_: int | None = None):
        super().__init__(message)
        self.errno = errno_


def write_error(what: str, error: OSError) -> CheckpointWriteError:
    """``CheckpointWriteError("no space left on device while <what>")`` for an OSError raised while doing ``what``."""
    reason = "no space left on device" if error.errno == errno.ENOSPC else (error.strerror or str(error)).lower()
    return CheckpointWriteError(f"{reason} while {what}", error.errno)


_TMP, _OLD = ".tmp", ".old"  # suffixes: an atomic write's temporary sibling, a checkpoint being replaced


def remove_leftovers(parent: str | Path) -> list[str]:
    """Tidy what writes killed part-way (``kill -9``, a power cut) left in ``parent``; return the names removed.

    Temporary copies (``.NAME.*.tmp``) are deleted. A checkpoint that ``save_checkpoint`` was replacing, parked
    as ``.NAME.old``, is renamed back when the kill came between its two renames (no ``NAME``), else deleted.
    Run it only while nothing else writes there (at ``--resume``)."""
    parent, removed = Path(parent), []
    for path in sorted(parent.iterdir()) if parent.is_dir() else []:
        hidden, original = path.name.startswith("."), parent / path.name[1 : -len(_OLD)]
        if hidden and path.name.endswith(_OLD) and not original.exists():
            os.rename(path, original)
        elif hidden and path.name.endswith((_TMP, _OLD)):
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
            removed.append(path.name)
    return removed


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
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=_TMP)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:  # a full disk, an interrupt: no temporary file left behind
        Path(tmp).unlink(missing_ok=True)
        raise


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
    checkpoint of the same name is replaced only after the new one is complete. An OSError (a full disk)
    removes the temporary copy and becomes a ``CheckpointWriteError`` naming the checkpoint.
    """
    directory = Path(directory)
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}.", suffix=_TMP))
    except OSError as e:
        raise write_error(f"writing checkpoint {directory.name} in {directory.parent}", e) from e
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
        for p in sorted(tmp.rglob("*")):  # subfolders too (a Hugging Face start's target/tokenizer.json)
            if p.is_dir():
                _fsync_dir(p)
                continue
            with open(p, "rb") as f:
                os.fsync(f.fileno())
        if directory.exists():
            old = directory.with_name(f".{directory.name}{_OLD}")
            shutil.rmtree(old, ignore_errors=True)
            os.rename(directory, old)
            os.rename(tmp, directory)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, directory)
        _fsync_dir(directory.parent)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise write_error(f"writing checkpoint {directory.name} in {directory.parent}", e) from e
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


def pickle_weights(directory: str | Path) -> list[Path]:
    """Weight files in a pickle format (PyTorch's .bin / .pt / .pth, Lightning's .ckpt, .pkl) right in ``directory``."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in PICKLE_SUFFIXES)


def refuse_pickle(directory: str | Path) -> None:
    """Refuse a folder whose weights exist only as a pickle (no model.safetensors), saying how to convert them.

    Unpickling can run any code the file's author chose, so Rosetta never does it; ``torch.load(weights_only=True)``
    reads tensors without running code, and the one-liner in the message uses it to write safetensors."""
    directory = Path(directory)
    pickles = pickle_weights(directory)
    if not pickles or (directory / MODEL_FILE).exists():
        return
    source, target = pickles[0], directory / MODEL_FILE
    convert = ('python -c "import torch; from safetensors.torch import save_file; save_file({k: v.clone() for k, v in '
               f"torch.load({str(source)!r}, weights_only=True).items()}}, {str(target)!r})\"")
    raise CheckpointError(f"{source} is a pickle and {directory} has no {MODEL_FILE}: Rosetta never unpickles weights "
                          f"(a pickle can run code when loaded); if you trust the file, convert it: {convert}")


def _rewrite_manifest_hint(directory: Path) -> str:
    return (f'write a new manifest: python -c "from rosetta.checkpoint import write_manifest; '
            f'write_manifest({str(directory)!r})"')


def _read_manifest(directory: Path) -> dict[str, Any]:
    """manifest.json, checked to be {relative path: {"bytes": int, "sha256": str}}."""
    path = directory / MANIFEST_FILE
    if not path.exists():
        raise CheckpointError(f"{path} is missing: {directory} is not a complete Rosetta checkpoint (a copy cut short, "
                              "or a folder Rosetta did not write); copy the whole folder again, or, if its files are "
                              f"known to be good, {_rewrite_manifest_hint(directory)}")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path} is corrupt (not valid JSON: {e}); copy the whole folder again") from e
    entries = manifest.items() if isinstance(manifest, dict) else [(None, None)]
    for name, meta in entries:
        inside = isinstance(name, str) and not Path(name).is_absolute() and ".." not in Path(name).parts
        if not (inside and isinstance(meta, dict) and isinstance(meta.get("bytes"), int)
                and isinstance(meta.get("sha256"), str)):
            raise CheckpointError(f"{path} is corrupt (entry {name!r} is not a file of the folder with its "
                                  '"bytes" and "sha256"); copy the whole folder again')
    return manifest


def _check_listed_file(directory: Path, name: str, meta: dict[str, Any]) -> None:
    """One manifest entry: the file exists, has the recorded size (shorter: the copy was cut short) and sha256."""
    path = directory / name
    if not path.is_file():
        raise CheckpointError(f"{path} is missing ({MANIFEST_FILE} lists it): the folder is incomplete; copy the "
                              "whole folder again")
    size, expected = path.stat().st_size, meta["bytes"]
    if size < expected:
        raise CheckpointError(f"{path} is truncated ({size:,} of {expected:,} bytes per {MANIFEST_FILE}): the copy "
                              "was cut short; copy it again, or retrain")
    if size != expected or sha256_file(path) != meta["sha256"]:
        what = f"{size:,} bytes, {MANIFEST_FILE} says {expected:,}" if size != expected else \
            f"its sha256 differs from the one in {MANIFEST_FILE}"
        edited = f", or, if you edited it on purpose, {_rewrite_manifest_hint(directory)}" if path.suffix == ".json" \
            else ""
        raise CheckpointError(f"{path} is corrupt ({what}): damaged on disk or in a copy; copy it again from the "
                              f"original{edited}")


def verify_checkpoint(directory: str | Path) -> dict[str, Any]:
    """Check every file against the manifest; raise CheckpointError naming the first bad one and what to do.

    A folder with pickle weights only is refused first (``refuse_pickle``); then each file listed must exist
    with the recorded size and sha256. Files not listed are left alone (a README added to the folder)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"checkpoint directory {directory} does not exist")
    refuse_pickle(directory)
    manifest = _read_manifest(directory)
    for name, meta in manifest.items():
        _check_listed_file(directory, name, meta)
    return manifest


def read_config(directory: str | Path) -> dict[str, Any]:
    """config.json as a dict; CheckpointError naming the file when it is missing, not JSON, or not a JSON object.
    Its keys are the loaders' to check (``rosetta.decode.folder``): it also records the run (corpus, seeds, …)."""
    path = Path(directory) / CONFIG_FILE
    if not path.exists():
        raise CheckpointError(f"{path} is missing: a checkpoint needs {CONFIG_FILE}; copy the whole folder again")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path} is corrupt (not valid JSON: {e}); copy it again from the original") from e
    if not isinstance(config, dict):
        raise CheckpointError(f"{path} is corrupt (a JSON {type(config).__name__}, not an object of settings); copy it "
                              "again from the original")
    return config


def _check_fit(path: Path, model: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    """Every weight ``model`` stores is in ``tensors`` with the shape the model (its config) gives, and no other."""
    expected = model.state_dict()
    wrong = [n for n, t in tensors.items() if n in expected and t.shape != expected[n].shape]
    if wrong:
        name, more = wrong[0], f" (and {len(wrong) - 1} more tensors)" if len(wrong) > 1 else ""
        raise CheckpointError(f"{path}: tensor {name} is {list(tensors[name].shape)} in the file, but {CONFIG_FILE} "
                              f"implies {list(expected[name].shape)}{more}: the config and the weights are of "
                              f"different models; restore the {CONFIG_FILE} saved with these weights")
    missing = [n for n in _stored_names(model) if n not in tensors]  # tied aliases were saved once
    unexpected = [n for n in tensors if n not in expected]
    if missing or unexpected:
        listed = [f"{len(names)} tensors {what} ({', '.join(names[:3])}{', …' if len(names) > 3 else ''})"
                  for names, what in ((missing, f"missing that the model in {CONFIG_FILE} has"),
                                      (unexpected, "that model does not have")) if names]
        raise CheckpointError(f"{path} does not fit the model in {CONFIG_FILE}: {'; '.join(listed)}; the config and "
                              f"the weights are of different models: restore the pair saved together")


def load_weights(directory: str | Path, model: torch.nn.Module, device: str | torch.device = "cpu") -> None:
    """Load ``model.safetensors`` into ``model``, all or nothing: every name and shape is checked before any
    tensor is copied (strict: every weight present, no stray names), so after an error ``model`` is unchanged."""
    path = Path(directory) / MODEL_FILE
    if not path.exists():
        refuse_pickle(directory)
        raise CheckpointError(f"{path} is missing: a model folder needs its weights; copy the whole folder again")
    try:
        tensors = load_file(path, device=str(device))
    except (SafetensorError, OSError, ValueError) as e:
        reason = " ".join(str(e).split())
        raise CheckpointError(f"{path} is not a readable safetensors file ({reason}): truncated or damaged; copy it "
                              "again from the original, or retrain") from e
    _check_fit(path, model, tensors)
    model.load_state_dict(tensors, strict=False)


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
