"""The recipes that start from a Hugging Face checkpoint (configs/*.toml with ``[model] pretrained = "models/…"``).

The real checkpoints need a network (``rosetta hub pull``); here each recipe runs two steps on its real corpus
(../shared/data) with a tiny random checkpoint of the same family in place of the real one, so what is checked is
the recipe itself: its task, corpus, prefixes and [train] keys work with a Hugging Face start, and its model folder
reads back. Every such recipe names the `rosetta hub pull` command that fetches its checkpoint.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

transformers = pytest.importorskip("transformers")
pytest.importorskip("sentencepiece")

from hf_dirs import marian_directory, roberta_directory, t5_directory, write_gpt2_dir  # noqa: E402

from rosetta.decode.loading import load_any  # noqa: E402
from rosetta.tasks import build_task  # noqa: E402
from rosetta.train import Trainer  # noqa: E402
from rosetta.train.recipe import load_recipe  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")
CONFIGS = Path(__file__).resolve().parents[1] / "configs"
RECIPES = {  # recipe → (the family its checkpoint is, a tiny directory of that family)
    "opus-mt-en-zh-tatoeba.toml": ("translation", lambda d: marian_directory(d)),
    "t5-small-multi30k.toml": ("translation", lambda d: t5_directory(d, "t5")),
    "gpt2-shakespeare.toml": ("lm", lambda d: write_gpt2_dir(d)),
    "bert-base-chinese-cmrc.toml": ("encoder", lambda d: roberta_directory(d, "RobertaModel")[0]),
}
QUICK = ['train.max_steps=2', 'train.max_minutes=0', 'train.eval_every=2', 'train.bleu_every=0', 'train.save_every=2',
         'train.precision="fp32"', 'train.threads=1', 'data.max_train_examples=40', 'data.valid_size=6']


def pretrained_recipes() -> list[Path]:
    return sorted(p for p in CONFIGS.glob("*.toml") if re.search(r'^pretrained = "models/', p.read_text(), re.M))


def test_every_hugging_face_recipe_is_checked_here_and_names_its_pull_command():
    names = {p.name for p in pretrained_recipes()}
    assert names == set(RECIPES) | {"vit-mnist-pretrained.toml"}  # the ViT one: see the test below
    for path in pretrained_recipes():
        folder = re.search(r'^pretrained = "(models/[^"]+)"', path.read_text(), re.M).group(1)
        assert re.search(rf"rosetta hub pull \S+ --out {folder}\b", path.read_text()), path.name


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_the_recipe_trains_from_a_checkpoint_of_its_family(name, tmp_path):
    family, make = RECIPES[name]
    (tmp_path / "checkpoint").mkdir()
    checkpoint = make(tmp_path / "checkpoint")
    overrides = [*QUICK, f'model.pretrained="{checkpoint}"']
    if family == "encoder":
        overrides += ["data.max_length=32", "data.stride=16"]  # the tiny checkpoint has 40 positions
    if family == "lm":
        overrides += ["data.block_size=32"]  # and GPT-2's 64
    recipe = load_recipe(CONFIGS / name, overrides)
    task = build_task(recipe, run_dir=tmp_path / "run")
    Trainer(recipe, task, tmp_path / "run", progress=False).fit()
    loaded = load_any(tmp_path / "run")
    assert loaded.family == family


def test_the_vit_recipe_reads_its_checkpoint_at_its_image_size(tmp_path):
    """MNIST at 64×64 in 3 channels is 0.7 GB: here only what the recipe asks of the checkpoint is checked."""
    recipe = load_recipe(CONFIGS / "vit-mnist-pretrained.toml")
    assert recipe.data.task == "image-classification" and recipe.model.overrides == {"image_size": 64}
