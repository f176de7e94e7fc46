"""The ``rosetta`` typer app and what its command modules share: ``fail``, ``read_lines``, model loading.

Heavy imports (torch, matplotlib, FastAPI) happen inside the commands, so ``rosetta --help`` is instant.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Rosetta: train, run, inspect and serve Transformers.")
data_app = typer.Typer(no_args_is_help=True, help="Corpora known to Rosetta.")
plot_app = typer.Typer(no_args_is_help=True, help="Figures: positional encoding, training curves, embeddings.")
app.add_typer(data_app, name="data")
app.add_typer(plot_app, name="plot")

DataDir = typer.Option(None, "--data-dir", help="Folder with the corpora (default: $ROSETTA_DATA).")
ModelOption = typer.Option(..., "--model", help="Model/run directory of any family, or all-MiniLM-L6-v2.")


def fail(message: str, code: int = 2) -> None:
    """Print ``error: message`` in red on stderr and exit with ``code`` (2: the user's input was wrong)."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def read_lines(path: Path | None) -> list[str]:
    """The lines of a UTF-8 file, or of standard input when ``path`` is None; a clear error otherwise."""
    raw = path.read_bytes() if path else sys.stdin.buffer.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        where = path or "standard input"
        line = raw[: e.start].count(b"\n") + 1
        fail(f"{where} is not UTF-8 text (byte {e.start}, line {line}); convert it, e.g. iconv -t UTF-8")
    return text.splitlines()


PRECISION_HELP = ("Decoding precision: fp32, bf16 (bf16 weights: faster where the CPU has AVX-512 BF16 / AMX, "
                  "or on a GPU), int8 (CPU), or auto (bf16 where it is faster for this use, else fp32).")


def load_translator(model: Path, device: str = "cpu", int8: bool = False, precision: str = "fp32",
                    sentences: int = 64, beam: int | None = None):
    """``rosetta.load`` with its errors turned into a clear message and exit code 2. ``sentences`` per batch
    and ``beam`` (None: the model's) size a decoding step, for ``precision auto``. A broken model folder is a
    ``CheckpointError`` (a RuntimeError) whose one line names the file and the fix."""
    from rosetta.decode.folder import one_line
    from rosetta.decode.translator import load

    try:
        return load(model, device=device, int8=int8, precision=precision, sentences=sentences, beam=beam)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        fail(one_line(e))


def load_model(model: Path, device: str = "cpu"):
    """A model of any family (``rosetta.decode.loading.load_any``), or a clear message and exit code 2 (a broken
    folder: ``CheckpointError``, one line naming the file and the fix)."""
    from rosetta.checkpoint import CheckpointError
    from rosetta.decode.folder import one_line
    from rosetta.decode.loading import load_any

    try:
        return load_any(model, device=device)
    except (ValueError, FileNotFoundError, CheckpointError) as e:
        fail(one_line(e))


def model_family(model: Path) -> str | None:
    """The family of the model in ``model``, read from its config.json without loading any weights: a Rosetta
    model, checkpoint or run directory says it ("translation" when it names none), a Hugging Face directory the
    family its model_type is registered under, the pretrained name an "encoder". None when there is no readable
    config (a wrong path) or it names no known family: the loader then says why it cannot load it."""
    from rosetta import checkpoint as ckpt
    from rosetta.hub import REGISTRY
    from rosetta.models.pretrained import MINILM_NAMES, is_huggingface_dir

    if str(model).lower() in MINILM_NAMES:
        return "encoder"
    if is_huggingface_dir(model):  # its model_type's family in the registry (rosetta.hub)
        spec = REGISTRY.get(ckpt.read_config(Path(model)).get("model_type"))
        return spec.family if spec else None
    try:
        family = ckpt.model_family(ckpt.read_config(ckpt.resolve_model_dir(model)))
    except (ckpt.CheckpointError, OSError, ValueError):
        return None
    return family if isinstance(family, str) and family in ckpt.TASKS else None
