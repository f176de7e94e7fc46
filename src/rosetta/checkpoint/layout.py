"""Where a training run keeps its models: the one place that knows the run-folder layout.

    OUT/recipe.json                 the recipe as run
    OUT/metrics.jsonl               one JSON object per log line
    OUT/checkpoints/step_00001000/  training checkpoints (model + optimizer + trainer state)
    OUT/checkpoints/latest          name of the newest checkpoint (what --resume continues from)
    OUT/checkpoints/best            name of the checkpoint with the best validation metric
    OUT/model/                      the model to use (averaged or best), written when training ends

Training writes it (``rosetta.train``); decoding, the server and the CLI read it through
``resolve_model_dir``, so none of them repeats these names.
"""

from __future__ import annotations

from pathlib import Path

from rosetta.checkpoint.files import CONFIG_FILE, CheckpointError

FINAL_DIR = "model"
CHECKPOINTS_DIR = "checkpoints"
LATEST = "latest"
BEST = "best"
RECIPE_FILE = "recipe.json"
METRICS_FILE = "metrics.jsonl"


def step_name(step: int) -> str:
    """Directory name of the checkpoint taken after optimizer step ``step``: step_00001000."""
    return f"step_{step:08d}"


def checkpoints_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / CHECKPOINTS_DIR


def marked_checkpoint(run_dir: str | Path, marker: str = LATEST) -> Path | None:
    """The checkpoint directory a marker file (``latest`` or ``best``) names, or None if there is none."""
    path = checkpoints_dir(run_dir) / marker
    if not path.exists():
        return None
    return checkpoints_dir(run_dir) / path.read_text(encoding="utf-8").strip()


def has_checkpoint(run_dir: str | Path) -> bool:
    """True when ``run_dir`` holds a checkpoint that ``--resume`` can continue from."""
    return (checkpoints_dir(run_dir) / LATEST).exists()


def has_final_model(run_dir: str | Path) -> bool:
    return (Path(run_dir) / FINAL_DIR / CONFIG_FILE).exists()


def resolve_model_dir(path: str | Path) -> Path:
    """A model directory, or a run directory (its ``model/``, else its latest checkpoint)."""
    path = Path(path)
    if (path / CONFIG_FILE).exists():
        return path
    if has_final_model(path):
        return path / FINAL_DIR
    latest = marked_checkpoint(path, LATEST)
    if latest is not None:
        return latest
    raise CheckpointError(
        f"{path} is not a Rosetta model: expected {path / CONFIG_FILE} (a model or checkpoint directory) "
        f"or {path / FINAL_DIR} (a training run's output)"
    )
