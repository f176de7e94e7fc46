"""Helpers for the tests of Hugging Face directories (tests/test_hf_*.py): a twin with one weight changed, and the
CLI run in-process."""

import shutil

from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from rosetta.cli import app

runner = CliRunner()


def twin(directory, tmp_path, name, index=0, delta=1.0):
    """A copy of ``directory`` whose tensor ``name`` has one element (flat ``index``) moved by ``delta``."""
    copy = tmp_path / f"twin-{name}"
    shutil.copytree(directory, copy)
    tensors = load_file(copy / "model.safetensors")
    tensors[name].view(-1)[index] += delta
    save_file(tensors, copy / "model.safetensors", metadata={"format": "pt"})
    return copy


def cli(*args):
    """``rosetta ARGS`` in-process; its output (the command must succeed)."""
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output
