"""A full disk during a checkpoint write, and what a ``kill -9`` leaves behind (tests/test_kill_resume.py kills
real runs).

A full disk (ENOSPC, simulated by making safetensors' writer or the marker's rename fail half way) leaves the
previous checkpoint loadable and still ``latest``, no temporary copy behind, and one line that says so; ``--resume``
after freeing space ends where an uninterrupted run ends. A resume tidies what a kill leaves: temporary copies,
a checkpoint parked between two renames, checkpoints newer than ``latest``, log lines of redone steps.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from rosetta import checkpoint as ckpt
from rosetta.checkpoint import files


@pytest.fixture(autouse=True)
def restore_threads():
    """The runs below train on one thread (threads = 1); the tests after them get theirs back."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def records(run: Path, kind: str | None = None) -> list[dict]:
    lines = (run / ckpt.METRICS_FILE).read_text(encoding="utf-8").splitlines()
    return [r for r in map(json.loads, lines) if kind in (None, r["kind"])]


def latest_step(run: Path) -> int:
    return int(ckpt.marked_checkpoint(run, ckpt.LATEST).name.removeprefix("step_"))


def copy_recipe(**train):
    from rosetta.train.recipe import Recipe, TrainSection

    base = dict(max_steps=6, save_every=2, eval_every=2, bleu_every=0, log_every=1, keep_last=5, lr=3e-3,
                warmup_steps=2, precision="fp32", device="cpu", threads=1, seed=3)
    return Recipe(train=TrainSection(**{**base, **train}))


def disk_full_in(monkeypatch, step: int | None) -> None:
    """safetensors runs out of space half way through the weights of checkpoint ``step`` (None: the final model)."""
    real = files.save_file
    name = ckpt.step_name(step) if step is not None else ckpt.FINAL_DIR

    def save_file(tensors, path, *args, **kwargs):
        if Path(path).parent.name.startswith(f".{name}."):
            Path(path).write_bytes(b"\0" * 64)  # what fitted on the disk
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(tensors, path, *args, **kwargs)
    monkeypatch.setattr(files, "save_file", save_file)


def test_full_disk_during_a_checkpoint_keeps_the_previous_one_and_says_so(tmp_path, monkeypatch):
    from copy_task import CopyTask

    from rosetta.train import Trainer

    run, checkpoints = tmp_path / "run", ckpt.checkpoints_dir(tmp_path / "run")
    disk_full_in(monkeypatch, 4)
    with pytest.raises(ckpt.CheckpointWriteError) as failure:
        Trainer(copy_recipe(), CopyTask(seed=0), run, progress=False).fit()
    assert str(failure.value) == (
        f"no space left on device while writing checkpoint step_00000004 in {checkpoints}; the latest checkpoint "
        "step_00000002 is intact — free some space and run again with --resume")
    assert failure.value.errno == errno.ENOSPC
    assert sorted(p.name for p in checkpoints.iterdir()) == ["best", "latest", "step_00000002"]  # no temporary copy
    assert latest_step(run) == 2
    ckpt.verify_checkpoint(checkpoints / "step_00000002")
    ckpt.load_weights(checkpoints / "step_00000002", CopyTask(seed=1).model)

    monkeypatch.undo()  # space freed: --resume ends where an uninterrupted run ends
    Trainer(copy_recipe(), CopyTask(seed=123), run, progress=False).fit(resume=True)
    Trainer(copy_recipe(), CopyTask(seed=0), tmp_path / "reference", progress=False).fit()
    a, b = (load_file(ckpt.checkpoints_dir(r) / "step_00000006" / ckpt.MODEL_FILE)
            for r in (run, tmp_path / "reference"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_full_disk_while_writing_the_final_model_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    from copy_task import CopyTask

    from rosetta.train import Trainer

    run = tmp_path / "run"
    disk_full_in(monkeypatch, None)
    with pytest.raises(ckpt.CheckpointWriteError, match=f"no space left on device while writing checkpoint model in "
                       f"{run}; the latest checkpoint step_00000006 is intact — free some space and run again "
                       "with --resume"):
        Trainer(copy_recipe(), CopyTask(seed=0), run, progress=False).fit()
    assert not ckpt.has_final_model(run) and not [p for p in run.iterdir() if p.name.startswith(".")]
    monkeypatch.undo()
    Trainer(copy_recipe(), CopyTask(seed=5), run, progress=False).fit(resume=True)  # writes the final model only
    assert [r["steps"] for r in records(run, "final")] == [6]
    ckpt.verify_checkpoint(run / ckpt.FINAL_DIR)


def test_full_disk_while_marking_latest_keeps_the_previous_latest(tmp_path, monkeypatch):
    from copy_task import CopyTask

    from rosetta.train import Trainer

    run, checkpoints = tmp_path / "run", ckpt.checkpoints_dir(tmp_path / "run")
    real = os.replace

    def replace(src, dst):
        if Path(dst).name == ckpt.LATEST and Path(src).read_text().strip() == "step_00000004":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(src, dst)
    monkeypatch.setattr(files.os, "replace", replace)
    with pytest.raises(ckpt.CheckpointWriteError, match=f"no space left on device while marking checkpoint "
                       f"step_00000004 as latest in {checkpoints}; the latest checkpoint step_00000002 is intact"):
        Trainer(copy_recipe(eval_every=0), CopyTask(seed=0), run, progress=False).fit()
    assert latest_step(run) == 2
    assert not [p.name for p in checkpoints.iterdir() if p.name.startswith(".")]


def lm_recipe(tmp: Path) -> Path:
    """A character LM, 6 steps, a checkpoint every 2."""
    (tmp / "text.txt").write_text("the cat sees the dog. a bird likes the moon.\n" * 20, encoding="utf-8")
    recipe = tmp / "lm.toml"
    recipe.write_text(f"""[data]
task = "lm"
train_src = "{tmp / 'text.txt'}"
block_size = 16
[tokenizer]
kind = "char"
[model]
d_model = 32
n_heads = 2
d_ff = 64
n_decoder_layers = 1
[train]
max_steps = 6
batch_size = 8
warmup_steps = 2
eval_every = 0
save_every = 2
precision = "fp32"
device = "cpu"
threads = 1
""", encoding="utf-8")
    return recipe


def test_full_disk_through_the_cli_is_one_line_and_resume_finishes(tmp_path, monkeypatch):
    from rosetta.cli import app

    recipe = lm_recipe(tmp_path)
    run = tmp_path / "run"
    disk_full_in(monkeypatch, 4)
    result = CliRunner().invoke(app, ["train", str(recipe), "--out", str(run), "--quiet"])
    assert result.exit_code == 1
    assert result.output == (f"error: no space left on device while writing checkpoint step_00000004 in "
                             f"{ckpt.checkpoints_dir(run)}; the latest checkpoint step_00000002 is intact — "
                             "free some space and run again with --resume\n")
    monkeypatch.undo()
    result = CliRunner().invoke(app, ["train", str(recipe), "--out", str(run), "--quiet", "--resume"])
    assert result.exit_code == 0, result.output
    assert latest_step(run) == 6 and ckpt.has_final_model(run)


# ------------------------------------------------------------------------------------- what a kill leaves
def test_resume_forgets_checkpoints_newer_than_latest(tmp_path):
    """A run killed after writing step 4 (and marking it best) but before marking it latest: --resume from step 2
    removes step 4, and ``best`` is again what step 2's trainer state says."""
    from copy_task import CopyTask

    from rosetta.train import Trainer

    run, checkpoints = tmp_path / "run", ckpt.checkpoints_dir(tmp_path / "run")
    Trainer(copy_recipe(max_steps=4), CopyTask(seed=0), run, progress=False).fit()
    assert ckpt.marked_checkpoint(run, ckpt.BEST).name == "step_00000004"
    ckpt.atomic_write_text(checkpoints / ckpt.LATEST, "step_00000002\n")
    trainer = Trainer(copy_recipe(), CopyTask(seed=0), run, progress=False)
    assert trainer.resume() and trainer.step == 2
    assert sorted(p.name for p in trainer.saved_checkpoints()) == ["step_00000002"]
    assert ckpt.marked_checkpoint(run, ckpt.BEST).name == "step_00000002"


def test_leftovers_of_a_killed_write_are_removed_or_put_back(tmp_path):
    for name in ("step_00000002", ".step_00000004.x1.tmp", ".step_00000006.old", ".step_00000002.old"):
        (tmp_path / name).mkdir()
    (tmp_path / ".latest.x2.tmp").write_text("step_00000004\n")
    (tmp_path / ".step_00000006.old" / "config.json").write_text("{}")
    (tmp_path / ".hidden").write_text("not ours")
    removed = ckpt.remove_leftovers(tmp_path)
    assert removed == [".latest.x2.tmp", ".step_00000002.old", ".step_00000004.x1.tmp"]
    # killed between save_checkpoint's two renames: the parked copy of step 6 is the only one, so it comes back
    assert (tmp_path / "step_00000006" / "config.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hidden", "step_00000002", "step_00000006"]


def test_resume_drops_the_log_records_of_redone_steps_and_a_cut_line(tmp_path):
    from rosetta.train import MetricsLog

    log = MetricsLog(tmp_path / "metrics.jsonl", enabled=True)
    for step in range(1, 6):
        log.write(kind="train", step=step, loss=1.0 / step)
    log.write(kind="final", steps=5)
    with open(log.path, "a", encoding="utf-8") as f:
        f.write('{"kind": "train", "ste')  # the kill came in the middle of a line
    log.rewind(3)
    assert [(r["kind"], r["step"]) for r in records(tmp_path)] == [("train", 1), ("train", 2), ("train", 3)]
