"""Text-to-text: two tasks in one model, told apart only by the prefix of the input.

Two synthetic corpora over the same made-up words: "copy" (the target is the source) and "reverse" (the
target is the source's words in reverse order). The same sentence must come out differently under the two
prefixes, so a model that ignored the prefix could not score well on both.
"""

import json
import random

import pytest
import torch

from rosetta.data import registry
from rosetta.data.registry import CorpusInfo
from rosetta.tasks import build_task, load_eval_pairs
from rosetta.tasks.text_to_text import check_mixture, task_for
from rosetta.train import Recipe, Trainer, load_recipe

WORDS = "ka lo mi nu pe ra si tu".split()
PREFIXES = {"toy-copy": "copy: ", "toy-reverse": "reverse: "}


def make_corpora(root, monkeypatch, n_train=400, n_valid=30):
    rng = random.Random(0)
    for name, target in (("toy-copy", lambda w: w), ("toy-reverse", lambda w: w[::-1])):
        folder = root / name
        folder.mkdir(parents=True)
        for split, n in (("train", n_train), ("val", n_valid)):
            sentences = [[rng.choice(WORDS) for _ in range(rng.randint(2, 5))] for _ in range(n)]
            (folder / f"{split}.xx").write_text("\n".join(" ".join(s) for s in sentences) + "\n")
            (folder / f"{split}.yy").write_text("\n".join(" ".join(target(s)) for s in sentences) + "\n")
        info = CorpusInfo(name, "translation", ("xx", "yy"), name, (), "aligned",
                          splits={"train": "train", "valid": "val", "test": "val"})
        monkeypatch.setitem(registry.REGISTRY, name, info)


T5_FLAGS = [  # T5's layout, as configs/t5-multitask.toml has it
    'model.positional="relative"', "model.scale_attention=False", 'model.norm="rmsnorm"', "model.bias=False",
    "model.scale_embeddings=False", "model.share_embeddings=True", "model.scale_decoder_output=True",
]


def recipe(*extra: str, **data) -> Recipe:
    mixture = [{"corpus": c, "src_lang": "xx", "tgt_lang": "yy", "prefix": p} for c, p in PREFIXES.items()]
    return load_recipe(None, [
        'data.task="text-to-text"', f"data.mixture={mixture!r}", "data.max_length=32",
        "tokenizer.vocab_size=60", "tokenizer.min_frequency=1", 'model.preset="tiny"', "model.dropout=0.0",
        "model.norm_first=True", "train.max_steps=300", "train.max_tokens=400", "train.lr=5e-3",
        "train.warmup_steps=20", 'train.schedule="linear"', "train.eval_every=0", "train.save_every=0",
        "train.bleu_every=0", "train.bleu_sentences=30", "train.label_smoothing=0.0", 'train.precision="fp32"',
        'train.device="cpu"', "train.average_last=1", "decode.max_len_offset=4",
        *[f"data.{k}={v!r}" for k, v in data.items()], *extra,
    ])


def test_mixture_is_checked_with_clear_errors():
    with pytest.raises(ValueError, match=r"needs \[\[data.mixture\]\]"):
        check_mixture(None)
    with pytest.raises(ValueError, match="missing \\['prefix'\\]"):
        check_mixture([{"corpus": "a", "src_lang": "en", "tgt_lang": "zh"}])
    with pytest.raises(ValueError, match="must differ"):
        check_mixture([{"corpus": c, "src_lang": "en", "tgt_lang": "zh", "prefix": "p: "} for c in "ab"])
    with pytest.raises(ValueError, match="not trained on 'c'"):
        task_for({"tasks": [{"corpus": "a"}]}, "c")


def test_one_model_learns_two_tasks_from_the_prefix(tmp_path, monkeypatch):
    make_corpora(tmp_path / "data", monkeypatch)
    rcp = recipe()
    task = build_task(rcp, data_dir=tmp_path / "data", run_dir=tmp_path / "run")
    # every training source carries its task's prefix; the validation spans cover each task's pairs
    assert all(s.startswith(tuple(PREFIXES.values())) for s, _ in task.valid_pairs)
    assert [end - start for start, end in task.valid_spans] == [30, 30]
    final = Trainer(rcp, task, tmp_path / "run", progress=False).fit()
    metrics = task.evaluate(task.model.eval(), full=True)
    assert set(metrics) >= {"bleu", "bleu_toy-copy", "bleu_toy-reverse", "valid_loss"}
    assert metrics["bleu"] == pytest.approx((metrics["bleu_toy-copy"] + metrics["bleu_toy-reverse"]) / 2)
    assert metrics["bleu_toy-copy"] > 50 and metrics["bleu_toy-reverse"] > 50, metrics

    import rosetta

    translator = rosetta.load(final)
    sentence = "ka lo mi nu"
    copy, reverse = translator.translate([f"copy: {sentence}", f"reverse: {sentence}"], beam=1)
    assert copy == sentence and reverse == "nu mi lo ka"
    # evaluation of a saved text-to-text model reads the corpus in its task's direction, with its prefix
    pairs, tgt_lang = load_eval_pairs("toy-reverse", "test", translator.info, tmp_path / "data")
    assert tgt_lang == "yy" and all(s.startswith("reverse: ") for s, _ in pairs) and len(pairs) == 30
    # --src/--ref on a model with several target languages: BLEU's tokenizer must be named
    from typer.testing import CliRunner

    from rosetta.cli import app

    (tmp_path / "src.txt").write_text(f"reverse: {sentence}\n")
    (tmp_path / "ref.txt").write_text("nu mi lo ka\n")
    files = ["evaluate", "--model", str(final), "--src", str(tmp_path / "src.txt"), "--ref", str(tmp_path / "ref.txt")]
    refused = CliRunner().invoke(app, files)
    assert refused.exit_code == 2 and "--tgt-lang" in refused.output
    scored = CliRunner().invoke(app, [*files, "--tgt-lang", "yy", "--beam", "1", "--json"])
    assert scored.exit_code == 0 and json.loads(scored.output)["bleu"] == pytest.approx(100.0)



def test_a_t5_layout_model_trains_saves_and_draws_its_relative_bias(tmp_path, monkeypatch):
    """The recipe's T5 flags go through the text-to-text task, the Trainer and the checkpoint; the saved model's
    learned bias is drawn per head (rosetta plot relative-bias), and a model without one is refused clearly."""
    from typer.testing import CliRunner

    from rosetta.cli import app

    make_corpora(tmp_path / "data", monkeypatch, n_train=60, n_valid=5)
    rcp = recipe(*T5_FLAGS, "train.max_steps=20")
    task = build_task(rcp, data_dir=tmp_path / "data", run_dir=tmp_path / "run")
    final = Trainer(rcp, task, tmp_path / "run", progress=False).fit()
    config = task.model.config
    assert (config.positional, config.scale_attention, config.norm) == ("relative", False, "rmsnorm")
    drawn = CliRunner().invoke(app, ["plot", "relative-bias", "--model", str(final), "--out", str(tmp_path / "rb.png")])
    assert drawn.exit_code == 0, drawn.output
    assert (tmp_path / "rb.png").stat().st_size > 10_000
    plain = build_task(recipe("train.max_steps=1"), data_dir=tmp_path / "data", run_dir=tmp_path / "plain")
    plain_final = Trainer(plain.recipe, plain, tmp_path / "plain", progress=False).fit()
    refused = CliRunner().invoke(app, ["plot", "relative-bias", "--model", str(plain_final)])
    assert refused.exit_code == 2 and "no relative position bias" in refused.output


def test_relative_bias_curves_read_the_table_through_the_buckets():
    from rosetta.nn.positional import RelativePositionBias, relative_position_bucket
    from rosetta.view.plots import relative_bias_curves

    torch.manual_seed(0)
    for bidirectional in (True, False):
        bias = RelativePositionBias(n_heads=3, num_buckets=8, max_distance=20, bidirectional=bidirectional)
        distances, values = relative_bias_curves(bias, max_distance=25)
        assert distances.tolist() == list(range(-25, 26)) and values.shape == (3, 51)
        for d, column in zip(distances.tolist(), values.T):
            bucket = int(relative_position_bucket(torch.tensor(d), bidirectional, 8, 20))
            assert column.tolist() == pytest.approx(bias.table.weight[bucket].tolist(), abs=0)
