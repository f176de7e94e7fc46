"""What every arrangement shares: a stack of layers, the incremental decoding state and step, initialisation.

    LayerStack    N × TransformerLayer, then a final norm for Pre-LN (encoder, decoder, GPT, BERT stacks); with
                  T5's relative positions, the stack's one position-bias table, shared by its layers
    DecoderState  per-layer key/value caches + position offset, reordered by the searches
    decode_step   embed the next tokens at their positions → the stack with caches → output logits; the one
                  incremental step of the encoder–decoder and of the language model
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from rosetta.nn.attention import MultiHeadAttention, causal_mask
from rosetta.nn.blocks import Embeddings, LayerCache, make_norm
from rosetta.nn.config import ModelConfig
from rosetta.nn.positional import RelativePositionBias


class LayerStack(nn.Module):
    """N layers in sequence, plus a final norm when the layers are Pre-LN (their output is not normalised).

    With ``positional="relative"`` (T5) the stack owns one ``RelativePositionBias``, computed once per call
    and added to every layer's self-attention logits; ``causal`` stacks (decoder, GPT) bucket the offsets
    one-sided, the others (encoder) both ways. A pruned model's layers may differ in head count
    (``ModelConfig.heads_per_layer``, read under the stack's name: "decoder" when causal, else "encoder").
    """

    def __init__(self, config: ModelConfig, n_layers: int, layer: type[nn.Module], causal: bool = False):
        super().__init__()
        name = "decoder" if causal else "encoder"
        self.layers = nn.ModuleList(layer(config, stack=name, index=i) for i in range(n_layers))
        self.final_norm = make_norm(config) if config.norm_first else None
        self.relative_bias = None
        if config.positional == "relative":
            self.relative_bias = RelativePositionBias(config.n_heads, config.relative_buckets,
                                                      config.relative_max_distance, bidirectional=not causal)

    def forward(
        self,
        x: torch.Tensor,
        self_mask: torch.Tensor | None = None,
        memory: torch.Tensor | None = None,
        memory_mask: torch.Tensor | None = None,
        caches: list[LayerCache] | None = None,
        need_weights: bool | str = False,
        head_mask: list[dict[str, torch.Tensor]] | None = None,
    ) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
        """x: (B, T, D) → (B, T, D), and per layer a dict of attention weights (empty unless asked:
        ``need_weights`` True for every layer, "last" for the last layer only — a copy model's step reads only
        that one, and the other layers keep the fused kernel).
        head_mask: per layer {"self": (H,), "cross": (H,)} (see ``TransformerLayer``)."""
        bias = None
        if self.relative_bias is not None:  # queries follow the cached positions; keys are cache + new
            offset = caches[0].self_attn.length if caches else 0
            bias = self.relative_bias(x.shape[1], offset + x.shape[1], offset)  # (1, H, T, offset + T)
        attention, last = [], len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            weights_here = need_weights is True or (need_weights == "last" and i == last)
            x, weights = layer(x, self_mask, memory, memory_mask, caches[i] if caches else None, weights_here, bias,
                               head_mask[i] if head_mask else None)
            attention.append(weights)
        if self.final_norm is not None:
            x = self.final_norm(x)
        return x, attention


@dataclass
class DecoderState:
    """What incremental decoding carries from step to step: per-layer key/value caches, the number of
    positions already fed, the batch size (rows fed per step), and (encoder–decoder only) the source's key
    mask (B, 1, 1, S), or None when it hides nothing (no source padded). Beam search feeds B·W rows against B
    sources (``select_beams``)."""

    layers: list[LayerCache] = field(default_factory=list)
    offset: int = 0
    batch_size: int = 1
    memory_mask: torch.Tensor | None = None
    src_ids: torch.Tensor | None = None  # (B, S), one row per sentence: what a copy model copies from

    def reorder(self, index: torch.Tensor) -> None:
        """Keep the batch rows ``index`` (B',) when every row is its own sentence (greedy search dropping
        finished rows, the language model): ``select_beams`` with the same index on both sides. The state
        reorders its own caches: search code never reaches into them."""
        self.select_beams(index, index)

    def select_beams(self, rows: torch.Tensor, sentences: torch.Tensor | None = None) -> None:
        """Beam search's reorder: the self-attention caches follow the surviving hypotheses ``rows``
        (Bₐ'·W',) — flat rows of the current batch, sentence-major — and, when some sentences finished, the
        source side keeps the ``sentences`` (Bₐ',) still decoding (None: all of them).

        The source side (cross-attention keys/values, memory mask) stays one row per sentence however many
        hypotheses a sentence has: its W beams share the source, and cross-attention groups their queries
        (``MultiHeadAttention``), so a third or more of the cache is never copied W times nor reordered."""
        for layer in self.layers:
            layer.self_attn.reorder(rows)
        if sentences is not None:
            if self.memory_mask is not None:
                self.memory_mask = self.memory_mask.index_select(0, sentences)
            if self.src_ids is not None:
                self.src_ids = self.src_ids.index_select(0, sentences)
            for layer in self.layers:
                layer.cross_attn.reorder(sentences)
        self.batch_size = rows.numel()


def init_weights(model: nn.Module, config: ModelConfig) -> None:
    """Linear weights: Xavier uniform (as the paper's reference code and torch.nn.Transformer), biases 0.
    Embedding tables: N(0, d_model^-½) — token vectors then have unit variance after the √d_model scale (and a
    tied output projection starts with small logits). With ``init_std`` (GPT/BERT style) every matrix is
    N(0, init_std²) instead. Unscaled attention (``scale_attention=False``, T5) gets the 1/√d_k here instead:
    W^Q is multiplied by d_k^-½, so the logits start as large as scaled attention's. Token embeddings that
    are not scaled by √d_model (``scale_embeddings=False`` without ``init_std``: T5) are N(0, 1) instead."""
    d = config.d_model
    for module in model.modules():
        if isinstance(module, nn.Linear):
            if config.init_std is not None:
                nn.init.normal_(module.weight, std=config.init_std)
            else:
                nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=config.init_std if config.init_std is not None else d**-0.5)
    if config.init_std is None and not config.scale_embeddings:
        # No √d_model scale on the way in (T5): the token vectors themselves get unit variance, as T5 initialises
        # them; a tied output layer then reads them with the decoder output × d_model^-½ (scale_decoder_output).
        for module in model.modules():
            if isinstance(module, Embeddings):
                nn.init.normal_(module.token.weight, std=1.0)
    if not config.scale_attention:
        with torch.no_grad():
            for attn in (m for m in model.modules() if isinstance(m, MultiHeadAttention)):
                w_q = attn.q_proj.weight if attn.cross else attn.qkv_proj.weight[: attn.n_heads * attn.d_k]
                w_q.mul_(attn.d_k**-0.5)


def num_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Parameter count; shared (tied) tensors are counted once (``parameters()`` yields each tensor once).
    Every model class uses it as its ``num_parameters`` method."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def decode_step(
    embed: Embeddings,
    stack: LayerStack,
    output: Callable[[torch.Tensor], torch.Tensor],
    tokens: torch.Tensor,
    state: DecoderState,
    need_weights: bool | str = False,
) -> torch.Tensor | tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
    """Feed the next tokens (B, t) → logits (B, t, V); ``state`` advances by t. ``output`` maps the stack's
    (B, t, D) to logits (the output Linear, or a model's method that rescales first).

    The first call may feed a whole prompt (t > 1), later ones one token (t = 1): keys and values of earlier
    positions come from the cache, so a step costs O(t · prefix), not O(prefix²)."""
    if tokens.shape[0] != state.batch_size:
        raise ValueError(f"decode_step got {tokens.shape[0]} rows, the state holds {state.batch_size}")
    if state.offset == 0:  # the caller's ids; later steps feed the search's own choices (checking costs 2 syncs)
        embed.check_ids(tokens)
    t = tokens.shape[1]
    x = embed(tokens, offset=state.offset)
    # several new positions at once: each sees the cache and the new ones up to itself
    self_mask = causal_mask(t, tokens.device, offset=state.offset) if t > 1 else None
    x, attention = stack(x, self_mask, None, state.memory_mask, state.layers, need_weights)
    state.offset += t
    logits = output(x)
    return (logits, attention) if need_weights else logits
