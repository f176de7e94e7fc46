"""The token embedding space of any model: rows of the embedding table as points in R^D.

    token id i ─ E[i] (D,)        E: the model's token embedding table (V, D)
    neighbours of i:  argmax_j cos(E[i], E[j]) = E[i]·E[j] / (|E[i]| |E[j]|),  j ≠ i
    2-D view:         PCA: centre the chosen rows, project them on the top two right singular vectors

Which table: an LM's ``embed.token`` (tied to its output layer), an encoder's ``embeddings.token``, a
translation model's ``src_embed.token`` or ``tgt_embed.token`` (one table when the embeddings are shared).
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
import torch.nn.functional as F
from tokenizers import decoders

from rosetta.data.tokenizer import Tokenizer
from rosetta.decode.loading import LoadedModel

SPECIAL = re.compile(r"^(\[[^\]]*\]|<[^>]*>)$")  # [PAD] [CLS] [unused7] <pad> <s> </s> <unk>
WHITESPACE = {"\n": "\\n", "\t": "\\t", "\r": "\\r", " ": "▁"}


class Vocabulary:
    """Token ids ↔ readable labels, for a Rosetta ``Tokenizer`` or a Hugging Face ``tokenizers.Tokenizer``.

    Labels follow the Metaspace convention: a leading space shows as "▁" (byte-level "Ġthe" → "▁the"), and a
    newline as "\\n", so every label is one visible line.
    """

    def __init__(self, tokenizer):
        self.hf = tokenizer.hf if isinstance(tokenizer, Tokenizer) else tokenizer
        self.byte_level = isinstance(self.hf.decoder, decoders.ByteLevel)
        self._by_label: dict[str, int] | None = None

    @property
    def size(self) -> int:
        return self.hf.get_vocab_size()

    def label(self, i: int) -> str:
        token = self.hf.id_to_token(i)
        if token is None:
            return f"<id {i}>"
        if self.byte_level and not SPECIAL.match(token):
            token = self.hf.decode([i], skip_special_tokens=False)  # bytes → text: "Ġthe" → " the"
        return "".join(WHITESPACE.get(c, c) for c in token)

    def is_special(self, i: int) -> bool:
        token = self.hf.id_to_token(i)
        return token is None or bool(SPECIAL.match(token))

    def lookup(self, token: str) -> int:
        """The id of ``token``: an exact vocabulary entry, a label (e.g. "▁the"), or a text that the tokenizer
        reads as exactly one token (e.g. "King" in an uncased vocabulary). Anything else is a ValueError."""
        exact = self.hf.token_to_id(token)
        if exact is not None:
            return exact
        if self._by_label is None:
            self._by_label = {self.label(i): i for i in range(self.size)}
        if token in self._by_label:
            return self._by_label[token]
        ids = self.hf.encode(token, add_special_tokens=False).ids
        if len(ids) == 1:
            return ids[0]
        pieces = [self.label(i) for i in ids]
        raise ValueError(f"{token!r} is not one token of this vocabulary: it reads as {len(ids)} tokens "
                         f"{pieces}; ask for one of those")


def token_table(loaded: LoadedModel, side: str = "source") -> tuple[torch.Tensor, Vocabulary]:
    """The token embedding table (V, D) of a model (a detached float32 copy) and its vocabulary.
    ``side`` (translation only): "source" or "target"."""
    model = loaded.model
    if loaded.family == "lm":
        weight, tokenizer = model.embed.token.weight, loaded.tokenizer
    elif loaded.family == "encoder":
        weight, tokenizer = model.embeddings.token.weight, loaded.tokenizer
    elif side == "source":
        weight, tokenizer = model.src_embed.token.weight, loaded.tokenizer
    elif side == "target":
        weight, tokenizer = model.tgt_embed.token.weight, loaded.target_tokenizer
    else:
        raise ValueError(f"side must be 'source' or 'target', got {side!r}")
    return weight.detach().float().cpu().clone(), Vocabulary(tokenizer)


def nearest(weight: torch.Tensor, index: int, k: int = 10) -> list[tuple[int, float]]:
    """The ``k`` rows of weight (V, D) with the highest cosine similarity to row ``index`` (itself excluded),
    as (id, cosine) pairs, most similar first."""
    if not 0 <= index < weight.shape[0]:
        raise ValueError(f"token id {index} is outside the table of {weight.shape[0]} rows")
    unit = F.normalize(weight.float(), dim=-1)  # (V, D), rows of length 1 (a zero row stays 0)
    cosine = unit @ unit[index]  # (V,)
    cosine[index] = -float("inf")
    k = max(0, min(k, weight.shape[0] - 1))
    values, ids = cosine.topk(k)
    return [(int(i), float(v)) for i, v in zip(ids, values)]


def pca_2d(points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Project points (N, D) on their first two principal axes → (coords (N, 2), share of variance (2,)).

    X − mean = U S Vᵀ (torch.linalg.svd); coords = U[:, :2] S[:2]. Each axis's sign is fixed so that its
    largest loading is positive (SVD signs are arbitrary; the same table always gives the same picture)."""
    if points.shape[0] < 2:
        raise ValueError(f"PCA needs at least 2 points, got {points.shape[0]}")
    x = points.double() - points.double().mean(0)
    u, s, vh = torch.linalg.svd(x, full_matrices=False)
    n = min(2, s.numel())
    signs = torch.sign(vh[:n].gather(1, vh[:n].abs().argmax(1, keepdim=True))).squeeze(1)  # (n,)
    coords = torch.zeros(points.shape[0], 2, dtype=torch.float64)
    coords[:, :n] = u[:, :n] * s[:n] * signs
    variance = s.pow(2)
    share = torch.zeros(2, dtype=torch.float64)
    share[:n] = variance[:n] / variance.sum().clamp(min=1e-300)
    return coords, share


def default_tokens(vocab: Vocabulary, limit: int = 100) -> list[int]:
    """Tokens to draw when none are named: every non-special token of a small vocabulary (characters), else
    the first ``limit`` word-like ones (letters only, ≥ 2 of them) in vocabulary order, which BPE and WordPiece
    vocabularies roughly sort by frequency."""
    ordinary = [i for i in range(vocab.size) if not vocab.is_special(i)]
    if len(ordinary) <= limit:
        return ordinary
    words = [i for i in ordinary if len(w := vocab.label(i).lstrip("▁")) >= 2 and w.isalpha()]
    return (words if len(words) >= limit else ordinary)[:limit]


def plot_embeddings(coords: torch.Tensor, labels: list[str], share: torch.Tensor, out: str | Path,
                    title: str) -> Path:
    """Scatter plot of coords (N, 2) with a label at each point; writes ``out`` (format from its suffix)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    _use_cjk_font(labels)
    fig, ax = plt.subplots(figsize=(9, 7), dpi=110)
    ax.scatter(coords[:, 0].tolist(), coords[:, 1].tolist(), s=12, alpha=0.6)
    for (x, y), label in zip(coords.tolist(), labels):
        ax.annotate(label, (x, y), fontsize=8, xytext=(2, 2), textcoords="offset points")
    ax.set_xlabel(f"PC 1 ({100 * float(share[0]):.1f}% of variance)")
    ax.set_ylabel(f"PC 2 ({100 * float(share[1]):.1f}% of variance)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


def _use_cjk_font(labels: list[str]) -> None:
    """Switch matplotlib to a font with CJK glyphs when a label needs one (matplotlib's default has none)."""
    if any("\u3000" <= c <= "\u9fff" or "\uac00" <= c <= "\ud7af" for label in labels for c in label):
        from rosetta.view.fonts import use_cjk_font

        use_cjk_font()
