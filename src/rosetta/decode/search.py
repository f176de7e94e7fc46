"""Decoding: turn a trained model's next-token distributions into output sequences.

Search for the encoder–decoder ``Transformer`` (the encoder runs once, the decoder one token per step
through its key/value caches):

* ``greedy_search``  — the most likely next token at every step.
* ``beam_search``    — keep the ``beam_size`` best partial hypotheses of every sentence, scored by
  log P(Y | X) / lp(Y) with the GNMT length penalty lp(Y) = ((5 + |Y|) / 6)^α (Wu et al., 2016, §7).
  ``beam_search_nbest`` returns the n best hypotheses with their scores. Both live in ``rosetta.decode.beam``.

Logits processors shared with the language model's sampler (``rosetta.models.lm``): ``apply_min_length``,
``top_k_filter``, ``top_p_filter`` and ``sample_next``; ``no_repeat_ngram_filter`` (no n-gram twice in one
output, fairseq's and Hugging Face's ``no_repeat_ngram_size``) for greedy and beam search.

Conventions. Shapes: B sentences, K beam size, V target vocabulary, T output length. Outputs are token id
lists without BOS and EOS. PAD and BOS are never produced. Scores are sums of the model's log-probabilities
(log_softmax of the raw logits; tokens that are forbidden — PAD, BOS, EOS before ``min_len`` — are removed,
not renormalised). |Y| counts the scored tokens: the output tokens plus the EOS when one ended the output.

Hugging Face's conventions, as options (``rosetta.hub`` models decode with them, to give exactly what
``transformers``' ``generate`` gives): ``length_norm="hf"`` scores a finished beam log P(Y | X) / |Y|^α and stops
a sentence by ``generate``'s rule (``rosetta.decode.beam``); ``force_eos`` makes the last token a limit allows
EOS (``forced_eos_token_id``); ``force_bos`` makes the first output token the one given (``forced_bos_token_id``:
BART's <s>); ``renormalize`` (beam) renormalises the log-probabilities after the bans (``renormalize_logits``).

Output length limits (per sentence; ``src_len`` = its source tokens without padding):

* ``max_len``                      — at most this many output tokens, EOS not counted;
* ``max_len_ratio``, ``max_len_offset`` — at most ``int(max_len_ratio · src_len) + max_len_offset`` tokens
  (fairseq's ``max_len_a · src_len + max_len_b``); with both given the smaller limit applies;
* neither                           — ``DEFAULTS.max_len_ratio · src_len + max_len_offset`` (``decode.defaults``).

Every limit is capped at the positions the model was built for (``max_positions``: ``config.max_len`` less a
learned table's ``position_offset``). A sentence that reaches its limit without EOS simply ends there. ``min_len``
holds EOS back until that many tokens exist.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from rosetta.decode.defaults import DEFAULTS
from rosetta.decode.sampling import apply_min_length, no_repeat_ngram_filter
from rosetta.decode.selection import argmax_rows


class Hypothesis(NamedTuple):
    """One output: token ids (no BOS / EOS) and its score (beam: length-normalised log-probability)."""

    tokens: list[int]
    score: float


# ---------------------------------------------------------------------------------------------- helpers
def output_limits(
    src_ids: torch.Tensor,
    pad_id: int,
    max_len: int | None = None,
    max_len_ratio: float | None = None,
    max_len_offset: int = DEFAULTS.max_len_offset,
    cap: int | None = None,
) -> torch.Tensor:
    """Per-sentence maximum number of output tokens (B,), as described in the module docstring (≥ 1)."""
    if max_len is not None and max_len < 1:
        raise ValueError(f"max_len must be at least 1, got {max_len}")
    src_len = (src_ids != pad_id).sum(dim=1)  # (B,)
    limit = torch.full_like(src_len, max_len if max_len is not None else torch.iinfo(torch.int64).max)
    if max_len_ratio is not None or max_len is None:
        ratio = DEFAULTS.max_len_ratio if max_len_ratio is None else max_len_ratio
        limit = torch.minimum(limit, (src_len * ratio).long() + max_len_offset)
    if cap is not None:
        limit = limit.clamp(max=cap)
    return limit.clamp(min=1)


def gnmt_penalty(length: int | torch.Tensor, alpha: float) -> float | torch.Tensor:
    """GNMT length penalty lp(Y) = ((5 + |Y|) / 6)^α of a length (int or tensor); α = 0 gives 1."""
    return ((5 + length) / 6) ** alpha


def hf_penalty(length: int | torch.Tensor, alpha: float) -> float | torch.Tensor:
    """Hugging Face's length penalty lp(Y) = |Y|^α (``generate``'s ``length_penalty``); α = 0 gives 1."""
    return length**alpha


LENGTH_NORMS = {"gnmt": gnmt_penalty, "hf": hf_penalty}


def force_eos_at_limit(scores: torch.Tensor, at_limit: torch.Tensor, eos_id: int) -> None:
    """In place, for the rows (N, V) whose next token is the last allowed (``at_limit`` (N,) bool): −∞ for every
    token but EOS, which gets 0 — Hugging Face's ``forced_eos_token_id``: an output that reaches the limit ends
    with EOS, at no cost to its score."""
    scores.masked_fill_(at_limit[:, None], -math.inf)
    scores[:, eos_id].masked_fill_(at_limit, 0.0)


def force_bos_at_start(scores: torch.Tensor, step: int, bos_id: int | None) -> None:
    """In place, at the first step (``step`` 0) and with a ``bos_id``: −∞ for every token but ``bos_id``, which
    gets 0 — Hugging Face's ``forced_bos_token_id`` (BART's outputs start with <s>, at no cost to the score)."""
    if step == 0 and bos_id is not None:
        scores.fill_(-math.inf)
        scores[:, bos_id] = 0.0


def max_positions(config) -> int:
    """The most target positions the decoder can read: ``max_len``, less the rows a learned table skips
    (``position_offset``: BART's first token reads row 2)."""
    return config.max_len - (config.position_offset if config.positional == "learned" else 0)


def _banned_tokens(config, device: torch.device) -> torch.Tensor:
    """Ids never produced: PAD and BOS (their logits are set to −∞ every step) — but not EOS, even when the
    decoder starts with it (BART: start token = </s>)."""
    return torch.tensor(sorted({config.pad_id, config.bos_id} - {config.eos_id}), device=device)


# ---------------------------------------------------------------------------------------------- greedy
@torch.inference_mode()
def greedy_search(
    model,
    src_ids: torch.Tensor,
    max_len: int | None = None,
    max_len_ratio: float | None = None,
    max_len_offset: int = DEFAULTS.max_len_offset,
    min_len: int = 0,
    return_scores: bool = False,
    no_repeat_ngram_size: int = 0,
    force_eos: bool = False,
    force_bos: int | None = None,
) -> list[list[int]] | list[Hypothesis]:
    """Greedy decoding of a batch of sources src_ids (B, S) (padded with ``config.pad_id``).

    One ``decode_step`` of the whole batch per output position; rows that finished (EOS or their length
    limit) are dropped from the batch once they make up a quarter of it, so short outputs do not pay for
    long ones. Returns per sentence its token ids (no BOS/EOS), or with ``return_scores`` a ``Hypothesis``
    whose score is the sum of its tokens' log-probabilities (EOS included when it ended the output).
    ``no_repeat_ngram_size`` n > 0: no output contains the same n-gram twice (``no_repeat_ngram_filter``).
    ``force_eos``: the last token a limit allows is EOS (``force_eos_at_limit``), so outputs that reach it have
    one token fewer (Hugging Face's ``forced_eos_token_id``). ``force_bos``: the first token is this id
    (``force_bos_at_start``; Hugging Face's ``forced_bos_token_id``).
    """
    config = model.config
    eos = config.eos_id
    limits = output_limits(src_ids, config.pad_id, max_len, max_len_ratio, max_len_offset, max_positions(config))
    n, total = src_ids.shape[0], int(limits.max())
    device = src_ids.device
    banned = _banned_tokens(config, device)

    memory, memory_mask, _ = model.encode(src_ids)
    state = model.start_decoding(memory, memory_mask, src_ids)

    out = torch.full((n, total), config.pad_id, dtype=torch.long, device=device)  # (B, T), by sentence
    scores = torch.zeros(n, device=device)
    rows = torch.arange(n, device=device)  # sentence of each row still in the batch
    row_limits = limits
    finished = torch.zeros(n, dtype=torch.bool, device=device)  # per row still in the batch
    tokens = torch.full((n, 1), config.bos_id, dtype=torch.long, device=device)
    for step in range(total):
        logits = model.decode_step(tokens, state)[:, -1].float()  # (N, V)
        if return_scores:
            log_z = logits.logsumexp(dim=-1)  # normaliser of the unmodified distribution
        logits[:, banned] = -math.inf
        apply_min_length(logits, step, min_len, eos)
        if no_repeat_ngram_size:
            no_repeat_ngram_filter(logits, out[rows, :step], no_repeat_ngram_size)
        force_bos_at_start(logits, step, force_bos)
        if force_eos:
            force_eos_at_limit(logits, row_limits <= step + 1, eos)
        best = argmax_rows(logits)  # (N,); the first of equal maxima, as argmax (decode.selection)
        if return_scores:
            gained = logits.gather(1, best[:, None]).squeeze(1) - log_z
            scores.index_add_(0, rows, gained.masked_fill(finished, 0.0))
        out[rows, step] = best  # rows that finished earlier write past their end: cut off below
        finished |= (best == eos) | (row_limits <= step + 1)
        tokens = best[:, None]

        n_finished = int(finished.sum())  # the one host sync of a step
        if n_finished == len(rows):
            break
        if 4 * n_finished >= len(rows):  # drop the finished rows: copy the caches once, save later steps
            keep = (~finished).nonzero().squeeze(1)
            state.reorder(keep)
            rows, row_limits, finished, tokens = rows[keep], row_limits[keep], finished[keep], tokens[keep]

    results = []
    for row, limit, score in zip(out.tolist(), limits.tolist(), scores.tolist()):
        row = row[:limit]
        if eos in row:
            row = row[: row.index(eos)]
        results.append(Hypothesis(row, score) if return_scores else row)
    return results
