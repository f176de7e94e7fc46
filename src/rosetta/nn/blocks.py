"""Building blocks: embeddings, feed-forward, normalisation, residual sublayers, encoder/decoder layers.

One layer class serves all three model families:

* encoder layer (Transformer encoder, BERT): self-attention → feed-forward
* decoder layer (Transformer decoder): masked self-attention → cross-attention → feed-forward
* decoder-only layer (GPT): masked self-attention → feed-forward (a decoder layer without cross-attention)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rosetta.nn.attention import KVCache, MultiHeadAttention
from rosetta.nn.config import GATED_ACTIVATIONS, ModelConfig
from rosetta.nn.dropout import Dropout
from rosetta.nn.positional import (
    LearnedPositionalEmbedding,
    RotaryEmbedding,
    SinusoidalPositionalEncoding,
    embedding_scale,
)


class RMSNorm(nn.Module):
    """RMSNorm(x) = x / √(mean(x²) + ε) · g  (Zhang & Sennrich, 2019): LayerNorm without centring.

    No mean subtraction and no bias: T5's "T5LayerNorm" (ε = 1e-6) is this formula. The mean of squares and
    the division run in float32 whatever the input's dtype (bf16/fp16 would lose the small ε and overflow
    x²); the result goes back to the input's dtype before the gain g.
    """

    def __init__(self, d_model: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype) * self.weight


def make_norm(config: ModelConfig) -> nn.Module:
    """LayerNorm(x) = (x − μ) / √(σ² + ε) · γ + β (Ba et al., 2016), or RMSNorm, by ``config.norm``."""
    if config.norm == "rmsnorm":
        return RMSNorm(config.d_model, config.norm_eps)
    return nn.LayerNorm(config.d_model, eps=config.norm_eps)


class FeedForward(nn.Module):
    """Position-wise feed-forward network, applied to each position alike (§3.3).

    relu/gelu/silu: FFN(x) = act(x W1 + b1) W2 + b2
    swiglu:    FFN(x) = (SiLU(x W1) ⊙ x W3) W2          (Shazeer, 2020)
    geglu:     FFN(x) = (GELU_tanh(x W1) ⊙ x W3) W2     (Shazeer, 2020; T5 v1.1's "gated-gelu", tanh GELU)
    (B, T, D) → (B, T, D) through a hidden size d_ff. For T5: W1 = wi / wi_0, W3 = wi_1, W2 = wo.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.activation = config.activation
        self.w1 = nn.Linear(config.d_model, config.d_ff, bias=config.bias)
        self.w2 = nn.Linear(config.d_ff, config.d_model, bias=config.bias)
        gated = self.activation in GATED_ACTIVATIONS
        self.w3 = nn.Linear(config.d_model, config.d_ff, bias=config.bias) if gated else None
        self.dropout = Dropout(config.activation_dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.w1(x)
        if self.activation == "relu":
            h = F.relu(h)
        elif self.activation == "gelu":
            h = F.gelu(h)
        elif self.activation == "gelu_tanh":
            h = F.gelu(h, approximate="tanh")
        elif self.activation == "silu":
            h = F.silu(h)
        elif self.activation == "swiglu":
            h = F.silu(h) * self.w3(x)
        else:  # geglu
            h = F.gelu(h, approximate="tanh") * self.w3(x)
        return self.w2(self.dropout(h))


class Embeddings(nn.Module):
    """Token ids (B, T) → vectors (B, T, D): E[x]·√d_model (§3.4) + positions, then dropout.

    With ``positional="rope"`` or ``"none"`` nothing is added here (rotary acts inside attention).
    BERT's layout adds token-type embeddings and a LayerNorm (``type_vocab_size``, ``embedding_norm``); BART's
    encoder and decoder embeddings end with that LayerNorm too. RoBERTa and BART read a learned table from row
    ``position_offset`` on (token t: row t + offset, also when decoding step by step).
    """

    def __init__(self, vocab_size: int, config: ModelConfig, token: nn.Embedding | None = None):
        super().__init__()
        self.vocab_size = vocab_size
        self.token = token if token is not None else nn.Embedding(vocab_size, config.d_model)
        self.scale = embedding_scale(config.d_model) if config.scale_embeddings else 1.0
        self.position: nn.Module | None = None
        if config.positional == "sinusoidal":
            self.position = SinusoidalPositionalEncoding(config.d_model, config.max_len, config.sinusoidal_layout)
        elif config.positional == "learned":
            self.position = LearnedPositionalEmbedding(config.max_len, config.d_model)
        self.token_type = nn.Embedding(config.type_vocab_size, config.d_model) if config.type_vocab_size else None
        self.norm = make_norm(config) if config.embedding_norm else None
        self.dropout = Dropout(config.dropout)
        self.position_offset = config.position_offset  # RoBERTa / BART: the first token's position row

    def check_ids(self, ids: torch.Tensor) -> None:
        """ValueError for ids outside [0, vocab) — an index error on GPU is an opaque device assert."""
        if ids.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"token ids must be an integer tensor, got {ids.dtype}")
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.vocab_size):
            raise ValueError(
                f"token id out of the vocabulary: ids span [{int(ids.min())}, {int(ids.max())}] "
                f"but the vocabulary has {self.vocab_size} entries (0 … {self.vocab_size - 1})"
            )

    def forward(
        self, ids: torch.Tensor, offset: int = 0, token_type_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        x = self.token(ids) * self.scale  # (B, T, D)
        if self.position is not None:
            x = x + self.position(ids.shape[1], offset + self.position_offset)
        if self.token_type is not None:
            # one type only (RoBERTa): a pair's second text is type 0 too, as its tokenizer gives no type ids
            given = token_type_ids is not None and self.token_type.num_embeddings > 1
            x = x + self.token_type(token_type_ids if given else torch.zeros_like(ids))
        if self.norm is not None:
            x = self.norm(x)
        return self.dropout(x)


class LayerCache:
    """Per-layer decoding state: the growing self-attention cache and the fixed cross-attention one."""

    def __init__(self) -> None:
        self.self_attn = KVCache()
        self.cross_attn = KVCache()


class TransformerLayer(nn.Module):
    """Self-attention, optional cross-attention, feed-forward — each a residual sublayer.

    Post-LN (the paper): x = Norm(x + Dropout(Sublayer(x)))
    Pre-LN:              x = x + Dropout(Sublayer(Norm(x)))
    x: (B, T, D); memory: (B, S, D). Returns x and a dict with the attention weights when asked.
    position_bias (1, H, T, Tk), from the stack (T5), is added to the self-attention logits only.
    head_mask {"self": (H,), "cross": (H,)} scales each head's output (``MultiHeadAttention``).
    ``stack`` ("encoder" or "decoder") and ``index`` say where the layer sits, for its head counts
    (``ModelConfig.attention_heads``: n_heads unless the model was pruned).
    """

    def __init__(self, config: ModelConfig, cross_attention: bool, stack: str = "encoder", index: int = 0):
        super().__init__()
        self.norm_first = config.norm_first
        rotary = RotaryEmbedding(config.head_dim_k) if config.positional == "rope" else None
        mha = dict(d_model=config.d_model, d_k=config.head_dim_k, d_v=config.head_dim_v,
                   dropout=config.attention_dropout, bias=config.bias,
                   scale=None if config.scale_attention else 1.0)
        self.self_attn = MultiHeadAttention(**mha, n_heads=config.attention_heads(stack, index), rotary=rotary)
        self.self_attn_norm = make_norm(config)
        self.cross_attn = (MultiHeadAttention(**mha, n_heads=config.attention_heads("cross", index), cross=True)
                           if cross_attention else None)
        self.cross_attn_norm = make_norm(config) if cross_attention else None
        self.feed_forward = FeedForward(config)
        self.feed_forward_norm = make_norm(config)
        self.dropout = Dropout(config.dropout)

    def _residual(self, x: torch.Tensor, norm: nn.Module, sublayer) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Apply one sublayer with its residual connection and norm; pass back attention weights if any."""
        out = sublayer(norm(x) if self.norm_first else x)
        out, weights = out if isinstance(out, tuple) else (out, None)
        x = x + self.dropout(out)
        return (x if self.norm_first else norm(x)), weights

    def forward(
        self,
        x: torch.Tensor,
        self_mask: torch.Tensor | None = None,
        memory: torch.Tensor | None = None,
        memory_mask: torch.Tensor | None = None,
        cache: LayerCache | None = None,
        need_weights: bool = False,
        position_bias: torch.Tensor | None = None,
        head_mask: dict[str, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        attention: dict[str, torch.Tensor] = {}
        head_mask = head_mask or {}
        x, w = self._residual(x, self.self_attn_norm, lambda h: self.self_attn(
            h, mask=self_mask, cache=cache.self_attn if cache else None, need_weights=need_weights,
            position_bias=position_bias, head_mask=head_mask.get("self")))
        if w is not None:
            attention["self"] = w
        if self.cross_attn is not None:
            x, w = self._residual(x, self.cross_attn_norm, lambda h: self.cross_attn(
                h, memory, mask=memory_mask, cache=cache.cross_attn if cache else None,
                need_weights=need_weights, head_mask=head_mask.get("cross")))
            if w is not None:
                attention["cross"] = w
        x, _ = self._residual(x, self.feed_forward_norm, self.feed_forward)
        return x, attention


class EncoderLayer(TransformerLayer):
    """Encoder layer (§3.1): multi-head self-attention, then the feed-forward network."""

    def __init__(self, config: ModelConfig, stack: str = "encoder", index: int = 0):
        super().__init__(config, cross_attention=False, stack=stack, index=index)


class DecoderLayer(TransformerLayer):
    """Decoder layer (§3.1): masked self-attention, cross-attention over the encoder output, feed-forward."""

    def __init__(self, config: ModelConfig, stack: str = "decoder", index: int = 0):
        super().__init__(config, cross_attention=True, stack=stack, index=index)
