"""Training, loading and the CLI for the three families (lm, encoder, translation), on tiny made-up data.

rosetta train → OUT/model → rosetta generate / embed / neighbors / plot embeddings, each result checked
against an independent computation (float64 brute force, eigen-decomposition) where there is one.
"""

import json
import math
import random
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from rosetta.cli import app
from rosetta.decode.loading import load_any
from rosetta.tasks import build_task
from rosetta.tasks.language_model import LanguageModelTask, RandomWindows
from rosetta.train.recipe import load_recipe
from rosetta.view.embeddings import Vocabulary, nearest, pca_2d

runner = CliRunner()
CONFIGS = Path(__file__).resolve().parents[1] / "configs"
SUBJECTS = ["the cat", "a dog", "my friend", "the old man", "a small bird"]
VERBS = ["sees", "likes", "finds", "follows"]
OBJECTS = ["the river", "a red ball", "the house", "bread", "the moon"]
HAPPY = ["sunny", "bright", "lovely", "joyful", "warm"]
GLOOMY = ["rainy", "dark", "awful", "grim", "cold"]


@pytest.fixture(autouse=True, scope="module")
def restore_threads():
    """The recipes below train on one thread (threads = 1); the tests after this file get theirs back."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def made_up_text(n: int, seed: int) -> str:
    rng = random.Random(seed)
    return "".join(f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)}.\n" for _ in range(n))


def made_up_sentiment(n: int, seed: int) -> str:
    """label 1 iff the sentence has a 'happy' word: trivially separable by one token."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        label = rng.randrange(2)
        word = rng.choice(HAPPY if label else GLOOMY)
        lines.append(f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} a {word} day\t{label}")
    return "\n".join(lines) + "\n"


TRAIN = """
[train]
max_steps = {steps}
batch_size = 16
lr = 3e-3
warmup_steps = 10
schedule = "cosine"
label_smoothing = 0.0
eval_every = {steps}
save_every = {steps}
log_every = 1
keep_last = 1
precision = "fp32"
device = "cpu"
threads = 1
seed = 1
"""


def lm_recipe(tmp_path, kind="char", steps=120):
    (tmp_path / "train.txt").write_text(made_up_text(300, 0), encoding="utf-8")
    (tmp_path / "valid.txt").write_text(made_up_text(40, 1), encoding="utf-8")
    path = tmp_path / f"lm-{kind}.toml"
    path.write_text(f"""
[data]
task = "lm"
train_src = "{tmp_path / 'train.txt'}"
valid_src = "{tmp_path / 'valid.txt'}"
block_size = 24
[tokenizer]
kind = "{kind}"
vocab_size = 300
[model]
d_model = 32
n_heads = 4
d_ff = 64
n_decoder_layers = 2
dropout = 0.0
""" + TRAIN.format(steps=steps), encoding="utf-8")
    return path


def records(run, kind):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()
            if json.loads(line)["kind"] == kind]


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory):
    """A tiny character LM trained through the command line (shared by the generate/neighbors/plot tests)."""
    tmp = tmp_path_factory.mktemp("lm")
    result = runner.invoke(app, ["train", str(lm_recipe(tmp)), "--out", str(tmp / "run"), "--quiet"])
    assert result.exit_code == 0, result.output
    return tmp / "run"


def generate(run, *args):
    result = runner.invoke(app, ["generate", "--model", str(run), *args])
    assert result.exit_code == 0, result.output
    return result.output


# ---------------------------------------------------------------------------------------------- lm
def test_lm_recipe_learns_and_writes_an_lm_model(lm_run):
    train = records(lm_run, "train")
    vocab = len(set(made_up_text(300, 0))) + 4
    assert train[0]["loss"] == pytest.approx(math.log(vocab), rel=0.15)  # untrained: about uniform
    final = records(lm_run, "final")[0]["final_metrics"]
    assert final["valid_loss"] < 0.5 * train[0]["loss"]
    assert final["valid_nats_per_char"] == pytest.approx(final["valid_loss"])  # one character per token
    config = json.loads((lm_run / "model" / "config.json").read_text())
    assert config["family"] == "lm" and config["model"]["max_len"] == 24
    assert load_any(lm_run).family == "lm"


def test_generate_same_seed_same_text_other_seed_other_text(lm_run):
    a = generate(lm_run, "the cat", "--seed", "3", "--max-new-tokens", "60", "--temperature", "1.0")
    b = generate(lm_run, "the cat", "--seed", "3", "--max-new-tokens", "60", "--temperature", "1.0")
    c = generate(lm_run, "the cat", "--seed", "4", "--max-new-tokens", "60", "--temperature", "1.0")
    assert a == b and a != c
    assert a.startswith("the cat") and len(a) <= len("the cat") + 60 + 1  # ≤ 60 characters (</s> stops)


def test_generate_bad_inputs_have_clear_outcomes(lm_run):
    greedy = generate(lm_run, "a dog", "--temperature", "0", "--seed", "1", "--max-new-tokens", "20")
    assert greedy == generate(lm_run, "a dog", "--temperature", "0", "--seed", "2", "--max-new-tokens", "20")
    assert 1 < len(generate(lm_run, "", "--max-new-tokens", "10", "--seed", "0")) <= 11  # empty prompt: from <s>
    unknown = runner.invoke(app, ["generate", "--model", str(lm_run), "the zebra", "--max-new-tokens", "5"])
    assert unknown.exit_code == 0 and "unknown to the tokenizer" in unknown.output
    with pytest.warns(UserWarning, match="longer than the model's context"):
        long = runner.invoke(app, ["generate", "--model", str(lm_run), "the cat sees the moon. " * 3,
                                   "--max-new-tokens", "5"])
    assert long.exit_code == 0
    for bad in (["--top-p", "1.5"], ["--top-k", "0"], ["--max-new-tokens", "-1"]):
        result = runner.invoke(app, ["generate", "--model", str(lm_run), "a", *bad])
        assert result.exit_code == 2 and "error" in result.output


def test_random_windows_are_shifted_pairs_and_resume_exactly():
    data = torch.arange(100)
    stream = RandomWindows(data, block_size=8, batch_size=4, seed=5)
    it = iter(stream)
    first = [next(it) for _ in range(3)]
    assert all(torch.equal(b.x[:, 1:], b.y[:, :-1]) and torch.equal(b.y, b.x + 1) for b in first)
    resumed = RandomWindows(data, block_size=8, batch_size=4, seed=5)
    resumed.load_state_dict({"index": 2})
    assert torch.equal(next(iter(resumed)).x, first[2].x)
    other_rank = next(iter(RandomWindows(data, 8, 4, seed=5, rank=1, world_size=2)))
    assert not torch.equal(other_rank.x, first[0].x)


def test_bpe_lm_reports_nats_per_character(tmp_path):
    """valid_nats_per_char = (nats per token) × tokens / characters, with characters counted exactly."""
    task = build_task(load_recipe(lm_recipe(tmp_path, "bpe")))
    assert isinstance(task, LanguageModelTask)
    metrics = task.evaluate(task.model.eval(), full=True)
    text = made_up_text(40, 1)
    ids = task.tokenizer.encode(text)
    assert task.tokenizer.decode(ids) == text  # byte-level: newlines survive
    n_targets = len(task.valid_windows) * task.block_size
    chars = len(task.tokenizer.decode(ids[1 : 1 + n_targets]))  # what the scored targets spell
    assert chars > 1.5 * n_targets  # BPE tokens are several characters long
    assert metrics["valid_nats_per_char"] == pytest.approx(metrics["valid_loss"] * n_targets / chars)
    quick = build_task(load_recipe(lm_recipe(tmp_path, "bpe"), ["data.valid_size=3"]))
    assert len(quick.quick_windows) == 3 and quick.valid_windows == task.valid_windows
    total = len(task.valid_windows)
    assert quick.quick_windows == [task.valid_windows[i * total // 3] for i in range(3)]  # spread over the text


def test_lm_resume_gives_identical_weights(tmp_path):
    """10 steps straight == 5 steps, stop, resume for 5 more: batches, tokenizer and RNG come back exactly."""
    from rosetta.train import Trainer

    recipe = lm_recipe(tmp_path, steps=10)
    for out, stops in (("a", [10]), ("b", [5, 10])):
        for steps in stops:
            rcp = load_recipe(recipe, [f"train.max_steps={steps}", "train.save_every=5"])
            task = build_task(rcp, run_dir=tmp_path / out, resume=steps == 10 and out == "b")
            Trainer(rcp, task, tmp_path / out, progress=False).fit(resume=out == "b" and steps == 10)
    a, b = (load_file(tmp_path / x / "model" / "model.safetensors") for x in "ab")
    assert all(torch.equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------------------------------------- encoder
SMALL_ENCODER = "d_model = 32\nn_heads = 4\nd_ff = 64\nn_encoder_layers = 1"


def classification_recipe(tmp, model: str = SMALL_ENCODER, tokenizer: str = 'kind = "bpe"\nvocab_size = 200') -> Path:
    (tmp / "train.tsv").write_text("sentence\tlabel\n" + made_up_sentiment(400, 0), encoding="utf-8")
    (tmp / "valid.tsv").write_text(made_up_sentiment(60, 1), encoding="utf-8")
    recipe = tmp / "cls.toml"
    recipe.write_text(f"""
[data]
task = "classification"
train_src = "{tmp / 'train.tsv'}"
valid_src = "{tmp / 'valid.tsv'}"
max_length = 32
[tokenizer]
{tokenizer}
min_frequency = 1
[model]
{model}
dropout = 0.0
""" + TRAIN.format(steps=60), encoding="utf-8")
    return recipe


@pytest.fixture(scope="module")
def encoder_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cls")
    recipe = classification_recipe(tmp)
    result = runner.invoke(app, ["train", str(recipe), "--out", str(tmp / "run"), "--quiet"])
    assert result.exit_code == 0, result.output
    return tmp / "run"


def test_classification_recipe_learns_a_separable_task(encoder_run):
    final = records(encoder_run, "final")[0]["final_metrics"]
    assert final["accuracy"] == 1.0
    config = json.loads((encoder_run / "model" / "config.json").read_text())
    assert config["family"] == "encoder" and config["num_labels"] == 2 and config["tokenizer"] == "bpe"


def test_classifier_from_pretrained_minilm_starts_from_its_weights(tmp_path):
    from rosetta.models.pretrained import load_pretrained, minilm_path

    reference = load_pretrained(minilm_path()).state_dict()
    model = 'pretrained = "all-MiniLM-L6-v2"'
    task = build_task(load_recipe(classification_recipe(tmp_path, model, 'kind = "pretrained"')))
    state = task.model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in reference.items() if not k.startswith("pooler."))
    assert state["classifier.weight"].shape == (2, 384) and "pooler.weight" not in state
    assert all(ids[0] == 101 and ids[-1] == 102 for ids, _ in task.train_examples)  # [CLS] … [SEP]
    scratch = build_task(load_recipe(classification_recipe(tmp_path, model + "\nload_weights = false",
                                                           'kind = "pretrained"')))
    assert scratch.model.config == task.model.config and scratch.train_examples == task.train_examples
    weight = scratch.model.embeddings.token.weight.detach()
    assert not torch.equal(weight, reference["embeddings.token.weight"])
    assert float(weight.std()) == pytest.approx(0.02, rel=0.05)  # BERT's N(0, 0.02²) initialisation


def test_embed_prints_unit_vectors_and_their_cosines(encoder_run):
    sentences = ["a dog likes a sunny day", "a dog likes a rainy day", "the moon"]
    result = runner.invoke(app, ["embed", "--model", str(encoder_run), *sentences])
    assert result.exit_code == 0, result.output
    vectors = torch.tensor([[float(x) for x in line.split()] for line in result.output.splitlines()])
    assert vectors.shape == (3, 32)
    assert torch.allclose(vectors.norm(dim=1), torch.ones(3), atol=1e-4)
    result = runner.invoke(app, ["embed", "--model", str(encoder_run), "--similarity", *sentences])
    rows = [line.split()[1:4] for line in result.output.splitlines()[1:]]
    matrix = torch.tensor([[float(x) for x in row] for row in rows])
    assert torch.allclose(matrix, vectors @ vectors.T, atol=2e-3)
    refused = runner.invoke(app, ["embed", "--model", "/nonexistent/model", "x"])
    assert refused.exit_code == 2 and "error" in refused.output


# ---------------------------------------------------------------------------------------------- embedding space
def brute_force_neighbours(weight, index, k):
    w = weight.double()
    scores = [(float(w[index] @ w[j] / (w[index].norm() * w[j].norm())), j) for j in range(len(w)) if j != index]
    return sorted(scores, reverse=True)[:k]


@pytest.mark.parametrize("family", ["lm", "encoder"])
def test_neighbors_match_brute_force_cosine(family, lm_run, encoder_run):
    run = lm_run if family == "lm" else encoder_run
    token = "a" if family == "lm" else "▁dog"
    result = runner.invoke(app, ["neighbors", "--model", str(run), token, "-k", "5"])
    assert result.exit_code == 0, result.output
    listed = [(float(m.group(1)), int(m.group(2))) for m in re.finditer(r"([+-]\d\.\d{4}) .*\(id (\d+)\)",
                                                                         result.output)]
    loaded = load_any(run)
    vocab = Vocabulary(loaded.tokenizer)
    table = load_file(run / "model" / "model.safetensors")
    weight = table["embed.token.weight" if family == "lm" else "embeddings.token.weight"]
    expected = brute_force_neighbours(weight, vocab.lookup(token), 5)
    assert [i for _, i in listed] == [j for _, j in expected]
    assert [c for c, _ in listed] == pytest.approx([c for c, _ in expected], abs=1e-4)


def test_translation_models_have_two_tables_and_a_sentence_encoder(tmp_path):
    from tiny_translator import build_tiny_model  # tests/: a tiny en→zh model with separate vocabularies

    model_dir = build_tiny_model(tmp_path / "model", steps=0)
    loaded = load_any(model_dir)
    assert loaded.family == "translation" and loaded.target_tokenizer is not loaded.tokenizer
    result = runner.invoke(app, ["neighbors", "--model", str(model_dir), "学", "--side", "target", "-k", "3"])
    assert result.exit_code == 0, result.output
    listed = [int(i) for i in re.findall(r"\(id (\d+)\)", result.output)[1:]]
    weight = load_file(model_dir / "model.safetensors")["tgt_embed.token.weight"]
    index = Vocabulary(loaded.target_tokenizer).lookup("学")
    assert listed == [j for _, j in brute_force_neighbours(weight, index, 3)]
    plot = runner.invoke(app, ["plot", "embeddings", "--model", str(model_dir), "--side", "target",
                               "--out", str(tmp_path / "zh.png")])
    assert plot.exit_code == 0, plot.output
    vectors = runner.invoke(app, ["embed", "--model", str(model_dir), "I am a student.", "How are you?"])
    assert vectors.exit_code == 0 and len(vectors.output.splitlines()) == 2


def test_unknown_or_multi_piece_token_is_a_clear_error(lm_run):
    result = runner.invoke(app, ["neighbors", "--model", str(lm_run), "cat"])
    assert result.exit_code == 2 and "not one token" in result.output


def test_pca_matches_the_eigenvectors_of_the_covariance():
    torch.manual_seed(0)
    points = torch.randn(50, 6) @ torch.diag(torch.tensor([5.0, 3.0, 1.0, 0.5, 0.2, 0.1]))
    coords, share = pca_2d(points)
    x = points.double() - points.double().mean(0)
    values, vectors = torch.linalg.eigh(x.T @ x)  # ascending
    top = vectors[:, [-1, -2]]
    assert torch.allclose(coords.abs(), (x @ top).abs(), atol=1e-8)
    assert share.tolist() == pytest.approx((values[[-1, -2]] / values.sum()).tolist())
    assert torch.equal(pca_2d(points)[0], coords)  # deterministic signs


def test_plot_embeddings_writes_a_png(lm_run, tmp_path):
    out = tmp_path / "emb.png"
    result = runner.invoke(app, ["plot", "embeddings", "--model", str(lm_run), "--out", str(out)])
    assert result.exit_code == 0, result.output
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    picked = runner.invoke(app, ["plot", "embeddings", "--model", str(lm_run), "--tokens", "a,b,c",
                                 "--tokens", ",", "--out", str(tmp_path / "abc.png")])
    assert picked.exit_code == 0 and picked.output.startswith("4 tokens")


def test_cjk_labels_are_drawn_with_a_cjk_font(tmp_path, recwarn):
    from rosetta.view.embeddings import plot_embeddings
    from rosetta.view.fonts import INSTALL_HINT, find_cjk_font

    assert find_cjk_font() is not None, f"no CJK font found: {INSTALL_HINT}"
    coords, share = pca_2d(torch.randn(4, 8, generator=torch.Generator().manual_seed(0)))
    out = plot_embeddings(coords, ["我", "学生", "▁the", "。"], share, tmp_path / "zh.png", "中文")
    assert out.read_bytes()[:4] == b"\x89PNG"
    assert not [w for w in recwarn if "missing from font" in str(w.message)]


def test_byte_level_labels_show_spaces_as_metaspace(tmp_path):
    from rosetta.data.tokenizer import Tokenizer

    vocab = Vocabulary(Tokenizer.train_byte_level([made_up_text(100, 0)], 300))
    the = vocab.lookup("▁the")
    assert vocab.label(the) == "▁the" and vocab.hf.id_to_token(the) == "Ġthe"
    assert vocab.label(vocab.lookup("\n")) == "\\n"


def test_neighbors_function_excludes_the_query_and_is_sorted():
    weight = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [-1.0, 0.0]])
    assert [i for i, _ in nearest(weight, 0, 3)] == [1, 2, 3]


# ---------------------------------------------------------------------------------------------- real corpora
@pytest.mark.corpus
def test_real_corpora_feed_the_lm_and_classification_tasks(tmp_path):
    lm = build_task(load_recipe(CONFIGS / "shakespeare-char.toml"))
    assert lm.tokenizer.vocab_size == 65 + 4 and len(lm.train_ids) == 1_003_854
    assert lm.characters(lm.valid_windows) == len(lm.valid_windows) * lm.block_size  # a character per token
    cls = build_task(load_recipe(CONFIGS / "sst2-minilm.toml", ["data.max_train_examples=500"]))
    assert len(cls.valid_examples) == 872 and cls.num_labels == 2
    assert all(ids[0] == 101 and ids[-1] == 102 for ids, _ in cls.valid_examples)  # [CLS] … [SEP]
