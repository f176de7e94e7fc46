"""ELECTRA (Clark et al. 2020): a small generator replaces some tokens, a discriminator tells which were replaced.

    ids with 15 % of the words masked (the MLM task's masking) (B, T)
      ─ shared Embeddings (token + position + type, LayerNorm; width D) ─ Linear D → d_g
      ─ generator layers (width d_g = D · generator_fraction) ─ hidden at the chosen positions (N, d_g)
      ─ generator MLM head: dense d_g → D, GELU, LayerNorm, · Eᵀ + b ─ logits (N, V) ─ loss: cross-entropy
      ─ one sample per chosen position from softmax(logits) (Gumbel-max with given noise; no gradient)
    corrupted ids: the samples at the chosen positions, the original tokens elsewhere
      ─ shared Embeddings ─ discriminator layers (width D) ─ hidden (B, T, D)
      ─ RTD head: dense D → D, GELU, Linear D → 1 ─ one logit per position ─ loss: binary cross-entropy against
        label = (corrupted token ≠ original token), at every real (non-pad) position

Sharing: the token, position and token-type embeddings (and their LayerNorm) are one module, used by both
networks and trained by both losses (the paper's "tied embeddings"). A generator narrower than the embeddings
reads them through a projection D → d_g and writes its MLM logits back at width D against the same table E,
as Hugging Face's ``ElectraForMaskedLM`` does with ``embedding_size`` (here the embedding size is the
discriminator's width D, so the discriminator needs no projection).

Sizes: the generator has the discriminator's depth, d_model · f, n_heads · f (at least 1) and d_ff · f with
f = ``generator_fraction`` (the paper: 1/4 for Small and Base; ELECTRA's code scales the same three sizes).

``discriminator`` is an ``EncoderModel`` without heads: its state dict is exactly a BERT encoder's, so the model
folder of an ELECTRA run is the discriminator alone, which the QA and classification tasks load as they load an
MLM run (``rosetta.tasks.electra``). A label is computed from the tokens, not from the sampling: a generator
that samples the original token produces label 0 there (the paper's choice, unlike a "was masked" label).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from rosetta.models.encoder import EncoderModel, MLMHead
from rosetta.models.transformer import Encoder, as_key_mask
from rosetta.nn.blocks import Embeddings
from rosetta.nn.config import ModelConfig
from rosetta.nn.stack import init_weights, num_parameters


def generator_config(config: ModelConfig, fraction: float) -> ModelConfig:
    """The generator's ``ModelConfig``: the discriminator's, with d_model, n_heads and d_ff scaled by
    ``fraction`` (n_heads at least 1), the same depth and layout."""
    if not 0 < fraction <= 1:
        raise ValueError(f"model.generator_fraction must be in (0, 1], got {fraction} (the paper: 0.25)")
    d_model, n_heads = max(1, round(config.d_model * fraction)), max(1, round(config.n_heads * fraction))
    if d_model % n_heads:
        raise ValueError(f"model.generator_fraction={fraction} gives the generator d_model={d_model} and "
                         f"n_heads={n_heads}, which do not divide; pick a fraction that keeps whole heads")
    return config.replace(d_model=d_model, n_heads=n_heads, d_ff=max(1, round(config.d_ff * fraction)))


class Generator(nn.Module):
    """A narrow masked language model over the discriminator's embeddings (module docstring)."""

    def __init__(self, config: ModelConfig, embeddings: Embeddings):
        super().__init__()
        self.config = config
        width = embeddings.token.embedding_dim
        self.project = nn.Linear(width, config.d_model) if width != config.d_model else None
        self.encoder = Encoder(config)
        self.mlm = MLMHead(config, embeddings.token, hidden_size=config.d_model)
        for part in (self.project, self.encoder, self.mlm.dense):  # not the shared table (mlm.decoder.weight)
            if part is not None:
                init_weights(part, config)
        nn.init.zeros_(self.mlm.decoder.bias)
        self.embeddings = embeddings  # registered after initialisation: shared, initialised once by its owner

    def forward(self, ids: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """ids (B, T), real (B, T) bool → hidden states (B, T, d_g)."""
        self.embeddings.check_ids(ids)
        x = self.embeddings(ids)  # (B, T, D)
        if self.project is not None:
            x = self.project(x)  # (B, T, d_g)
        hidden, _ = self.encoder(x, as_key_mask(real, ids, self.config.pad_id))
        return hidden


class RTDHead(nn.Module):
    """ELECTRA's discriminator head: logit = w · GELU(W h + c) + b, one per position (HF's
    ``ElectraDiscriminatorPredictions``: dense, activation, dense_prediction)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.dense = nn.Linear(config.d_model, config.d_model)
        self.approximate = "tanh" if config.activation == "gelu_tanh" else "none"
        self.prediction = nn.Linear(config.d_model, 1)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.prediction(F.gelu(self.dense(hidden), approximate=self.approximate)).squeeze(-1)  # (B, T)


def gumbel_noise(shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """Gumbel(0, 1) noise −log(−log u), u uniform in (0, 1), drawn on the CPU from ``generator`` (so the same
    seed gives the same samples on every device): argmax(logits + noise) is a sample of softmax(logits)."""
    u = torch.rand(shape, generator=generator, dtype=torch.float32).clamp_(1e-9, 1 - 1e-7)
    return -torch.log(-torch.log(u))


def replace_tokens(original: torch.Tensor, chosen: torch.Tensor, logits: torch.Tensor, noise: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """(corrupted ids (B, T), labels (B, T) bool): a sample argmax(logits + noise) at each chosen position.

    original (B, T) ids; chosen (B, T) bool with N true entries; logits and noise (N, V), in the order of
    ``original[chosen]``. label = corrupted ≠ original: a sample equal to the original token is label 0."""
    sampled = (logits.detach().float() + noise).argmax(-1)  # (N,): no gradient through the sampling
    corrupted = original.clone()
    corrupted[chosen] = sampled
    return corrupted, corrupted != original


@dataclass
class ElectraOutput:
    """generator_logits (N, V) at the chosen positions; rtd_logits (B, T); labels (B, T) bool (replaced);
    real (B, T) bool (not padding)."""

    generator_logits: torch.Tensor
    rtd_logits: torch.Tensor
    labels: torch.Tensor
    real: torch.Tensor


class ElectraModel(nn.Module):
    """Generator + discriminator with shared embeddings (module docstring); ``discriminator`` is what fine-tunes."""

    def __init__(self, config: ModelConfig, generator_fraction: float):
        super().__init__()
        self.config = config
        self.discriminator = EncoderModel(config)
        self.rtd_head = RTDHead(config)
        init_weights(self.rtd_head, config)
        self.generator = Generator(generator_config(config, generator_fraction), self.discriminator.embeddings)

    num_parameters = num_parameters

    def forward(self, inputs: torch.Tensor, original: torch.Tensor, chosen: torch.Tensor, noise: torch.Tensor
                ) -> ElectraOutput:
        """inputs (B, T): the masked ids the generator reads; original (B, T): the uncorrupted ids; chosen
        (B, T) bool: the masked positions (N of them); noise (N, V): Gumbel noise for the sampling.

        One forward for both networks, so a DistributedDataParallel wrapper sees every parameter used once."""
        real = original != self.config.pad_id
        generator_logits = self.generator.mlm(self.generator(inputs, real)[chosen])  # (N, V)
        corrupted, labels = replace_tokens(original, chosen, generator_logits, noise)
        hidden = self.discriminator(corrupted, attention_mask=real)  # a sampled <pad> is still a real token
        return ElectraOutput(generator_logits, self.rtd_head(hidden), labels & real, real)
