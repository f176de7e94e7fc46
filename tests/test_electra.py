"""ELECTRA (rosetta.models.electra, rosetta.tasks.electra): replaced-token labels are exactly "token differs from
the original", both losses equal a float64 hand computation, the embeddings are one shared tensor, a stopped and
resumed run equals an uninterrupted one bit for bit, and the saved discriminator fine-tunes for classification and
QA as an MLM run does."""

import json
import math
import random
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rosetta import checkpoint as ckpt
from rosetta.decode.loading import load_any
from rosetta.models.electra import ElectraModel, generator_config, gumbel_noise, replace_tokens
from rosetta.models.encoder import EncoderModel, bert_config
from rosetta.special_tokens import BOS_ID, EOS_ID, MASK_ID, PAD_ID
from rosetta.tasks import build_task
from rosetta.tasks.electra import electra_loss, roc_auc
from rosetta.train import Trainer
from rosetta.train.recipe import recipe_from_dict

V = 30
TINY = bert_config(V, d_model=32, n_heads=4, d_ff=64, n_encoder_layers=1, dropout=0.0, max_len=16)


@pytest.fixture(autouse=True, scope="module")
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def tiny_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(masked inputs, original ids, chosen) of two sequences, the second one padded."""
    original = torch.tensor([[BOS_ID, 7, 8, 9, 20, 11, EOS_ID], [BOS_ID, 12, 20, 14, EOS_ID, PAD_ID, PAD_ID]])
    chosen = torch.zeros_like(original, dtype=torch.bool)
    chosen[0, 2] = chosen[0, 4] = chosen[1, 1] = chosen[1, 2] = True
    return torch.where(chosen, MASK_ID, original), original, chosen


# ---------------------------------------------------------------------------------------- labels and sampling
def test_replaced_token_labels_are_exactly_token_differs_from_the_original():
    _, original, chosen = tiny_batch()
    targets = original[chosen]  # (4,)
    noise = gumbel_noise((4, V), torch.Generator().manual_seed(0))
    forced = torch.full((4, V), -1e4)
    forced[torch.arange(4), targets] = 1e4  # a generator sure of the original token samples it
    corrupted, labels = replace_tokens(original, chosen, forced, noise)
    assert torch.equal(corrupted, original) and not labels.any()
    other = forced.clone()
    other[0] = -1e4
    other[0, 25] = 1e4  # the first chosen position gets token 25 instead of 8
    corrupted, labels = replace_tokens(original, chosen, other, noise)
    assert labels.nonzero().tolist() == [[0, 2]] and corrupted[0, 2] == 25
    assert torch.equal(corrupted[~labels], original[~labels])


def test_model_labels_follow_the_sampled_tokens_at_every_real_position():
    torch.manual_seed(0)
    model = ElectraModel(TINY, 0.25).eval()
    inputs, original, chosen = tiny_batch()
    with torch.no_grad():
        model.generator.mlm.decoder.bias[20] = 1e4  # the generator always samples token 20
        out = model(inputs, original, chosen, gumbel_noise((4, V), torch.Generator().manual_seed(1)))
    expected = chosen & (original != 20)  # (0, 4) and (1, 2) hold 20 already: label 0 there
    assert torch.equal(out.labels, expected) and torch.equal(out.real, original != PAD_ID)
    assert out.rtd_logits.shape == original.shape and out.generator_logits.shape == (4, V)


def test_sampling_follows_the_softmax_and_is_seeded():
    logits = torch.log(torch.tensor([[0.7, 0.2, 0.1]])).expand(20_000, 3)
    noise = gumbel_noise((20_000, 3), torch.Generator().manual_seed(3))
    sampled = (logits + noise).argmax(-1)
    shares = torch.bincount(sampled, minlength=3).double() / 20_000
    assert torch.allclose(shares, torch.tensor([0.7, 0.2, 0.1], dtype=torch.float64), atol=0.015)
    assert torch.equal(noise, gumbel_noise((20_000, 3), torch.Generator().manual_seed(3)))


# ---------------------------------------------------------------------------------------- losses by hand
def test_generator_and_discriminator_losses_equal_a_hand_computation():
    torch.manual_seed(1)
    model = ElectraModel(TINY, 0.25).eval()
    inputs, original, chosen = tiny_batch()
    with torch.no_grad():
        model.generator.mlm.decoder.bias[20] = 3.0  # a mix of kept and replaced tokens
        out = model(inputs, original, chosen, gumbel_noise((4, V), torch.Generator().manual_seed(2)))
    assert 0 < int(out.labels.sum()) < int(out.real.sum())
    targets = original[chosen].tolist()
    gen_rows = out.generator_logits.double().tolist()
    ce = [math.log(sum(math.exp(z) for z in row)) - row[t] for row, t in zip(gen_rows, targets)]
    gen_mean = sum(ce) / len(ce)
    bce = [math.log(1 + math.exp(z)) - y * z for z, y, r in zip(out.rtd_logits.double().flatten().tolist(),
                                                                  out.labels.flatten().tolist(),
                                                                  out.real.flatten().tolist()) if r]
    rtd_mean = sum(bce) / len(bce)
    assert len(bce) == 12  # every real position, <s> and </s> included; padding never
    loss, nll, n = electra_loss(out, original[chosen], rtd_weight=50.0)
    assert n == 4
    assert float(nll) / n == pytest.approx(gen_mean, rel=1e-5)
    assert float(loss) / n == pytest.approx(gen_mean + 50.0 * rtd_mean, rel=1e-5)


def test_roc_auc_equals_counting_pairs():
    rng = random.Random(0)
    scores = [rng.choice([0.0, 0.5, 1.0, 1.5, 2.0]) + rng.random() * (i % 2) for i in range(300)]
    labels = [rng.random() < 0.3 + 0.1 * s for s in scores]
    pos, neg = [s for s, y in zip(scores, labels) if y], [s for s, y in zip(scores, labels) if not y]
    pairs = sum(1.0 if p > q else 0.5 if p == q else 0.0 for p in pos for q in neg) / (len(pos) * len(neg))
    assert roc_auc(torch.tensor(scores), torch.tensor(labels)) == pytest.approx(pairs, abs=1e-12)
    assert roc_auc(torch.tensor([0.1, 0.2]), torch.tensor([True, True])) is None


# ---------------------------------------------------------------------------------------- the model
def test_embeddings_are_one_tensor_trained_by_both_networks():
    torch.manual_seed(2)
    model = ElectraModel(TINY, 0.25)
    table = model.discriminator.embeddings.token.weight
    assert model.generator.embeddings is model.discriminator.embeddings
    decoder = model.generator.mlm.decoder.weight
    assert decoder is table and decoder.data_ptr() == table.data_ptr()
    assert sum(p is table for p in model.parameters()) == 1
    g = model.generator
    assert g.config.d_model == 8 and g.config.n_heads == 1 and g.config.d_ff == 16
    assert tuple(g.project.weight.shape) == (8, 32) and tuple(g.mlm.dense.weight.shape) == (32, 8)
    saved = ckpt.state_dict_for_saving(model)
    assert not any(k.startswith("generator.embeddings") or k == "generator.mlm.decoder.weight" for k in saved)
    inputs, original, chosen = tiny_batch()
    out = model(inputs, original, chosen, gumbel_noise((4, V), torch.Generator().manual_seed(0)))
    grads = []
    for loss in (torch.nn.functional.cross_entropy(out.generator_logits, original[chosen]),
                 out.rtd_logits[out.real].sum()):
        model.zero_grad()
        loss.backward(retain_graph=True)
        grads.append(table.grad.abs().sum())
    assert all(g > 0 for g in grads)  # each loss alone reaches the shared table


def test_generator_sizes_must_keep_whole_heads():
    assert generator_config(TINY, 0.5).d_model == 16 and generator_config(TINY, 0.5).n_heads == 2
    with pytest.raises(ValueError, match=r"generator_fraction must be in \(0, 1\]"):
        generator_config(TINY, 0.0)
    with pytest.raises(ValueError, match="do not divide"):
        generator_config(bert_config(V, d_model=30, n_heads=3, d_ff=60), 0.7)


# ---------------------------------------------------------------------------------------- runs
def made_up_paragraphs(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    who, where, what = ["我", "他", "她", "我们"], ["北京", "上海", "学校", "公园"], ["看书", "跑步", "吃饭", "唱歌"]
    return ["".join(f"{rng.choice(who)}第{rng.randrange(100)}天在{rng.choice(where)}{rng.choice(what)}。"
                    for _ in range(3)) for _ in range(n)]


def electra_recipe(steps: int, **train) -> dict:
    return {"data": {"task": "electra", "corpus": "zh-text", "max_length": 40, "valid_size": 8},
            "tokenizer": {"kind": "wordpiece", "vocab_size": 200, "min_frequency": 1},
            "model": {"d_model": 32, "n_heads": 4, "d_ff": 64, "n_encoder_layers": 1, "dropout": 0.1},
            "train": {"max_steps": steps, "max_tokens": 512, "batch_size": 8, "lr": 3e-3, "warmup_steps": 4,
                      "label_smoothing": 0.0, "eval_every": steps, "save_every": 2, "log_every": 1,
                      "keep_last": 5, "precision": "fp32", "device": "cpu", "threads": 1, "seed": 1, **train}}


def train(recipe: dict, data_dir: Path, out: Path, resume: bool = False) -> Path:
    rcp = recipe_from_dict(recipe)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # made-up files under the registered names: their sha256 differs
        task = build_task(rcp, data_dir=data_dir, run_dir=out, resume=resume)
    return Trainer(rcp, task, out, progress=False).fit(resume=resume)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """A zh-text folder of made-up paragraphs under the registered file names."""
    import gzip

    from rosetta.data.registry import REGISTRY

    root = tmp_path_factory.mktemp("data")
    for i, f in enumerate(REGISTRY["zh-text"].files):
        (root / "zh-text").mkdir(exist_ok=True)
        with gzip.open(root / "zh-text" / f.path, "wt", encoding="utf-8") as out:
            out.write("\n".join(made_up_paragraphs(150, i)) + "\n")
    return root


@pytest.fixture(scope="module")
def electra_run(data_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("electra") / "run"
    train(electra_recipe(6), data_dir, out)
    return out


def test_electra_run_saves_the_discriminator_as_an_encoder(electra_run):
    config = json.loads((electra_run / "model" / "config.json").read_text())
    assert config["family"] == "encoder" and config["task"] == "embedding" and config["objective"] == "electra"
    assert config["mlm_head"] is False and config["generator"]["d_model"] == 8 and config["rtd_weight"] == 50.0
    final = config["training"]["final_metrics"]
    assert {"mlm_accuracy", "valid_loss", "rtd_accuracy", "rtd_loss", "replaced"} <= set(final)
    assert 0 < final["replaced"] <= 1 and final["valid_loss"] > 0
    weights = load_file(electra_run / "model" / "model.safetensors")
    assert not any(k.startswith(("generator.", "rtd_head.")) for k in weights)
    step = load_file(ckpt.marked_checkpoint(electra_run) / "model.safetensors")  # checkpoints hold both networks
    assert any(k.startswith("generator.") for k in step)
    loaded = load_any(electra_run)
    assert loaded.family == "encoder" and isinstance(loaded.model, EncoderModel)
    for name, tensor in loaded.model.state_dict().items():
        assert torch.equal(tensor, step[f"discriminator.{name}"]), name  # the last checkpoint, no averaging


def test_stopped_and_resumed_electra_run_equals_an_uninterrupted_one(data_dir, tmp_path):
    """The run as a kill after step 3 leaves it (``latest`` = step 2), resumed: the same masks, samples, dropout
    and optimizer steps. (Two separately started runs can differ: the WordPiece trainer orders tied alphabet
    tokens differently from one process to the next, so the resumed run must keep the stopped run's tokenizer.)"""
    import shutil

    train(electra_recipe(4), data_dir, tmp_path / "straight")
    shutil.copytree(tmp_path / "straight", tmp_path / "resumed")
    checkpoints = tmp_path / "resumed" / "checkpoints"
    shutil.rmtree(checkpoints / ckpt.step_name(4))
    shutil.rmtree(tmp_path / "resumed" / "model")
    (checkpoints / ckpt.LATEST).write_text(ckpt.step_name(2) + "\n")
    train(electra_recipe(4), data_dir, tmp_path / "resumed", resume=True)
    for name in ("model.safetensors", "optimizer.safetensors"):
        a, b = (load_file(tmp_path / run / "checkpoints" / ckpt.step_name(4) / name) for run in ("straight", "resumed"))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name

    def losses(run: str) -> list[float]:
        lines = (tmp_path / run / "metrics.jsonl").read_text().splitlines()
        return [r["loss"] for r in map(json.loads, lines) if r["kind"] == "train"]

    assert losses("straight") == losses("resumed") and len(losses("straight")) == 4


def fine_tune_recipe(task: str, pretrained: Path, tmp: Path) -> dict:
    texts = made_up_paragraphs(24, 9)
    if task == "classification":
        (tmp / "cls.tsv").write_text("".join(f"{t}\t{int('北京' in t)}\n" for t in texts), encoding="utf-8")
        data = {"task": task, "train_src": str(tmp / "cls.tsv"), "valid_src": str(tmp / "cls.tsv"), "max_length": 40}
    else:
        qas = [{"id": str(i), "question": "在哪里？", "answers": [{"text": t[5:7], "answer_start": 5}]}
               for i, t in enumerate(texts[:6])]
        squad = {"data": [{"title": "t", "paragraphs": [{"context": t, "qas": [q]}]} for t, q in zip(texts, qas)]}
        (tmp / "qa.json").write_text(json.dumps(squad, ensure_ascii=False), encoding="utf-8")
        data = {"task": task, "train_src": str(tmp / "qa.json"), "valid_src": str(tmp / "qa.json"), "max_length": 40,
                "stride": 16}
    return {"data": data, "model": {"pretrained": str(pretrained)},
            "train": {"max_steps": 2, "max_tokens": 512, "batch_size": 4, "lr": 1e-3, "warmup_steps": 1,
                      "eval_every": 0, "save_every": 2, "precision": "fp32", "device": "cpu", "threads": 1}}


@pytest.mark.parametrize("task", ["classification", "qa"])
def test_the_discriminator_fine_tunes_like_an_mlm_run(electra_run, task, tmp_path):
    discriminator = load_file(electra_run / "model" / "model.safetensors")
    recipe = recipe_from_dict(fine_tune_recipe(task, electra_run, tmp_path))
    fine = build_task(recipe, run_dir=tmp_path / "run")
    start = fine.model.state_dict()
    assert all(torch.equal(start[k], v) for k, v in discriminator.items())  # every encoder weight, as trained
    assert fine.tokenizer.to_str() == load_any(electra_run).tokenizer.to_str()  # the run's WordPiece vocabulary
    Trainer(recipe, fine, tmp_path / "run", progress=False).fit()
    loaded = load_any(tmp_path / "run")
    assert loaded.info["task"] == task and loaded.info["tokenizer"] == "wordpiece"
    assert loaded.model.config.to_dict() == load_any(electra_run).model.config.to_dict()
