"""The encoder–decoder Transformer of "Attention Is All You Need", assembled from ``rosetta.nn.blocks``.

    src ids (B, S) ─ Embeddings ─ Encoder (N × EncoderLayer) ─────────────── memory (B, S, D)
                                                                                   │
    tgt ids (B, T) ─ Embeddings ─ Decoder (N × DecoderLayer, masked, cross-attn) ─ Linear ─ logits (B, T, V)

T5 (``rosetta.models.t5``) is this model with flags: relative position bias, unscaled attention, RMSNorm Pre-LN,
no biases, one shared embedding, and (tied) the decoder output × d_model^-½ before the Linear.

``copy_attention`` (the pointer-generator, ``rosetta.nn.copy``): the output mixes the Linear's distribution with
the last decoder layer's cross-attention over the source ids, and is returned as log-probabilities.
"""

from __future__ import annotations

import torch
from torch import nn

from rosetta.nn.attention import causal_mask, check_mask, padding_mask
from rosetta.nn.blocks import DecoderLayer, Embeddings, EncoderLayer, LayerCache
from rosetta.nn.config import ModelConfig
from rosetta.nn.copy import CopyGate, copy_distribution
from rosetta.nn.stack import DecoderState, LayerStack, decode_step, init_weights, num_parameters

Attention = dict[str, list[torch.Tensor]]
HeadMask = dict[str, list[torch.Tensor]]  # "encoder" / "decoder" / "cross" → per layer ξ (H,), as Attention's keys


class Encoder(LayerStack):
    """The encoder stack: N × (self-attention, feed-forward)."""

    def __init__(self, config: ModelConfig):
        super().__init__(config, config.n_encoder_layers, EncoderLayer)


class Decoder(LayerStack):
    """The decoder stack: N × (masked self-attention, cross-attention, feed-forward)."""

    def __init__(self, config: ModelConfig):
        super().__init__(config, config.n_decoder_layers, DecoderLayer, causal=True)


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


class Transformer(nn.Module):
    """Encoder–decoder Transformer.

    ``forward(src, tgt_in)`` is teacher forcing: src (B, S) and tgt_in (B, T) token ids → logits (B, T, V),
    position t predicting tgt token t+1. ``encode`` + ``start_decoding`` + ``decode_step`` decode
    incrementally with key/value caches.

    T5 starts the decoder with its pad token (``bos_id == pad_id``): the first target position is then a real
    token, not padding, for the decoder's padding mask.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.src_embed = Embeddings(config.src_vocab_size, config)
        shared = self.src_embed.token if config.share_embeddings else None
        self.tgt_embed = Embeddings(config.tgt_vocab_size, config, token=shared)
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.output = nn.Linear(config.d_model, config.tgt_vocab_size, bias=config.output_bias)
        self.output_scale = config.d_model**-0.5 if config.scale_decoder_output else None
        init_weights(self, config)
        if config.tie_output:
            self.output.weight = self.tgt_embed.token.weight
        # made after init_weights: the gate starts at its own bias (mostly generating), not at Xavier's
        self.copy_gate = CopyGate(config.d_model) if config.copy_attention else None

    num_parameters = num_parameters

    def features(self, hidden: torch.Tensor) -> torch.Tensor:
        """Decoder output (B, T, D) → the output layer's input: itself, or (T5, ``scale_decoder_output``)
        hidden · d_model^-½."""
        return hidden if self.output_scale is None else hidden * self.output_scale

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Decoder output (B, T, D) → logits (B, T, V) = features(hidden) W_outᵀ (+ b_out with ``output_bias``)."""
        return self.output(self.features(hidden))

    def copy_output(self, hidden: torch.Tensor, attention: list[dict[str, torch.Tensor]],
                    src_ids: torch.Tensor) -> torch.Tensor:
        """The pointer-generator's output: decoder output (B·W, T, D), the decoder's per-layer attention and
        the source ids (B, S), W hypotheses per source (beam search; W = 1 otherwise) → log P(w) (B·W, T, V)."""
        cross = attention[-1]["cross"].mean(dim=1)  # (B·W, T, S): the last layer's heads, averaged
        src_ids = src_ids.repeat_interleave(hidden.shape[0] // src_ids.shape[0], dim=0)  # sentence-major rows
        return copy_distribution(self.logits(hidden), self.copy_gate(hidden), cross, src_ids)

    def encode(
        self, src: torch.Tensor, src_mask: torch.Tensor | None = None, need_weights: bool = False,
        head_mask: HeadMask | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """src (B, S) → memory (B, S, D), its key mask (B, 1, 1, S) and per-layer weights (B, H, S, S)."""
        self.src_embed.check_ids(src)
        src_mask = as_key_mask(src_mask, src, self.config.pad_id, self.config.n_heads)
        masks = [{"self": m} for m in head_mask["encoder"]] if head_mask and "encoder" in head_mask else None
        memory, attention = self.encoder(self.src_embed(src), src_mask, need_weights=need_weights, head_mask=masks)
        return memory, src_mask, [a["self"] for a in attention if "self" in a]

    def decode(
        self,
        tgt_in: torch.Tensor,
        memory: torch.Tensor,
        memory_mask: torch.Tensor,
        tgt_mask: torch.Tensor | None = None,
        need_weights: bool = False,
        head_mask: HeadMask | None = None,
        features_only: bool = False,
        src_ids: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
        """Teacher-forced decoder: tgt_in (B, T) → logits (B, T, V) (``features_only``: what the output layer
        would take, (B, T, D)). Default mask: causal ∧ padding. A copy model needs the source ids (B, S) and
        returns log-probabilities."""
        self.tgt_embed.check_ids(tgt_in)
        copying = self.copy_gate is not None
        if copying and (src_ids is None or features_only):
            raise ValueError("a copy_attention model needs the source ids to score, and its output is not one "
                             "Linear of features (features_only)")
        if tgt_mask is None:
            keys = padding_mask(tgt_in, self.config.pad_id)  # (B, 1, 1, T)
            if self.config.bos_id == self.config.pad_id:  # T5: the start token is the pad id, yet real
                keys[..., 0] = True
            tgt_mask = causal_mask(tgt_in.shape[1], tgt_in.device) & keys
        else:
            check_mask(tgt_mask, tgt_in.shape[0], self.config.n_heads, tgt_in.shape[1], tgt_in.shape[1])
        masks = None
        if head_mask:  # per layer {"self": ξ, "cross": ξ}; a kind left out is unmasked
            masks = [{kind: head_mask[name][i] for kind, name in (("self", "decoder"), ("cross", "cross"))
                      if name in head_mask} for i in range(self.config.n_decoder_layers)]
        x, attention = self.decoder(self.tgt_embed(tgt_in), tgt_mask, memory, memory_mask,
                                    need_weights=need_weights or ("last" if copying else False), head_mask=masks)
        if copying:
            return self.copy_output(x, attention, src_ids), attention
        return (self.features(x) if features_only else self.logits(x)), attention

    def forward(
        self,
        src: torch.Tensor,
        tgt_in: torch.Tensor,
        src_mask: torch.Tensor | None = None,
        tgt_mask: torch.Tensor | None = None,
        return_attention: bool = False,
        head_mask: HeadMask | None = None,
        features_only: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, Attention]:
        """Logits (B, T, V); with ``return_attention`` also {"encoder", "decoder", "cross"} → per-layer
        lists of weights (B, H, Tq, Tk). head_mask: the same keys → per-layer ξ (H,), each head's output
        multiplied by its ξ (``MultiHeadAttention``; ``rosetta.compress.heads`` uses it). ``features_only``:
        the output layer's input (B, T, D) instead of the logits, for a loss fused with that layer
        (``rosetta.train.losses.linear_label_smoothed_nll``)."""
        memory, memory_mask, enc_attention = self.encode(src, src_mask, return_attention, head_mask)
        logits, dec_attention = self.decode(tgt_in, memory, memory_mask, tgt_mask, return_attention, head_mask,
                                            features_only, src_ids=src)
        if not return_attention:
            return logits
        return logits, {
            "encoder": enc_attention,
            "decoder": [a["self"] for a in dec_attention],
            "cross": [a["cross"] for a in dec_attention],
        }

    def start_decoding(self, memory: torch.Tensor, memory_mask: torch.Tensor,
                       src_ids: torch.Tensor | None = None) -> DecoderState:
        """Fresh caches for incremental decoding; cross-attention keys/values are computed here, once. The
        source ids (B, S) are kept for a copy model (the others ignore them). A mask that hides nothing (no source
        padded: one sentence, or sentences of one length) is dropped: every step's cross-attention then skips
        applying it (at one sentence 2–4 % of an opus-mt-sized step)."""
        if self.copy_gate is not None and src_ids is None:
            raise ValueError("a copy_attention model decodes with its source ids: start_decoding(memory, mask, src)")
        if memory_mask is not None and bool(memory_mask.all()):
            memory_mask = None
        state = DecoderState(memory_mask=memory_mask, batch_size=memory.shape[0],
                             src_ids=src_ids if self.copy_gate is not None else None)
        for layer in self.decoder.layers:
            cache = LayerCache()
            layer.cross_attn.precompute_kv(memory, cache.cross_attn)
            state.layers.append(cache)
        return state

    def decode_step(
        self, tokens: torch.Tensor, state: DecoderState, need_weights: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
        """Feed the next target tokens (B, t) (usually t = 1) → logits (B, t, V); ``state`` advances by t.

        Keys and values of earlier steps come from the cache, so a step costs O(t), not O(prefix). A copy model
        returns log-probabilities (its step needs the last layer's cross-attention weights: that layer runs the
        explicit formula)."""
        if self.copy_gate is not None:
            hidden = []
            _, attention = decode_step(self.tgt_embed, self.decoder, hidden.append, tokens, state,
                                       need_weights or "last")
            log_probs = self.copy_output(hidden[0], attention, state.src_ids)
            return (log_probs, attention) if need_weights else log_probs
        output = self.output if self.output_scale is None else self.logits
        return decode_step(self.tgt_embed, self.decoder, output, tokens, state, need_weights)
