"""Attention: the operation every other part of the Transformer is built around.

    Attention(Q, K, V) = softmax(Q Kᵀ / √d_k) V                                  ("Attention Is All You Need", §3.2.1)
    MultiHead(Q, K, V) = Concat(head_1, …, head_h) W^O,  head_i = Attention(Q W_i^Q, K W_i^K, V W_i^V)

Masks are boolean and mean "may attend": ``mask[b, h, i, j]`` is True when query i may look at key j.
Two variants (T5): an additive position bias on the logits, softmax(s · Q Kᵀ + bias) V, and another scale s
than 1/√d_k (T5 uses s = 1 and folds 1/√d_k into the initialisation of W^Q).
Shapes: B batch, H heads, Tq query length, Tk key length, d_k query/key size, d_v value size.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from rosetta.nn.dropout import dropout
from rosetta.nn.positional import RotaryEmbedding


def causal_mask(size: int, device: torch.device | None = None, offset: int = 0) -> torch.Tensor:
    """(1, 1, T, offset + T) mask: new position i may attend to the ``offset`` cached positions and to the new
    positions 0 … i only (offset 0: the plain lower-triangular (1, 1, T, T) mask)."""
    mask = torch.ones(size, offset + size, dtype=torch.bool, device=device).tril(diagonal=offset)
    return mask.view(1, 1, size, offset + size)


def padding_mask(ids: torch.Tensor, pad_id: int) -> torch.Tensor:
    """(B, 1, 1, T) mask from token ids (B, T): True at real tokens, False at padding."""
    return (ids != pad_id)[:, None, None, :]


def check_mask(mask: torch.Tensor, batch: int, heads: int, tq: int, tk: int) -> None:
    """Raise ValueError unless ``mask`` is boolean and broadcasts to (B, H, Tq, Tk) dimension by dimension."""
    if mask.dtype != torch.bool:
        raise ValueError(f"attention mask must be boolean (True = may attend), got dtype {mask.dtype}")
    want = (batch, heads, tq, tk)
    if mask.dim() != 4 or any(m not in (1, w) for m, w in zip(mask.shape, want)):
        raise ValueError(
            f"attention mask of shape {tuple(mask.shape)} does not fit (B|1, H|1, Tq|1, Tk) = "
            f"({batch}|1, {heads}|1, {tq}|1, {tk}); build it with padding_mask() or causal_mask()"
        )


def scaled_dot_product_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    need_weights: bool = False,
    position_bias: torch.Tensor | None = None,
    scale: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """softmax(Q Kᵀ / √d_k) V, or with a position bias and a scale s: softmax(s · Q Kᵀ + bias) V.

    q: (B, H, Tq, d_k), k: (B, H, Tk, d_k), v: (B, H, Tk, d_v), mask: bool broadcastable to
    (B, H, Tq, Tk), True = may attend. position_bias: float broadcastable to (B, H, Tq, Tk), added to the
    logits (T5's relative position bias, (1, H, Tq, Tk)). scale: s (None = 1/√d_k; T5: 1.0). Returns the
    output (B, H, Tq, d_v) and, when ``need_weights``, the attention weights (B, H, Tq, Tk) (else None). A
    query whose keys are all masked gets a zero output and zero weights instead of NaN.

    With ``need_weights=False`` the fused kernel of PyTorch runs (FlashAttention or memory-efficient
    attention on a GPU; a position bias goes in as its float ``attn_mask``, the boolean mask folded in as
    the dtype's most negative number); with ``need_weights=True`` the explicit formula runs, so the weights
    exist — and also when training on a CPU where it is the faster of the two (``explicit_trains_faster``).
    """
    if mask is not None:
        check_mask(mask, q.shape[0], q.shape[1], q.shape[2], k.shape[2])
    if not need_weights and not explicit_trains_faster(q, k):
        attn_mask = mask
        if position_bias is not None:
            attn_mask = position_bias.to(q.dtype)
            if mask is not None:  # (B|1, H, Tq, Tk): the bias where attending is allowed, "−∞" elsewhere
                attn_mask = attn_mask.masked_fill(~mask, torch.finfo(q.dtype).min)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, scale=scale)
        if mask is not None:
            # Kernels disagree on fully masked rows (NaN or mean of V); the definition here is zero.
            out = out.masked_fill(~mask.any(dim=-1, keepdim=True), 0.0)
        return out, None

    scores = q @ k.transpose(-2, -1)  # (B, H, Tq, Tk)
    scores = scores / math.sqrt(q.shape[-1]) if scale is None else scores * scale
    if position_bias is not None:
        scores = scores + position_bias
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    low_precision = scores.dtype in (torch.bfloat16, torch.float16)
    weights = torch.softmax(scores, dim=-1, dtype=torch.float32 if low_precision else None)  # bf16: fp32 sums
    weights = weights.to(v.dtype)  # bf16: one conversion, then the passes below move half the bytes
    if mask is not None:  # masked keys are exactly 0 already (e^−∞); a query with no key at all gave NaN: 0
        has_key = mask.any(dim=-1, keepdim=True)
        if not bool(has_key.all()):
            weights = weights.masked_fill(~has_key, 0.0)
    attended = dropout(weights, dropout_p) if dropout_p > 0 else weights
    return attended @ v, (weights if need_weights else None)


# The most keys at which fp32 training on a CPU takes the explicit formula (``explicit_trains_faster``).
EXPLICIT_TRAINING_MAX_KEYS = 64


def explicit_trains_faster(q: torch.Tensor, k: torch.Tensor) -> bool:
    """Whether softmax(Q Kᵀ / √d_k) V as plain operations trains faster than PyTorch's fused (flash) kernel:
    on a CPU, with gradients, in bf16 always, in fp32 over at most ``EXPLICIT_TRAINING_MAX_KEYS`` keys.

    The fused CPU kernel's backward pays a fixed cost per (batch, head, block) that dwarfs short sequences'
    arithmetic. Measured, forward + backward of one call, d_k 64, 2 threads (median ms, fused → explicit):
    bf16 (AMD, AVX-512 BF16) B=160, T=26: 31 → 4.6; fp32 (AVX2) B=160 × 4 heads, T=26: 30.1 → 20.9, causal T=27:
    33.2 → 19.0, B=64 × 4, T=48: 26.6 → 15.6, causal T=64: 38.0 → 27.6; from 96 keys on the fused kernel is as
    fast or faster (T=96: 30.0 both, T=128: 42.6 → 50.2, causal T=512: 80.4 → 130.7) and holds no T × T weights
    for the backward. Decoding (no gradients) keeps the fused kernel: the explicit formula won one call in
    isolation but no whole decoding run (RESULTS.md)."""
    if q.device.type != "cpu" or not (q.requires_grad and torch.is_grad_enabled()):
        return False
    return q.dtype == torch.bfloat16 or q.dtype == torch.float32 and k.shape[2] <= EXPLICIT_TRAINING_MAX_KEYS


class KVCache:
    """Keys and values of one attention layer, kept between decoding steps.

    Self-attention appends one step at a time into a preallocated buffer (B, H, capacity, d) that doubles
    when full, so a step copies only the new token. Cross-attention stores the encoder memory's keys and
    values once per source (``static``). ``reorder`` follows beam search as hypotheses are re-ranked: it
    gathers the filled positions only, into a second buffer kept for that (no allocation per step; beam
    search reorders every layer's cache at every step, and fresh multi-megabyte buffers each time cost more
    than the copy itself).
    """

    def __init__(self) -> None:
        self.k: torch.Tensor | None = None
        self.v: torch.Tensor | None = None
        self.length = 0
        self.static = False
        self._spare: tuple[torch.Tensor, torch.Tensor] | None = None  # reorder's target, same shape as k, v

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Add keys (B, H, t, d_k) and values (B, H, t, d_v); return everything so far."""
        end = self.length + k.shape[2]
        if self.k is None or end > self.k.shape[2]:
            self._grow(k, v, max(end, 2 * self.length, 16))
        self.k[:, :, self.length : end] = k
        self.v[:, :, self.length : end] = v
        self.length = end
        return self.k[:, :, :end], self.v[:, :, :end]

    def _grow(self, k: torch.Tensor, v: torch.Tensor, capacity: int) -> None:
        b, h = k.shape[:2]
        new_k = k.new_empty(b, h, capacity, k.shape[3])
        new_v = v.new_empty(b, h, capacity, v.shape[3])
        if self.k is not None:
            new_k[:, :, : self.length] = self.k[:, :, : self.length]
            new_v[:, :, : self.length] = self.v[:, :, : self.length]
        self.k, self.v, self._spare = new_k, new_v, None

    def set_static(self, k: torch.Tensor, v: torch.Tensor) -> None:
        """Store cross-attention keys/values computed once from the encoder memory."""
        self.k, self.v, self.length, self.static = k, v, k.shape[2], True

    def get(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.k[:, :, : self.length], self.v[:, :, : self.length]

    def reorder(self, index: torch.Tensor) -> None:
        """Keep batch rows ``index`` (beam search: which hypotheses survive; any order, repeats allowed)."""
        if self.k is None:
            return
        if self.static:  # computed once, never appended to: a plain gather
            self.k, self.v = self.k.index_select(0, index), self.v.index_select(0, index)
            return
        n, length = index.numel(), self.length
        if self._spare is None or self._spare[0].shape[0] != n:
            shape = lambda t: (n, *t.shape[1:])  # noqa: E731
            self._spare = (self.k.new_empty(shape(self.k)), self.v.new_empty(shape(self.v)))
        spare_k, spare_v = self._spare
        torch.index_select(self.k[:, :, :length], 0, index, out=spare_k[:, :, :length])
        torch.index_select(self.v[:, :, :length], 0, index, out=spare_v[:, :, :length])
        self._spare = (self.k, self.v) if self.k.shape[0] == n else None
        self.k, self.v = spare_k, spare_v


def _group_queries(q: torch.Tensor, sources: int, groups: int) -> torch.Tensor:
    """(B·W, H, T, d) queries, row b·W + w of source b → (B, H, W·T, d): each source's queries side by side."""
    if q.shape[0] != sources * groups:
        raise ValueError(f"cross-attention got {q.shape[0]} query rows for a cache of {sources} sources; "
                         "the rows must be W hypotheses per source (reorder the cache with the hypotheses)")
    _, h, t, d = q.shape
    return q.view(sources, groups, h, t, d).transpose(1, 2).reshape(sources, h, groups * t, d)


def _ungroup_queries(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Inverse of ``_group_queries`` for outputs or weights: (B, H, W·T, e) → (B·W, H, T, e)."""
    b, h, wt, e = x.shape
    t = wt // groups
    return x.view(b, h, groups, t, e).transpose(1, 2).reshape(b * groups, h, t, e)


class MultiHeadAttention(nn.Module):
    """Multi-head attention with projections W^Q, W^K, W^V (per head d_k, d_k, d_v) and W^O.

    Self-attention (``cross=False``) uses one fused projection x → [Q; K; V]; cross-attention
    (``cross=True``) projects queries from x and keys/values, fused, from the encoder memory.
    d_k and d_v default to d_model / n_heads and may differ from each other. ``scale`` multiplies the
    logits Q Kᵀ (None = 1/√d_k; T5: 1.0).
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        d_k: int | None = None,
        d_v: int | None = None,
        dropout: float = 0.0,
        bias: bool = True,
        cross: bool = False,
        rotary: RotaryEmbedding | None = None,
        scale: float | None = None,
    ):
        super().__init__()
        if d_k is None or d_v is None:
            if d_model % n_heads:
                raise ValueError(
                    f"d_model={d_model} is not divisible by n_heads={n_heads}; "
                    "choose another head count or give d_k and d_v explicitly"
                )
        self.n_heads = n_heads
        self.d_k = d_k or d_model // n_heads
        self.d_v = d_v or d_model // n_heads
        self.dropout = dropout
        self.cross = cross
        self.rotary = rotary
        self.scale = scale
        q_size, v_size = n_heads * self.d_k, n_heads * self.d_v
        if cross:
            self.q_proj = nn.Linear(d_model, q_size, bias=bias)
            self.kv_proj = nn.Linear(d_model, q_size + v_size, bias=bias)
        else:
            self.qkv_proj = nn.Linear(d_model, 2 * q_size + v_size, bias=bias)
        self.out_proj = nn.Linear(v_size, d_model, bias=bias)

    def _heads(self, x: torch.Tensor, d: int) -> torch.Tensor:
        """(B, T, H·d) → (B, H, T, d)."""
        b, t, _ = x.shape
        return x.view(b, t, self.n_heads, d).transpose(1, 2)

    def _project_kv(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k, v = self.kv_proj(memory).split([self.n_heads * self.d_k, self.n_heads * self.d_v], dim=-1)
        return self._heads(k, self.d_k), self._heads(v, self.d_v)

    def precompute_kv(self, memory: torch.Tensor, cache: KVCache) -> None:
        """Cross-attention: compute keys/values of the memory (B, S, D) once and store them in ``cache``."""
        cache.set_static(*self._project_kv(memory))

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
        need_weights: bool = False,
        position_bias: torch.Tensor | None = None,
        head_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x: (B, T, D) queries' source; memory: (B, S, D) for cross-attention; mask and position_bias
        (1, H, T, Tk) as in ``scaled_dot_product_attention`` over the keys seen (cache included).
        head_mask ξ (H,): head i's output is multiplied by ξ_i before W^O, Concat(ξ_1 head_1, …, ξ_h head_h) W^O
        (Michel et al., 2019: ξ_i = 0 removes head i; ∂L/∂ξ_i measures its importance). None: no mask.
        Returns (B, T, D) and the weights (B, H, T, Tk) or None.

        Cross-attention may hold keys/values for fewer rows than x has: x (B·W, T, D) against a cache of B
        sources (B, H, S, d), row b·W + w belonging to source b (beam search's W hypotheses per sentence). The
        W·T queries of a source then attend together (one (B, H, W·T, S) attention, ``_group_queries``): the
        source's keys and values are read once, not W times, and never copied per hypothesis."""
        if self.cross:
            q = self._heads(self.q_proj(x), self.d_k)
            if cache is not None and cache.static:
                k, v = cache.get()
            else:
                if memory is None:
                    raise ValueError("cross-attention needs the encoder memory (or a filled cache)")
                k, v = self._project_kv(memory)
                if cache is not None:
                    cache.set_static(k, v)
        else:
            qk_size = self.n_heads * self.d_k
            q, k, v = self.qkv_proj(x).split([qk_size, qk_size, self.n_heads * self.d_v], dim=-1)
            q, k, v = self._heads(q, self.d_k), self._heads(k, self.d_k), self._heads(v, self.d_v)
            if self.rotary is not None:
                offset = cache.length if cache is not None else 0
                q, k = self.rotary(q, offset), self.rotary(k, offset)
            if cache is not None:
                k, v = cache.append(k, v)
        dropout_p = self.dropout if self.training else 0.0
        groups = q.shape[0] // k.shape[0]
        if groups > 1:  # beam search: W hypotheses per source share its keys/values (cross-attention cache)
            q = _group_queries(q, k.shape[0], groups)
        out, weights = scaled_dot_product_attention(q, k, v, mask, dropout_p, need_weights, position_bias,
                                                    self.scale)
        if groups > 1:
            out = _ungroup_queries(out, groups)
            weights = None if weights is None else _ungroup_queries(weights, groups)
        if head_mask is not None:
            out = out * head_mask.to(out.dtype)[:, None, None]  # (B, H, T, d_v) · (H, 1, 1)
        b, _, t, _ = out.shape
        out = out.transpose(1, 2).reshape(b, t, self.n_heads * self.d_v)  # merge heads: (B, T, H·d_v)
        return self.out_proj(out), weights
