"""Decoder-only language model (GPT): the Transformer's decoder without the encoder and cross-attention.

    ids (B, T) ─ Embeddings ─ N × (masked self-attention, feed-forward) ─ [final norm] ─ Linear ─ logits (B, T, V)

Same blocks as the encoder–decoder (``rosetta.blocks``); only the wiring differs. Position t predicts token
t+1 and, through the causal mask, sees tokens 0 … t only.

Which ``ModelConfig`` fields it reads: the vocabulary is ``tgt_vocab_size`` (the decoder's side; set
``src_vocab_size`` to the same value, see ``gpt_config``), the depth is ``n_decoder_layers``, the context is
``max_len`` tokens. ``n_encoder_layers`` and ``share_embeddings`` are ignored.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rosetta import decode
from rosetta.attention import causal_mask
from rosetta.blocks import Embeddings, LayerCache, TransformerLayer
from rosetta.config import ModelConfig
from rosetta.model import LayerStack, init_weights

# GPT-2's layout: Pre-LN with a final LayerNorm, learned positions, tanh-GELU, biases, tied output, no √d scale.
GPT_LAYOUT: dict[str, Any] = dict(
    positional="learned", norm="layernorm", norm_eps=1e-5, norm_first=True, activation="gelu_tanh", bias=True,
    scale_embeddings=False, embedding_norm=False, type_vocab_size=0, tie_output=True, init_std=0.02,
    n_encoder_layers=0,
)


def gpt_config(vocab_size: int, **overrides: Any) -> ModelConfig:
    """A ``ModelConfig`` with GPT-2's layout and ``vocab_size`` tokens; sizes and any flag can be overridden,
    e.g. ``gpt_config(100, d_model=64, n_heads=4, d_ff=256, n_decoder_layers=2, positional="rope")``."""
    return ModelConfig(**{**GPT_LAYOUT, "src_vocab_size": vocab_size, "tgt_vocab_size": vocab_size, **overrides})


class DecoderOnlyLayer(TransformerLayer):
    """GPT layer: masked self-attention, then the feed-forward network (a decoder layer without cross-attention)."""

    def __init__(self, config: ModelConfig):
        super().__init__(config, cross_attention=False)


@dataclass
class LMState:
    """Incremental decoding state: per-layer key/value caches and the number of positions already fed."""

    layers: list[LayerCache] = field(default_factory=list)
    offset: int = 0
    batch_size: int = 1

    def reorder(self, index: torch.Tensor) -> None:
        """Keep the batch rows ``index`` (beam search re-ranking its hypotheses)."""
        for layer in self.layers:
            layer.reorder(index)
        self.batch_size = index.numel()


class LanguageModel(nn.Module):
    """Decoder-only Transformer language model.

    ``forward(ids)`` scores every position at once (training); ``start_decoding`` + ``decode_step`` run it
    incrementally with key/value caches; ``generate`` samples a continuation token by token.

    Batches are right-padded: the causal mask alone keeps real tokens from seeing the padding after them;
    the logits at padding positions are meaningless (``loss`` ignores them).
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.embed = Embeddings(config.tgt_vocab_size, config)
        self.decoder = LayerStack(config, config.n_decoder_layers, DecoderOnlyLayer)
        self.output = nn.Linear(config.d_model, config.tgt_vocab_size, bias=False)
        init_weights(self, config)
        if config.tie_output:
            self.output.weight = self.embed.token.weight

    @property
    def vocab_size(self) -> int:
        return self.config.tgt_vocab_size

    def num_parameters(self, trainable_only: bool = False) -> int:
        """Parameter count; the tied output matrix is counted once."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def forward(
        self, ids: torch.Tensor, return_attention: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """ids (B, T) → logits (B, T, V); with ``return_attention`` also per-layer weights (B, H, T, T)."""
        self.embed.check_ids(ids)
        mask = causal_mask(ids.shape[1], ids.device)
        x, attention = self.decoder(self.embed(ids), mask, need_weights=return_attention)
        logits = self.output(x)
        return (logits, [a["self"] for a in attention]) if return_attention else logits

    def loss(self, ids: torch.Tensor) -> torch.Tensor:
        """Mean next-token cross-entropy of ids (B, T): position t predicts ids[:, t+1]; padding targets ignored."""
        logits = self(ids[:, :-1])
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1),
                               ignore_index=self.config.pad_id)

    # ------------------------------------------------------------------ incremental decoding
    def start_decoding(self, batch_size: int = 1) -> LMState:
        """Empty caches for ``batch_size`` sequences (they fill on the first ``decode_step``)."""
        return LMState(layers=[LayerCache() for _ in self.decoder.layers], batch_size=batch_size)

    def decode_step(
        self, tokens: torch.Tensor, state: LMState, need_weights: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
        """Feed the next tokens (B, t) → logits (B, t, V); ``state`` advances by t.

        The prompt goes in at once (t > 1), then one token per step (t = 1): keys and values of earlier
        positions come from the cache, so a step costs O(t), not O(prefix)."""
        if tokens.shape[0] != state.batch_size:
            raise ValueError(f"decode_step got {tokens.shape[0]} rows, the state holds {state.batch_size}")
        self.embed.check_ids(tokens)
        t = tokens.shape[1]
        x = self.embed(tokens, offset=state.offset)
        # several new positions at once: each sees the cache and the new ones up to itself
        self_mask = causal_mask(t, tokens.device, offset=state.offset) if t > 1 else None
        x, attention = self.decoder(x, self_mask, caches=state.layers, need_weights=need_weights)
        state.offset += t
        logits = self.output(x)
        return (logits, attention) if need_weights else logits

    # ------------------------------------------------------------------ generation
    @torch.no_grad()
    def generate(
        self,
        prompt_ids: Sequence[int] | torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        generator: torch.Generator | None = None,
        stop_at_eos: bool = True,
        suppress: Sequence[int] = (),
    ) -> Iterator[int]:
        """Sample a continuation of one prompt, yielding each new token id as soon as it is chosen (streaming).

        prompt_ids: token ids, a list or a 1-D tensor; empty → start from ``config.bos_id``.
        temperature ≤ 0 → greedy (argmax, ``generator`` unused); otherwise softmax(logits / temperature),
        restricted to the ``top_k`` most likely tokens and/or the smallest set of mass ≥ ``top_p``
        (``rosetta.decode.sample_next``). Same ``generator`` seed → same tokens.
        Stops after ``max_new_tokens`` tokens, or at ``config.eos_id`` (not yielded) if ``stop_at_eos``.
        ``suppress``: token ids never produced (logit −∞), e.g. <pad> and <s> for a model trained on plain text.

        Context: the model sees at most ``config.max_len`` tokens. A longer prompt keeps its last max_len
        tokens (with a warning); once the sequence outgrows the context, each step re-reads the last max_len
        tokens from scratch (a sliding window: the cache is recomputed, positions start again at 0).

        Runs without gradients; call ``model.eval()`` first, as for any inference (dropout otherwise).
        """
        prompt = torch.as_tensor(prompt_ids, dtype=torch.long)
        if prompt.dim() != 1:
            raise ValueError(f"generate takes one prompt (a list or 1-D tensor of ids), not {tuple(prompt.shape)}")
        ids = prompt.tolist()
        window = self.config.max_len
        if not ids:
            ids = [self.config.bos_id]
        if len(ids) > window:
            warnings.warn(f"prompt of {len(ids)} tokens is longer than the model's context (max_len={window}); "
                          f"keeping the last {window} tokens", stacklevel=2)
            ids = ids[-window:]
        device = self.output.weight.device
        state = self.start_decoding(1)
        logits = self.decode_step(torch.tensor([ids], device=device), state)[:, -1]  # (1, V)
        for step in range(max_new_tokens):
            if step:
                if state.offset < window:  # room left: one cached step
                    logits = self.decode_step(torch.tensor([ids[-1:]], device=device), state)[:, -1]
                else:  # context full: slide the window, rebuild the cache from it
                    state = self.start_decoding(1)
                    logits = self.decode_step(torch.tensor([ids], device=device), state)[:, -1]
            if suppress:
                logits[:, list(suppress)] = -float("inf")
            token = int(decode.sample_next(logits, temperature, top_k, top_p, generator)[0])
            if stop_at_eos and token == self.config.eos_id:
                return
            yield token
            ids = (ids + [token])[-window:]
