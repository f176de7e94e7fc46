"""``rosetta export``: a trained translation model → a directory another inference engine runs.

    OUT/config.json        the model's config.json, plus "format" (onnx | ctranslate2), "exported_from" (the
                           model directory), "quantization" (None, or e.g. "int8"), "opset" (ONNX)
    OUT/tokenizer*.json    the model's tokenizer(s), unchanged
    OUT/encoder.onnx …     (onnx) the three graphs of ``rosetta.compress.onnx_export``
    OUT/ctranslate2/       (ctranslate2) CTranslate2's model directory (``rosetta.compress.ct2_export``)
    OUT/manifest.json      size and sha256 of every file, as for any checkpoint

The directory is written next to OUT and renamed into place when complete. ``rosetta.load(OUT)`` returns a
``Translator`` over the engine (``rosetta.decode.engines``), so ``translate``, ``evaluate`` and ``serve`` work
on it unchanged.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from rosetta import checkpoint as ckpt
from rosetta.data.tokenizer import save_tokenizers
from rosetta.decode.engines import CT2_DIR, FORMATS
from rosetta.decode.folder import build, model_config, open_folder, read_huggingface, read_tokenizers
from rosetta.models.pretrained import is_huggingface_dir
from rosetta.models.transformer import Transformer


def load_source(model_dir: str | Path) -> tuple[Path, dict, Transformer]:
    """(model directory, its config.json, the ``Transformer`` in eval mode) of a trained translation model, or of
    a Hugging Face translation directory (Marian, BART, T5: config.json made from the checkpoint's, as for a run
    fine-tuned from it: its "huggingface" record and its generation options)."""
    if is_huggingface_dir(model_dir):
        return huggingface_source(model_dir)
    path, info = open_folder(model_dir)  # a broken folder: CheckpointError, one line naming the file
    family = ckpt.model_family(info)
    if family != "translation":
        raise ValueError(f"{path} holds a {family!r} model; export takes encoder–decoder (translation, "
                         "summarisation) models")
    if info.get("format", "pytorch") != "pytorch":
        raise ValueError(f"{path} is already a {info['format']} export; export the model it came from "
                         f"({info.get('exported_from')})")
    config = model_config(path, info)
    model = build(path, lambda: Transformer(config))
    ckpt.load_weights(path, model, "cpu")
    return path, info, model.eval()


def huggingface_source(model_dir: str | Path) -> tuple[Path, dict, Transformer]:
    """``load_source`` of a Hugging Face directory (``rosetta.hub``): its module, and the config.json a run
    fine-tuned from it would have."""
    from rosetta.hub.runs import Start

    loaded = read_huggingface(model_dir)
    if loaded.family != "translation":
        raise ValueError(f"{model_dir} holds a {loaded.info['model_type']} model (Rosetta family {loaded.family!r}); "
                         "export --format onnx / ctranslate2 takes encoder–decoder models (Marian, BART, T5)")
    path = Path(loaded.info["path"])
    start = Start(loaded.model, loaded.tokenizer, loaded.target_tokenizer, loaded.hf_config, path)
    info = {"family": "translation", "model": loaded.model.config.to_dict(), **start.entry,
            "decode": start.generation}
    return path, info, loaded.model.eval()


def write_tokenizers(directory: Path, path: Path, info: dict, src_tok, tgt_tok) -> None:
    """The model's tokenizer files into the export: a Hugging Face checkpoint's own files (copied: the export
    reads text as the checkpoint does), or Rosetta's."""
    from rosetta.hub.runs import copy_tokenizer_files, recorded

    if recorded(info):
        copy_tokenizer_files(path, directory)
    else:
        save_tokenizers(directory, src_tok, tgt_tok)


def export_model(model_dir: str | Path, out: str | Path, fmt: str, quantization: str | None = None) -> Path:
    """Export the model in ``model_dir`` (a model, checkpoint or run directory) as ``fmt`` into ``out``.

    quantization: "int8" for ONNX (dynamic quantisation); any CTranslate2 weight type for ctranslate2."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if fmt == "onnx" and quantization not in (None, "int8"):
        raise ValueError(f"ONNX export quantises to int8 only (--int8), not {quantization!r}")
    out = Path(out)
    _check_target(out)
    path, info, model = load_source(model_dir)
    src_tok, tgt_tok = read_tokenizers(path, info)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        extra = {}
        if fmt == "onnx":
            from rosetta.compress.onnx_export import OPSET, export_onnx

            export_onnx(model, tmp, int8=quantization == "int8")
            extra["opset"] = OPSET
        else:
            from rosetta.compress.ct2_export import export_ctranslate2

            export_ctranslate2(model, src_tok, tgt_tok, tmp / CT2_DIR, quantization)
        write_tokenizers(tmp, path, info, src_tok, tgt_tok)
        exported = {**info, "format": fmt, "exported_from": str(path.resolve()), "quantization": quantization,
                    **extra}
        (tmp / ckpt.CONFIG_FILE).write_text(json.dumps(exported, indent=2, sort_keys=True, ensure_ascii=False)
                                            + "\n", encoding="utf-8")
        ckpt.write_manifest(tmp)
        if out.exists():  # checked by _check_target: empty, or an earlier export
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _check_target(out: Path) -> None:
    """``out`` may be new, an empty folder, or an earlier export (replaced when the new one is complete).
    Anything else (a training run, other files) is refused rather than deleted."""
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return
    try:
        earlier = ckpt.read_config(out).get("format") in FORMATS
    except (ckpt.CheckpointError, OSError):
        earlier = False
    if not earlier:
        raise ValueError(f"{out} exists and is not an earlier export; choose a new --out directory")


def directory_size(path: str | Path) -> int:
    """Bytes of every file under ``path`` (what an export or a model costs on disk)."""
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())
