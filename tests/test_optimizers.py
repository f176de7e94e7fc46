"""``[train] optimizer``: Adafactor's steps against the paper's update rule written out in float64, Adam's against
PyTorch's reference loop, and a clear error for an unknown name."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rosetta.train.optimizers import build_optimizer


def adafactor_reference(theta: torch.Tensor, grads: list[torch.Tensor], rho: float) -> torch.Tensor:
    """Shazeer & Stern (2018), Algorithms 4 (matrices, factored) and 5 (vectors), in float64: β̂₂ₜ = 1 − t^-0.8,
    ρₜ = min(ρ, 1/√t), αₜ = max(ε₂, RMS(θ)) ρₜ, Rₜ = β̂₂ₜ Rₜ₋₁ + (1 − β̂₂ₜ) Σⱼ g², Cₜ likewise over rows,
    V̂ = R Cᵀ / Σᵢ Rᵢ, U = g / √V̂, θ −= αₜ U / max(1, RMS(U) / d), with ε₂ = 1e-3, d = 1."""
    theta = theta.clone()
    row = col = var = None
    for t, g in enumerate(grads, start=1):
        beta = 1 - t ** -0.8
        alpha = max(1e-3, theta.pow(2).mean().sqrt().item()) * min(rho, t ** -0.5)
        if g.dim() == 2:
            r, c = (g * g).sum(dim=1), (g * g).sum(dim=0)
            row = r * (1 - beta) if row is None else beta * row + (1 - beta) * r
            col = c * (1 - beta) if col is None else beta * col + (1 - beta) * c
            v = torch.outer(row, col) / row.sum()
        else:
            var = (1 - beta) * g * g if var is None else beta * var + (1 - beta) * g * g
            v = var
        u = g / v.sqrt()
        theta -= alpha * u / max(1.0, u.pow(2).mean().sqrt().item())
    return theta


class Two(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(3, 4, dtype=torch.float64))
        self.bias = nn.Parameter(torch.randn(4, dtype=torch.float64) * 0.01)  # RMS < ε₂: the floor applies


def test_adafactor_steps_follow_the_papers_rule_in_float64():
    torch.manual_seed(0)
    model = Two()
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    grads = {n: [torch.randn_like(p) * s for s in (1.0, 0.1, 3.0)] for n, p in model.named_parameters()}
    optimizer = build_optimizer(model, "adafactor", lr=0.01)
    for step in range(3):
        for name, p in model.named_parameters():
            p.grad = grads[name][step].clone()
        optimizer.step()
    for name, p in model.named_parameters():
        want = adafactor_reference(start[name], grads[name], rho=0.01)
        torch.testing.assert_close(p.detach(), want, rtol=1e-10, atol=1e-12)
        assert not torch.equal(p.detach(), start[name])  # it moved: the comparison is not vacuous


def test_adam_is_pytorchs_reference_loop_with_decay_on_matrices_only():
    torch.manual_seed(1)
    model, twin = Two().float(), Two().float()
    twin.load_state_dict(model.state_dict())
    ours = build_optimizer(model, "adam", lr=1e-2, weight_decay=0.1, betas=(0.9, 0.98), eps=1e-9)
    reference = torch.optim.AdamW([{"params": [twin.weight], "weight_decay": 0.1},
                                   {"params": [twin.bias], "weight_decay": 0.0}],
                                  lr=1e-2, betas=(0.9, 0.98), eps=1e-9, foreach=False)
    for _ in range(3):
        for m in (model, twin):
            m.weight.grad, m.bias.grad = torch.ones(3, 4), torch.full((4,), 0.5)
        ours.step()
        reference.step()
    torch.testing.assert_close(model.weight, twin.weight, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(model.bias, twin.bias, rtol=1e-6, atol=1e-7)


def test_unknown_optimizer_is_a_clear_error():
    with pytest.raises(ValueError, match="not one of adam, adafactor"):
        build_optimizer(Two(), "sgd", lr=0.1)


def test_a_recipe_trains_with_adafactor_and_resumes_its_factored_moments(tmp_path):
    """``[train] optimizer = "adafactor"`` reaches the Trainer; its row/column moments survive a checkpoint
    (10 steps straight == 5, stop, resume for 5: identical weights)."""
    from copy_task import CopyTask

    from rosetta.train.recipe import Recipe, TrainSection
    from rosetta.train.trainer import Trainer

    def run(out, steps, resume=False):
        rcp = Recipe(train=TrainSection(max_steps=steps, optimizer="adafactor", lr=0.01, schedule="constant",
                                        warmup_steps=0, eval_every=0, save_every=5, bleu_every=0, seed=3,
                                        precision="fp32"))
        trainer = Trainer(rcp, CopyTask(seed=0, dropout=0.0), tmp_path / out, progress=False)
        assert isinstance(trainer.optimizer, torch.optim.Adafactor)
        trainer.fit(resume=resume)
        return trainer.model.state_dict()

    straight = run("a", 10)
    run("b", 5)
    resumed = run("b", 10, resume=True)
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
