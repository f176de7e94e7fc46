"""The Trainer on a synthetic copy task: learning works, resume is exact, schedule and loss are right."""

import json
import math

import pytest
import torch
import torch.nn.functional as F
from copy_task import CopyBatches, CopyTask  # noqa: E402  (tests/ is on sys.path)

from rosetta import checkpoint as ckpt
from rosetta.train import Trainer, label_smoothed_nll, learning_rate
from rosetta.train.recipe import Recipe, TrainSection, load_recipe


def recipe(**train):
    """fp32 pinned: ``auto`` would pick bf16 on CPUs with AVX-512 BF16/AMX, and these tests compare numbers
    (bf16 training has tests of its own in test_precision.py)."""
    base = dict(max_steps=20, lr=3e-3, warmup_steps=5, eval_every=10, save_every=10, bleu_every=0,
                log_every=5, keep_last=2, average_last=1, seed=3, precision="fp32")
    return Recipe(train=TrainSection(**{**base, **train}))


def test_learning_rate_matches_paper_formula():
    cfg = TrainSection(lr=512**-0.5 * 4000**-0.5, warmup_steps=4000, schedule="inverse_sqrt")
    for step in (1, 100, 3999, 4000, 4001, 20000, 100000):
        paper = 512**-0.5 * min(step**-0.5, step * 4000**-1.5)
        assert learning_rate(step, cfg) == pytest.approx(paper, rel=1e-12)


def test_label_smoothed_loss_matches_explicit_formula():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 7, dtype=torch.float64)
    target = torch.tensor([[3, 4, 0, 0], [5, 6, 1, 0]])
    loss, nll, n = label_smoothed_nll(logits, target, pad_id=0, smoothing=0.1)
    logp = F.log_softmax(logits, -1)
    expected_loss = expected_nll = 0.0
    for b in range(2):
        for t in range(4):
            y = int(target[b, t])
            if y == 0:
                continue
            expected_nll += -logp[b, t, y]
            expected_loss += -(0.9 * logp[b, t, y] + 0.1 * logp[b, t].mean())
    assert n == 5
    assert float(nll) == pytest.approx(float(expected_nll), rel=1e-6)
    assert float(loss) == pytest.approx(float(expected_loss), rel=1e-6)


def test_trainer_learns_the_copy_task(tmp_path):
    task = CopyTask(dropout=0.0)
    before = task.evaluate(task.model, False)["valid_loss"]
    Trainer(recipe(max_steps=60, eval_every=30, save_every=30), task, tmp_path, progress=False).fit()
    after = task.evaluate(task.model, False)["valid_loss"]
    assert after < 0.5 * before
    log = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert {"train", "valid", "final"} <= {r["kind"] for r in log}
    assert ckpt.verify_checkpoint(tmp_path / "model")


def test_resume_gives_identical_weights(tmp_path):
    """N steps straight == N/2 steps, stop, --resume for the rest (dropout on: RNG state must resume too)."""
    straight = CopyTask(seed=0)
    Trainer(recipe(max_steps=20), straight, tmp_path / "a", progress=False).fit()

    first = CopyTask(seed=0)
    Trainer(recipe(max_steps=10), first, tmp_path / "b", progress=False).fit()
    second = CopyTask(seed=123)  # different init: everything must come from the checkpoint
    Trainer(recipe(max_steps=20), second, tmp_path / "b", progress=False).fit(resume=True)

    a = ckpt.average_checkpoints([tmp_path / "a" / "checkpoints" / "step_00000020"])
    b = ckpt.average_checkpoints([tmp_path / "b" / "checkpoints" / "step_00000020"])
    for name in a:
        assert torch.equal(a[name], b[name]), name


def _gradients_of_one_step(task, tmp_path, micro_batches, accum):
    trainer = Trainer(recipe(accum_steps=accum, clip_norm=0.0), task, tmp_path, progress=False)
    grads = {}
    trainer.optimizer.step = lambda: grads.update(
        {n: p.grad.detach().clone() for n, p in task.model.named_parameters()})
    trainer.train_step(micro_batches)
    return grads


def test_gradient_accumulation_equals_one_big_batch(tmp_path):
    """Loss normalised by the global token count: 2 micro-batches == their concatenation."""
    b1, b2 = CopyBatches(seed=1)._batch(0), CopyBatches(seed=1)._batch(1)
    accumulated = _gradients_of_one_step(CopyTask(seed=0, dropout=0.0), tmp_path / "a", [b1, b2], 2)
    width = max(b1[0].shape[1], b2[0].shape[1])
    merged = tuple(torch.cat([F.pad(x, (0, width - x.shape[1])), F.pad(y, (0, width - y.shape[1]))])
                   for x, y in zip(b1, b2))
    single = _gradients_of_one_step(CopyTask(seed=0, dropout=0.0), tmp_path / "b", [merged], 1)
    for name, g in single.items():
        assert torch.allclose(g, accumulated[name], atol=1e-6, rtol=1e-4), name


def test_keep_last_prunes_old_checkpoints(tmp_path):
    Trainer(recipe(max_steps=40, save_every=10, keep_last=2), CopyTask(), tmp_path, progress=False).fit()
    names = [p.name for p in (tmp_path / "checkpoints").glob("step_*")]
    assert "step_00000040" in names and "step_00000030" in names
    assert len(names) <= 3  # the last two, plus the best one if older


def test_recipe_rejects_unknown_keys(tmp_path):
    path = tmp_path / "r.toml"
    path.write_text("[train]\nmax_stpes = 3\n")
    with pytest.raises(ValueError, match="max_stpes"):
        load_recipe(path)
    with pytest.raises(ValueError, match="section.key=value"):
        load_recipe(None, ["max_steps"])
    assert load_recipe(None, ["train.max_steps=7", "model.d_model=32"]).model.overrides == {"d_model": 32}
    assert math.isclose(load_recipe(None, ["train.lr=5e-4"]).train.lr, 5e-4)


def test_budgeted_schedules_reach_min_lr_when_the_time_is_up():
    cfg = TrainSection(lr=2e-3, warmup_steps=10, max_steps=100_000, schedule="linear", max_minutes=15)
    assert learning_rate(5, cfg, time_fraction=0.01) == pytest.approx(1e-3)  # warm-up ignores the clock
    assert learning_rate(50, cfg, time_fraction=0.25) == pytest.approx(1.5e-3)
    assert learning_rate(50, cfg, time_fraction=1.0) == 0.0
    assert learning_rate(50, cfg, time_fraction=1.7) == 0.0  # past the budget: never negative
    cosine = TrainSection(lr=2e-3, warmup_steps=10, max_steps=110, schedule="cosine", min_lr=1e-4)
    assert learning_rate(60, cosine) == pytest.approx(1e-4 + 0.5 * 1.9e-3)  # half of the step budget
    assert learning_rate(20, cosine, time_fraction=0.5) == pytest.approx(1e-4 + 0.5 * 1.9e-3)  # clock first
