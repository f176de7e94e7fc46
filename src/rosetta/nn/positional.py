"""Positional information: attention by itself does not know word order.

Four ways to give it, chosen by ``ModelConfig.positional``:

* ``"sinusoidal"`` — the fixed table of "Attention Is All You Need" (§3.5), added to the embeddings:

      PE(pos, 2i)   = sin(pos / 10000^(2i / d_model))
      PE(pos, 2i+1) = cos(pos / 10000^(2i / d_model))

* ``"learned"`` — a trainable table of ``max_len`` vectors (BERT, GPT-2), added to the embeddings.
* ``"rope"`` — rotary position embedding (Su et al., 2021): queries and keys are rotated in pairs of
  dimensions by an angle proportional to the position, so q·k depends on the relative offset only.
* ``"relative"`` — T5's relative position bias (Raffel et al., 2020, §2.1): a learned scalar per head and
  per bucket of key − query offsets, added to the attention logits; nothing is added to the embeddings.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def sinusoidal_encoding(seq_len: int, d_model: int, base: float = 10000.0, layout: str = "interleaved"
                        ) -> torch.Tensor:
    """The sinusoidal table, shape (seq_len, d_model).

    ``layout="interleaved"`` (the paper): column 2i holds sin(pos / base^(2i/d_model)) and column 2i+1 holds cos
    of the same angle. ``layout="halves"`` (Marian, tensor2tensor): the same sines in columns 0 … ⌈D/2⌉−1, then
    the cosines. Either way an odd ``d_model`` simply has one more sine column than cosine columns.
    """
    if seq_len < 0 or d_model <= 0:
        raise ValueError(f"sinusoidal_encoding needs seq_len >= 0 and d_model > 0, got {seq_len}, {d_model}")
    position = torch.arange(seq_len, dtype=torch.float64).unsqueeze(1)  # (T, 1)
    two_i = torch.arange(0, d_model, 2, dtype=torch.float64)  # (ceil(D/2),)
    angle = position / base ** (two_i / d_model)  # (T, ceil(D/2))
    if layout == "halves":
        return torch.cat([torch.sin(angle), torch.cos(angle[:, : d_model // 2])], dim=1).float()
    table = torch.zeros(seq_len, d_model, dtype=torch.float64)
    table[:, 0::2] = torch.sin(angle)
    table[:, 1::2] = torch.cos(angle[:, : d_model // 2])
    return table.float()


class SinusoidalPositionalEncoding(nn.Module):
    """Adds nothing trainable: returns PE rows for positions ``offset … offset+T-1``.

    The table is cached as a buffer and regrown on demand, so any length works.
    """

    def __init__(self, d_model: int, initial_len: int = 1024, layout: str = "interleaved"):
        super().__init__()
        self.d_model, self.layout = d_model, layout
        self.register_buffer("table", sinusoidal_encoding(initial_len, d_model, layout=layout), persistent=False)

    def forward(self, seq_len: int, offset: int = 0) -> torch.Tensor:
        """(T, D) rows of the table for positions offset … offset+seq_len-1."""
        end = offset + seq_len
        if end > self.table.shape[0]:
            self.table = sinusoidal_encoding(max(end, 2 * self.table.shape[0]), self.d_model, layout=self.layout).to(
                self.table.device
            )
        return self.table[offset:end]


class LearnedPositionalEmbedding(nn.Module):
    """A trainable vector per position (BERT, GPT-2): at most ``max_len`` positions."""

    def __init__(self, max_len: int, d_model: int):
        super().__init__()
        self.max_len = max_len
        self.weight = nn.Parameter(torch.empty(max_len, d_model))
        nn.init.normal_(self.weight, std=0.02)

    def forward(self, seq_len: int, offset: int = 0) -> torch.Tensor:
        """(T, D) rows for positions offset … offset+seq_len-1."""
        if offset + seq_len > self.max_len:
            raise ValueError(
                f"sequence of {offset + seq_len} positions is longer than the learned position table "
                f"(max_len={self.max_len}); shorten the input or build the model with a larger max_len"
            )
        return self.weight[offset : offset + seq_len]


class RotaryEmbedding(nn.Module):
    """Rotary position embedding applied to queries and keys, (B, H, T, d) → (B, H, T, d).

    Pairs of dimensions (x_j, x_{j+d/2}) are rotated by the angle pos·θ_j with θ_j = base^(-2j/d),
    the "rotate half" layout of GPT-NeoX and LLaMA.
    """

    def __init__(self, head_dim: int, base: float = 10000.0):
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"rotary embeddings need an even per-head size, got {head_dim}")
        inv_freq = 1.0 / base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        seq_len = x.shape[-2]
        pos = torch.arange(offset, offset + seq_len, device=x.device, dtype=torch.float32)
        angle = torch.outer(pos, self.inv_freq)  # (T, d/2)
        cos = torch.cat([angle.cos(), angle.cos()], dim=-1).to(x.dtype)  # (T, d)
        sin = torch.cat([angle.sin(), angle.sin()], dim=-1).to(x.dtype)
        x1, x2 = x.chunk(2, dim=-1)
        rotated_half = torch.cat([-x2, x1], dim=-1)
        return x * cos + rotated_half * sin


def relative_position_bucket(
    relative_position: torch.Tensor, bidirectional: bool = True, num_buckets: int = 32, max_distance: int = 128
) -> torch.Tensor:
    """T5's bucket id (LongTensor, same shape) of every key − query offset in ``relative_position``.

    Bidirectional (encoder): offsets > 0 (keys after the query) get the upper half of the buckets, the others
    the lower half, and n = |offset|. Causal (decoder): n = max(−offset, 0), so every offset > 0 (a key the
    causal mask hides anyway) falls into bucket 0. Within its N buckets (N = num_buckets, or half of it when
    bidirectional), with E = N // 2 exact buckets:

        bucket(n) = n                                                                  if n < E
        bucket(n) = min(N − 1, E + ⌊ ln(n / E) / ln(max_distance / E) · (N − E) ⌋)      otherwise

    so small offsets are told apart exactly, larger ones share log-spaced buckets, and every n ≥ max_distance
    shares the last one. Computed in float32, as T5 (Mesh TensorFlow) and Hugging Face do, so the bucket edges
    agree with theirs.
    """
    given = num_buckets
    if bidirectional:
        num_buckets //= 2
    max_exact = num_buckets // 2
    if max_exact < 1 or max_distance <= max_exact:
        raise ValueError(
            f"relative_position_bucket(bidirectional={bidirectional}) needs num_buckets >= "
            f"{4 if bidirectional else 2} and max_distance > its {max(max_exact, 1)} exact buckets, "
            f"got num_buckets={given}, max_distance={max_distance}"
        )
    bucket = torch.zeros_like(relative_position)
    if bidirectional:
        bucket = bucket + (relative_position > 0).long() * num_buckets  # keys after the query: upper half
        n = relative_position.abs()
    else:
        n = (-relative_position).clamp(min=0)
    # log-spaced buckets for n ≥ E (n is clamped first only so that ln(0) is never evaluated)
    log_ratio = torch.log(n.clamp(min=max_exact).float() / max_exact) / math.log(max_distance / max_exact)
    large = (max_exact + (log_ratio * (num_buckets - max_exact)).long()).clamp(max=num_buckets - 1)
    return bucket + torch.where(n < max_exact, n, large)


class RelativePositionBias(nn.Module):
    """T5's learned relative position bias: one scalar per (bucket, head), added to the attention logits,

        logits[b, h, i, j] = q_i · k_j + table[bucket(j − i), h]        (bucket: ``relative_position_bucket``)

    One table of shape (num_buckets, H) per stack, shared by all the stack's layers (the encoder's is
    bidirectional, the decoder's causal). Queries sit at positions offset … offset+Tq−1 (offset = positions
    already in the key/value cache), keys at 0 … Tk−1. Returns the bias (1, H, Tq, Tk).
    """

    def __init__(self, n_heads: int, num_buckets: int = 32, max_distance: int = 128, bidirectional: bool = True):
        super().__init__()
        self.num_buckets = num_buckets
        self.max_distance = max_distance
        self.bidirectional = bidirectional
        self.table = nn.Embedding(num_buckets, n_heads)

    def forward(self, query_len: int, key_len: int, offset: int = 0) -> torch.Tensor:
        device = self.table.weight.device
        query = torch.arange(offset, offset + query_len, device=device)[:, None]  # (Tq, 1)
        key = torch.arange(key_len, device=device)[None, :]  # (1, Tk)
        buckets = relative_position_bucket(key - query, self.bidirectional, self.num_buckets, self.max_distance)
        return self.table(buckets).permute(2, 0, 1).unsqueeze(0)  # (Tq, Tk, H) → (1, H, Tq, Tk)


def embedding_scale(d_model: int) -> float:
    """Token embeddings are multiplied by √d_model (§3.4) so they are not drowned by the PE."""
    return math.sqrt(d_model)
