"""The encoder–decoder Transformer of "Attention Is All You Need", assembled from ``rosetta.blocks``.

    src ids (B, S) ─ Embeddings ─ Encoder (N × EncoderLayer) ─────────────── memory (B, S, D)
                                                                                   │
    tgt ids (B, T) ─ Embeddings ─ Decoder (N × DecoderLayer, masked, cross-attn) ─ Linear ─ logits (B, T, V)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from rosetta.attention import causal_mask, check_mask, padding_mask
from rosetta.blocks import DecoderLayer, Embeddings, EncoderLayer, LayerCache, make_norm
from rosetta.config import ModelConfig

Attention = dict[str, list[torch.Tensor]]


class LayerStack(nn.Module):
    """N layers in sequence, plus a final norm when the layers are Pre-LN (their output is not normalised)."""

    def __init__(self, config: ModelConfig, n_layers: int, layer: type[nn.Module]):
        super().__init__()
        self.layers = nn.ModuleList(layer(config) for _ in range(n_layers))
        self.final_norm = make_norm(config) if config.norm_first else None

    def forward(
        self,
        x: torch.Tensor,
        self_mask: torch.Tensor | None = None,
        memory: torch.Tensor | None = None,
        memory_mask: torch.Tensor | None = None,
        caches: list[LayerCache] | None = None,
        need_weights: bool = False,
    ) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
        """x: (B, T, D) → (B, T, D), and per layer a dict of attention weights (empty unless asked)."""
        attention = []
        for i, layer in enumerate(self.layers):
            x, weights = layer(x, self_mask, memory, memory_mask, caches[i] if caches else None, need_weights)
            attention.append(weights)
        if self.final_norm is not None:
            x = self.final_norm(x)
        return x, attention


class Encoder(LayerStack):
    """The encoder stack: N × (self-attention, feed-forward)."""

    def __init__(self, config: ModelConfig):
        super().__init__(config, config.n_encoder_layers, EncoderLayer)


class Decoder(LayerStack):
    """The decoder stack: N × (masked self-attention, cross-attention, feed-forward)."""

    def __init__(self, config: ModelConfig):
        super().__init__(config, config.n_decoder_layers, DecoderLayer)


@dataclass
class DecoderState:
    """What incremental decoding carries from step to step: per-layer caches, source mask, position."""

    memory_mask: torch.Tensor  # (B, 1, 1, S)
    layers: list[LayerCache] = field(default_factory=list)
    offset: int = 0  # number of target positions already decoded

    def reorder(self, index: torch.Tensor) -> None:
        """Keep the batch rows ``index`` (B',) — beam search re-ranking its hypotheses."""
        self.memory_mask = self.memory_mask.index_select(0, index)
        for layer in self.layers:
            layer.reorder(index)


def as_key_mask(
    mask: torch.Tensor | None, ids: torch.Tensor, pad_id: int, n_heads: int | None = None
) -> torch.Tensor:
    """An explicit (B, S) or (B|1, H|1, Tq|1, S) mask, or the padding mask derived from ``ids``."""
    if mask is None:
        return padding_mask(ids, pad_id)
    if mask.dim() == 2:
        mask = mask[:, None, None, :]
    # Any other rank is rejected by check_mask with a ValueError (not an IndexError on mask.shape).
    heads, tq = (mask.shape[1], mask.shape[2]) if mask.dim() == 4 else (1, 1)
    check_mask(mask, ids.shape[0], n_heads or heads, tq, ids.shape[1])
    return mask


def init_weights(model: nn.Module, config: ModelConfig) -> None:
    """Linear weights: Xavier uniform (as the paper's reference code and torch.nn.Transformer), biases 0.
    Token embeddings: N(0, d_model^-½), so that after the √d_model scale they have unit variance (and a
    tied output projection starts with small logits). With ``init_std`` (GPT/BERT style) every matrix is
    N(0, init_std²) instead."""
    for module in model.modules():
        if isinstance(module, nn.Linear):
            if config.init_std is not None:
                nn.init.normal_(module.weight, std=config.init_std)
            else:
                nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            std = config.init_std if config.init_std is not None else config.d_model**-0.5
            nn.init.normal_(module.weight, std=std)


class Transformer(nn.Module):
    """Encoder–decoder Transformer.

    ``forward(src, tgt_in)`` is teacher forcing: src (B, S) and tgt_in (B, T) token ids → logits (B, T, V),
    position t predicting tgt token t+1. ``encode`` + ``start_decoding`` + ``decode_step`` decode
    incrementally with key/value caches.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.src_embed = Embeddings(config.src_vocab_size, config)
        shared = self.src_embed.token if config.share_embeddings else None
        self.tgt_embed = Embeddings(config.tgt_vocab_size, config, token=shared)
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.output = nn.Linear(config.d_model, config.tgt_vocab_size, bias=False)
        init_weights(self, config)
        if config.tie_output:
            self.output.weight = self.tgt_embed.token.weight

    def num_parameters(self, trainable_only: bool = False) -> int:
        """Parameter count; shared (tied) tensors are counted once."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def encode(
        self, src: torch.Tensor, src_mask: torch.Tensor | None = None, need_weights: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """src (B, S) → memory (B, S, D), its key mask (B, 1, 1, S) and per-layer weights (B, H, S, S)."""
        self.src_embed.check_ids(src)
        src_mask = as_key_mask(src_mask, src, self.config.pad_id, self.config.n_heads)
        memory, attention = self.encoder(self.src_embed(src), src_mask, need_weights=need_weights)
        return memory, src_mask, [a["self"] for a in attention if "self" in a]

    def decode(
        self,
        tgt_in: torch.Tensor,
        memory: torch.Tensor,
        memory_mask: torch.Tensor,
        tgt_mask: torch.Tensor | None = None,
        need_weights: bool = False,
    ) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
        """Teacher-forced decoder: tgt_in (B, T) → logits (B, T, V). Default mask: causal ∧ padding."""
        self.tgt_embed.check_ids(tgt_in)
        if tgt_mask is None:
            tgt_mask = causal_mask(tgt_in.shape[1], tgt_in.device) & padding_mask(tgt_in, self.config.pad_id)
        else:
            check_mask(tgt_mask, tgt_in.shape[0], self.config.n_heads, tgt_in.shape[1], tgt_in.shape[1])
        x, attention = self.decoder(self.tgt_embed(tgt_in), tgt_mask, memory, memory_mask,
                                    need_weights=need_weights)
        return self.output(x), attention

    def forward(
        self,
        src: torch.Tensor,
        tgt_in: torch.Tensor,
        src_mask: torch.Tensor | None = None,
        tgt_mask: torch.Tensor | None = None,
        return_attention: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, Attention]:
        """Logits (B, T, V); with ``return_attention`` also {"encoder", "decoder", "cross"} → per-layer
        lists of weights (B, H, Tq, Tk)."""
        memory, memory_mask, enc_attention = self.encode(src, src_mask, need_weights=return_attention)
        logits, dec_attention = self.decode(tgt_in, memory, memory_mask, tgt_mask, need_weights=return_attention)
        if not return_attention:
            return logits
        return logits, {
            "encoder": enc_attention,
            "decoder": [a["self"] for a in dec_attention],
            "cross": [a["cross"] for a in dec_attention],
        }

    def start_decoding(self, memory: torch.Tensor, memory_mask: torch.Tensor) -> DecoderState:
        """Fresh caches for incremental decoding; cross-attention keys/values are computed here, once."""
        state = DecoderState(memory_mask=memory_mask)
        for layer in self.decoder.layers:
            cache = LayerCache()
            layer.cross_attn.precompute_kv(memory, cache.cross_attn)
            state.layers.append(cache)
        return state

    def decode_step(
        self, tokens: torch.Tensor, state: DecoderState, need_weights: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
        """Feed the next target tokens (B, t) (usually t = 1) → logits (B, t, V); ``state`` advances by t.

        Keys and values of earlier steps come from the cache, so a step costs O(t), not O(prefix)."""
        t = tokens.shape[1]
        x = self.tgt_embed(tokens, offset=state.offset)
        # several new positions at once: each sees the cache and the new ones up to itself
        self_mask = causal_mask(t, tokens.device, offset=state.offset) if t > 1 else None
        x, attention = self.decoder(x, self_mask, None, state.memory_mask, state.layers, need_weights)
        state.offset += t
        logits = self.output(x)
        return (logits, attention) if need_weights else logits
