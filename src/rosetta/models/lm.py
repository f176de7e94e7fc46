"""Decoder-only language model (GPT): the Transformer's decoder without the encoder and cross-attention.

    ids (B, T) ─ Embeddings ─ N × (masked self-attention, feed-forward) ─ [final norm] ─ Linear ─ logits (B, T, V)

Same blocks as the encoder–decoder (``rosetta.nn.blocks``); only the wiring differs. Position t predicts token
t+1 and, through the causal mask, sees tokens 0 … t only.

Which ``ModelConfig`` fields it reads: the vocabulary is ``tgt_vocab_size`` (the decoder's side; set
``src_vocab_size`` to the same value, see ``gpt_config``), the depth is ``n_decoder_layers``, the context is
``max_len`` tokens. ``n_encoder_layers`` and ``share_embeddings`` are ignored.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rosetta.nn.attention import causal_mask
from rosetta.nn.blocks import Embeddings, EncoderLayer, LayerCache
from rosetta.nn.config import ModelConfig
from rosetta.nn.stack import DecoderState, LayerStack, decode_step, init_weights, num_parameters

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


# The decoding state is the encoder–decoder's, without a source (kept under its old name).
LMState = DecoderState


class LanguageModel(nn.Module):
    """Decoder-only Transformer language model.

    ``forward(ids)`` scores every position at once (training); ``start_decoding`` + ``decode_step`` run it
    incrementally with key/value caches; ``rosetta.decode.generate(model, …)`` samples a continuation.

    Batches are right-padded: the causal mask alone keeps real tokens from seeing the padding after them;
    the logits at padding positions are meaningless (``loss`` ignores them).
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.embed = Embeddings(config.tgt_vocab_size, config)
        # a GPT layer is an encoder layer (self-attention, feed-forward) run under a causal mask
        self.decoder = LayerStack(config, config.n_decoder_layers, EncoderLayer, causal=True)
        self.output = nn.Linear(config.d_model, config.tgt_vocab_size, bias=False)
        init_weights(self, config)
        if config.tie_output:
            self.output.weight = self.embed.token.weight

    @property
    def vocab_size(self) -> int:
        return self.config.tgt_vocab_size

    num_parameters = num_parameters

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
        return decode_step(self.embed, self.decoder, self.output, tokens, state, need_weights)
