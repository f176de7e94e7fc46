"""Opening a saved model folder: every check that turns a broken folder into one line naming the file and the fix.

The loaders (``rosetta.load``, ``load_any``, ``load_exported``) read a folder in this order and return a model only
when every step passed, so a broken folder never gives a half-loaded model:

    open_folder         the folder exists; no pickle-only weights; a run folder → its model; every file checked
                        against manifest.json (missing, truncated, corrupt); config.json an object whose keys have
                        the types the loaders read (``CONFIG_KEYS``), a known family and task
    model_config        config.json's "model" → ModelConfig (strict: unknown keys and wrong types are named)
    build               the model it describes, fresh
    read_tokenizer(s)   the tokenizer file(s) of a text model
    ckpt.load_weights   model.safetensors into that fresh model: names and shapes checked before any copy

Each raises ``CheckpointError`` (``rosetta.checkpoint``) with one line: the CLI prints it as ``error: …``, the
server refuses to start with it, the Python API raises it.

Unknown keys at the top of config.json are tolerated on purpose: the file is also the run's record (corpus,
data_seed, clean, pruning, …) and tasks add such keys over time. The architecture ("model") and the image spec
("image") are strict: a misspelt key there would silently build another network.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from rosetta import checkpoint as ckpt
from rosetta.checkpoint import CONFIG_FILE, CheckpointError
from rosetta.data.tokenizer import FILE_NAME, SRC_FILE_NAME, TGT_FILE_NAME, load_tokenizers
from rosetta.decode.defaults import DecodeOptions
from rosetta.models.vit import ImageSpec
from rosetta.nn.config import ModelConfig, check_field_types, check_json_types

T = TypeVar("T")

# The keys of config.json that the loaders, the server and the CLI read, with the JSON types they take.
CONFIG_KEYS: dict[str, Any] = {
    "family": str, "task": str | None, "format": str, "model": dict, "image": dict, "decode": dict | None,
    "num_labels": int, "labels": list | None, "pooler": bool, "mlm_head": bool, "tokenizer": str | None,
    "max_length": int | None, "stride": int, "max_query_length": int, "src_lang": str | None, "tgt_lang": str | None,
    "tasks": list | None, "head_importance": list | dict | None, "exported_from": str | None,
    "huggingface": dict | None,
}
REQUIRED_KEYS = {"vit": ("model", "image", "num_labels")}  # other families need "model" only
FIX_CONFIG = f"fix it, or restore the {CONFIG_FILE} saved with the weights"
TOKENIZER_FILES = f"{FILE_NAME}, or {SRC_FILE_NAME} and {TGT_FILE_NAME}"  # a translation model's vocabularies


def one_line(error: BaseException | str) -> str:
    """An error's message on one line (a library's message may span several)."""
    return " ".join(str(error).split())


def read_huggingface(directory: str | Path):
    """``rosetta.hub.reader.read_hf(directory)`` (an ``HFModel``), with whatever keeps it from loading as a
    ``CheckpointError`` of one line naming the folder, as for Rosetta's folders: pickle-only weights, a missing
    or damaged file, an architecture or weights the family's maps do not take."""
    from rosetta.hub.reader import read_hf  # here: reading the registry imports every family's module
    from rosetta.models.pretrained import PretrainedError

    try:
        return read_hf(directory)
    except CheckpointError:
        raise
    except (FileNotFoundError, PretrainedError) as e:  # their messages name the file and what is wrong
        raise CheckpointError(one_line(e)) from e
    except Exception as e:  # safetensors, json and tokenizers raise their own types for a damaged file
        raise CheckpointError(f"{directory}: cannot read this Hugging Face model ({one_line(e)}); copy the folder "
                              "again") from e


def open_folder(directory: str | Path) -> tuple[Path, dict[str, Any]]:
    """(model folder, its checked config.json) of a model, checkpoint or training run folder; see the module
    docstring for what is checked."""
    ckpt.refuse_pickle(directory)  # before looking for config.json: a folder of model.pt alone has none
    path = ckpt.resolve_model_dir(directory)
    ckpt.verify_checkpoint(path)
    info = ckpt.read_config(path)
    check_config(path, info)
    return path, info


def check_config(path: Path, info: dict[str, Any]) -> str:
    """The family of ``info`` (the config.json in ``path``) once its keys check out: the types of ``CONFIG_KEYS``,
    a known family, the keys that family needs, a task that fits it."""
    where = path / CONFIG_FILE
    try:
        check_json_types(info, CONFIG_KEYS)
    except ValueError as e:
        raise CheckpointError(f'{where}: key {e}; {FIX_CONFIG}') from None
    family = ckpt.model_family(info)
    if family not in ckpt.TASKS:
        raise CheckpointError(f'{where}: unknown "family" {family!r} (known: {", ".join(ckpt.TASKS)}); {FIX_CONFIG}')
    missing = [key for key in REQUIRED_KEYS.get(family, ("model",)) if key not in info]
    if missing:
        raise CheckpointError(f'{where} has no {", ".join(map(repr, missing))} key: a {family} model needs it; '
                              f"restore the {CONFIG_FILE} saved with the weights")
    try:
        ckpt.model_task(info)
    except ValueError as e:
        raise CheckpointError(f"{where}: {one_line(e).removeprefix(f'{CONFIG_FILE}: ')}") from None
    return family


def model_config(path: Path, info: dict[str, Any]) -> ModelConfig:
    """config.json's "model" as a ``ModelConfig``; a wrong type, an unknown key or an inconsistent value is named."""
    try:
        return ModelConfig.from_dict(info["model"])
    except ValueError as e:
        raise CheckpointError(f'{path / CONFIG_FILE}: "model": {one_line(e)}; {FIX_CONFIG}') from None


def image_spec(path: Path, info: dict[str, Any]) -> ImageSpec:
    """config.json's "image" (a ViT's) as an ``ImageSpec``, checked like ``model_config``."""
    try:
        check_field_types(ImageSpec, info["image"])
        return ImageSpec.from_dict(info["image"])
    except ValueError as e:
        raise CheckpointError(f'{path / CONFIG_FILE}: "image": {one_line(e)}; {FIX_CONFIG}') from None


def decode_options(path: Path, info: dict[str, Any]) -> DecodeOptions:
    """config.json's "decode" (a translation model's saved [decode] options); wrong types are named."""
    try:
        check_field_types(DecodeOptions, info.get("decode") or {})
    except ValueError as e:
        raise CheckpointError(f'{path / CONFIG_FILE}: "decode": {one_line(e)}; {FIX_CONFIG}') from None
    return DecodeOptions.from_dict(info.get("decode"))


def build(path: Path, make: Callable[[], T]) -> T:
    """``make()``: a fresh model of the architecture in config.json; values that pass the type checks yet cannot
    build one (a negative number of labels) are named as the config's fault."""
    try:
        return make()
    except (ValueError, TypeError, RuntimeError) as e:
        raise CheckpointError(f"{path / CONFIG_FILE} describes a model that cannot be built ({one_line(e)}); "
                              f"{FIX_CONFIG}") from None


def read_tokenizer(path: Path, read: Callable[[], T], expected: str = FILE_NAME) -> T:
    """``read()``: the tokenizer(s) of the text model in ``path``, whose files are ``expected``; a missing or
    unreadable file is a CheckpointError saying which."""
    try:
        return read()
    except FileNotFoundError:
        raise CheckpointError(f"{path} has no tokenizer: expected {expected}; a text model reads text with the "
                              "tokenizer it was trained with, saved beside its weights: copy the whole folder again"
                              ) from None
    except Exception as e:  # the tokenizers library raises its own exception types for a damaged file
        raise CheckpointError(f"{path}: its tokenizer ({expected}) cannot be read ({one_line(e)}); copy the whole "
                              "folder again") from None


def read_tokenizers(path: Path, info: dict[str, Any] | None = None):
    """(source, target) tokenizers of a translation model, checked by ``read_tokenizer``: Rosetta's own
    (``load_tokenizers``), or, when config.json records the Hugging Face checkpoint it started from, that
    checkpoint's tokenizer files read by its family's reader (``rosetta.hub.runs``)."""
    if info and recorded_start(info):
        source, target = read_text_tokenizer(path, info)
        return source, target if target is not None else source
    return read_tokenizer(path, lambda: load_tokenizers(path), TOKENIZER_FILES)


def recorded_start(info: dict[str, Any]) -> dict[str, Any] | None:
    """The Hugging Face checkpoint a model was fine-tuned from, as its config.json records it (``rosetta.hub.runs``)."""
    from rosetta.hub.runs import recorded  # importing rosetta.hub registers every family

    return recorded(info)


def read_text_tokenizer(path: Path, info: dict[str, Any]):
    """(tokenizer, target tokenizer or None) of a model fine-tuned from a Hugging Face checkpoint: its copied
    tokenizer files (``rosetta.hub.runs.TOKENIZER_FILES``), read as the checkpoint's family reads them."""
    from rosetta.hub.runs import read_tokenizers as read_hf_tokenizers  # importing the registry imports families

    record = recorded_start(info)
    return read_tokenizer(path, lambda: read_hf_tokenizers(path, record),
                          f"the tokenizer files of its {record.get('model_type')} checkpoint")
