"""ELECTRA pretraining (``[data] task = "electra"``): replaced-token detection, Clark et al. 2020.

    text ─ packed segments <s> … </s> (B, T) ─ the MLM task's masking (whole words, 15 %, 80/10/10)
         ─ ElectraModel (rosetta.models.electra): generator MLM logits at the chosen positions (N, V),
           a sample per chosen position, discriminator logits (B, T), labels = sample ≠ original
         ─ loss = generator cross-entropy (mean over chosen positions)
                  + λ · discriminator binary cross-entropy (mean over real positions),  λ = train.rtd_weight = 50

Same text, tokenizer, segments, masks and batches as ``task = "mlm"`` (the task subclasses ``MLMTask``), so an
MLM and an ELECTRA run of one recipe see the same data: a comparison at equal compute changes only the objective.
Each batch also carries the seed of its sampling noise, drawn from (seed, epoch, batch, rank) like its masks:
``--resume`` samples the same replacements. Evaluation uses the fixed validation masks and a fixed noise per
validation batch.

Loss normalisation: the Trainer divides the summed loss by ``count_tokens`` (the chosen positions of all
micro-batches). A batch contributes its generator NLL sum plus λ · its discriminator mean · its chosen positions,
so one batch gives exactly the paper's ``mean CE + λ · mean BCE``, and accumulation weighs batches by their masks.

Metrics (held-out segments): ``mlm_accuracy`` and ``valid_loss`` of the generator (nats per chosen token; they rise
steadily as training goes on, so they choose the "best" checkpoint), ``rtd_accuracy``, ``rtd_auc`` (ROC AUC of
the discriminator logits against the labels), ``rtd_loss`` (BCE per real token) and ``replaced`` (share of real
tokens the generator changed: the task gets harder as the generator improves, so the RTD numbers are not
monotone in training).

The model folder (OUT/model) is the discriminator alone (``final_model``): config.json family "encoder", task
"embedding" (an encoder without heads, what it can serve as is), "objective": "electra", WordPiece
tokenizer.json — ``[model] pretrained = "runs/zh-electra"`` fine-tunes it for QA or classification exactly as an
MLM run. Training checkpoints hold generator and discriminator (what ``--resume`` needs).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rosetta.models.electra import ElectraModel, ElectraOutput, generator_config, gumbel_noise
from rosetta.tasks.mlm import IGNORE, MaskedBatch, MaskedBatches, MLMTask
from rosetta.train import label_smoothed_nll

NOISE_STREAM = 1 << 40  # offsets the noise seeds from the mask seeds of the same batch


@dataclass
class ElectraBatch:
    """A masked batch (``inputs``, ``targets`` as ``MaskedBatch``) and the seed of its sampling noise."""

    inputs: torch.Tensor
    targets: torch.Tensor
    noise_seed: int

    @property
    def n_targets(self) -> int:
        return int((self.targets != IGNORE).sum())


class ElectraBatches:
    """The MLM task's masked batches, each with a noise seed fixed by the stream's position (resumable)."""

    def __init__(self, masked: MaskedBatches):
        self.masked = masked

    def __iter__(self) -> Iterator[ElectraBatch]:
        for batch in self.masked:
            s = self.masked.stream  # already points past this batch, as the mask seed's
            seed = ((self.masked.seed * 1_000_003 + s.epoch) * 1_000_003 + s.index) * 64 + s.rank + NOISE_STREAM
            yield ElectraBatch(batch.inputs, batch.targets, seed)

    def state_dict(self) -> dict[str, int]:
        return self.masked.state_dict()

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.masked.load_state_dict(state)


def electra_loss(out: ElectraOutput, targets: torch.Tensor, rtd_weight: float, label_smoothing: float = 0.0
                 ) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(summed loss, summed generator NLL, chosen positions N) of one batch (module docstring: normalisation).

    targets (N,): the original tokens at the chosen positions, in the order of ``out.generator_logits``."""
    generator_loss, nll, n = label_smoothed_nll(out.generator_logits.float(), targets, None, label_smoothing)
    logits, labels = out.rtd_logits.float()[out.real], out.labels[out.real].float()  # (R,) each
    rtd_mean = F.binary_cross_entropy_with_logits(logits, labels)
    return generator_loss + rtd_weight * rtd_mean * n, nll, n


def roc_auc(scores: torch.Tensor, labels: torch.Tensor) -> float | None:
    """Area under the ROC curve: P(a random positive scores above a random negative), ties counting ½
    (Mann–Whitney U from average ranks); None without both classes."""
    scores, labels = scores.double().flatten(), labels.bool().flatten()
    n_pos = int(labels.sum())
    n_neg = labels.numel() - n_pos
    if not n_pos or not n_neg:
        return None
    values, inverse, counts = torch.unique(scores, sorted=True, return_inverse=True, return_counts=True)
    last = counts.cumsum(0).double()  # the rank of the last of each group of equal scores
    ranks = (last - (counts.double() - 1) / 2)[inverse]  # average rank of each score
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


class ElectraTask(MLMTask):
    """Everything the Trainer needs to pretrain a discriminator with ELECTRA (see rosetta.train.Task)."""

    metric = "mlm_accuracy"
    higher_is_better = True

    def build_model(self) -> nn.Module:
        return ElectraModel(self.config, self.recipe.model.generator_fraction)

    def final_model(self) -> nn.Module:
        """What OUT/model stores: the discriminator, an ``EncoderModel`` without heads."""
        return self.model.discriminator

    def batches(self, rank: int, world_size: int) -> ElectraBatches:
        return ElectraBatches(super().batches(rank, world_size))

    def _forward(self, model: nn.Module, batch: MaskedBatch | ElectraBatch, noise_seed: int
                 ) -> tuple[ElectraOutput, torch.Tensor]:
        inputs, targets = batch.inputs.to(self.device), batch.targets.to(self.device)
        chosen = targets != IGNORE  # (B, T)
        original = torch.where(chosen, targets, inputs)
        shape = (int(chosen.sum()), self.tokenizer.vocab_size)
        noise = gumbel_noise(shape, torch.Generator().manual_seed(noise_seed)).to(self.device)
        return model(inputs, original, chosen, noise), targets[chosen]

    def loss(self, model: nn.Module, batch: ElectraBatch, label_smoothing: float):
        out, targets = self._forward(model, batch, batch.noise_seed)
        return electra_loss(out, targets, self.recipe.train.rtd_weight, label_smoothing)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, full: bool) -> dict[str, float]:
        """Generator and discriminator metrics on the held-out segments, fixed masks and noise (module docstring)."""
        correct = count = rtd_correct = real = replaced = 0
        nll_sum = rtd_sum = 0.0
        scores, labels = [], []
        for i, batch in enumerate(self.valid_batches):
            out, targets = self._forward(model, batch, noise_seed=i)
            logits = out.generator_logits.float()
            correct += int((logits.argmax(-1) == targets).sum())
            nll_sum += float(label_smoothed_nll(logits, targets, None, 0.0)[1])
            count += len(targets)
            z, y = out.rtd_logits.float()[out.real], out.labels[out.real]
            rtd_sum += float(F.binary_cross_entropy_with_logits(z, y.float(), reduction="sum"))
            rtd_correct += int(((z > 0) == y).sum())
            real, replaced = real + len(y), replaced + int(y.sum())
            scores.append(z.cpu())
            labels.append(y.cpu())
        metrics = {"mlm_accuracy": correct / max(count, 1), "valid_loss": nll_sum / max(count, 1),
                   "rtd_accuracy": rtd_correct / max(real, 1), "rtd_loss": rtd_sum / max(real, 1),
                   "replaced": replaced / max(real, 1)}
        auc = roc_auc(torch.cat(scores), torch.cat(labels)) if scores else None
        return metrics if auc is None else {**metrics, "rtd_auc": auc}

    def model_config(self) -> dict[str, Any]:
        """The discriminator's config.json: an MLM run's fields, without the MLM head, plus how it was trained."""
        fraction = self.recipe.model.generator_fraction
        return {**super().model_config(), "task": "embedding", "mlm_head": False, "objective": "electra",
                "generator": generator_config(self.config, fraction).to_dict(), "generator_fraction": fraction,
                "rtd_weight": self.recipe.train.rtd_weight}
