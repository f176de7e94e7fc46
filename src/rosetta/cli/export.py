"""``rosetta export``: a translation model for ONNX Runtime or CTranslate2, a ViT, LM or translation model as a
Hugging Face directory; and ``--engine`` for ``serve``."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

import typer

from rosetta.cli.app import app, fail

ENGINES = {"torch": "pytorch", "onnx": "onnx", "ct2": "ctranslate2"}  # --engine → config.json "format"


@app.command("export")
def export(
    model: Path = typer.Option(..., "--model", help="Translation model, checkpoint or run directory."),
    fmt: str = typer.Option(..., "--format", help="onnx (ONNX Runtime), ctranslate2, or huggingface (a ViT as "
                                                  "ViTForImageClassification, an LM as GPT-2, a translation model "
                                                  "as Marian (Post-LN) or Pegasus (Pre-LN; separate vocabularies "
                                                  "concatenated into one), an encoder as BERT / RoBERTa / DistilBERT "
                                                  "with its head)."),
    out: Path = typer.Option(..., "--out", help="New directory for the exported model."),
    int8: bool = typer.Option(False, "--int8", help="int8 weights (ONNX: dynamic quantisation; CTranslate2: int8)."),
    quantization: str = typer.Option(None, "--quantization",
                                     help="CTranslate2 weight type: int8, int8_float32, int16, float16, bfloat16, …"),
) -> None:
    """Export a translation model; OUT loads like any model (rosetta translate / evaluate / serve --model OUT)."""
    from rosetta.checkpoint import CheckpointError
    from rosetta.compress.export import directory_size, export_model

    fmt = {"ct2": "ctranslate2", "hf": "huggingface"}.get(fmt.lower(), fmt.lower())
    if fmt == "huggingface":
        _export_huggingface(model, out, int8 or quantization is not None)
        return
    if int8 and quantization not in (None, "int8"):
        fail(f"--int8 and --quantization {quantization} contradict each other; give one")
    try:
        path = export_model(model, out, fmt, "int8" if int8 else quantization)
    except (ValueError, FileNotFoundError, CheckpointError) as e:
        fail(str(e))
    typer.echo(f"exported {model} as {fmt} to {path} ({directory_size(path) / 1e6:.1f} MB)")
    typer.echo(f"  .venv/bin/rosetta translate --model {path} \"Your sentence.\"")


def _export_huggingface(model: Path, out: Path, quantized: bool) -> None:
    from rosetta.checkpoint import CheckpointError
    from rosetta.compress.hf_export import export_huggingface

    if quantized:
        fail("--format huggingface writes float32 weights; leave out --int8 / --quantization")
    try:
        path = export_huggingface(model, out)
    except (ValueError, FileNotFoundError, CheckpointError) as e:
        fail(str(e))
    typer.echo(f"exported {model} as a Hugging Face directory to {path}")


def engine_model_dir(model: Path, engine: str | None, int8: bool) -> tuple[Path, bool]:
    """What ``serve --engine`` loads: (directory, int8 for the loader). The model itself when it already is what
    the engine runs; a PyTorch model exported to a temporary directory (removed at exit) for onnx / ct2; the
    original model of an export for torch."""
    from rosetta import checkpoint as ckpt

    if engine is None:
        return model, int8
    if engine not in ENGINES:
        fail(f"--engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    try:
        info = ckpt.read_config(ckpt.resolve_model_dir(model))
    except (ckpt.CheckpointError, OSError) as e:
        fail(str(e))
    held = info.get("format", "pytorch")
    if held == ENGINES[engine]:
        return model, int8
    if held != "pytorch":
        source = Path(info.get("exported_from", ""))
        if engine == "torch" and (source / ckpt.CONFIG_FILE).exists():
            return source, int8
        fail(f"{model} is a {held} export; --engine {engine} needs the PyTorch model it came from "
             f"({source or 'unknown'}): serve that, or export it again")
    from rosetta.compress.export import export_model

    tmp = Path(tempfile.mkdtemp(prefix="rosetta-export-"))
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    quantization = "int8" if int8 and engine == "onnx" else None  # ONNX quantises when exporting
    typer.echo(f"exporting {model} for {engine} into {tmp / 'model'} …")
    try:
        return export_model(model, tmp / "model", ENGINES[engine], quantization), int8 and engine != "onnx"
    except (ValueError, FileNotFoundError, ckpt.CheckpointError) as e:
        fail(str(e))
