"""Decoding: turn a trained model's next-token distributions into output sequences.

Search for the encoder–decoder ``Transformer`` (the encoder runs once, the decoder one token per step
through its key/value caches):

* ``greedy_search``  — the most likely next token at every step.
* ``beam_search``    — keep the ``beam_size`` best partial hypotheses of every sentence, scored by
  log P(Y | X) / lp(Y) with the GNMT length penalty lp(Y) = ((5 + |Y|) / 6)^α (Wu et al., 2016, §7).
  ``beam_search_nbest`` returns the n best hypotheses with their scores.

Logits processors shared with the language model's sampler (``rosetta.lm``): ``apply_min_length``,
``top_k_filter``, ``top_p_filter`` and ``sample_next``.

Conventions. Shapes: B sentences, K beam size, V target vocabulary, T output length. Outputs are token id
lists without BOS and EOS. PAD and BOS are never produced. Scores are sums of the model's log-probabilities
(log_softmax of the raw logits; tokens that are forbidden — PAD, BOS, EOS before ``min_len`` — are removed,
not renormalised). |Y| counts the scored tokens: the output tokens plus the EOS when one ended the output.

Output length limits (per sentence; ``src_len`` = its source tokens without padding):

* ``max_len``                      — at most this many output tokens, EOS not counted;
* ``max_len_ratio``, ``max_len_offset`` — at most ``int(max_len_ratio · src_len) + max_len_offset`` tokens
  (fairseq's ``max_len_a · src_len + max_len_b``); with both given the smaller limit applies;
* neither                           — ``DEFAULT_MAX_LEN_RATIO · src_len + max_len_offset``.

Every limit is capped at ``model.config.max_len`` (the positions the model was built for). A sentence that
reaches its limit without EOS simply ends there. ``min_len`` holds EOS back until that many tokens exist.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

DEFAULT_MAX_LEN_RATIO = 1.5


class Hypothesis(NamedTuple):
    """One output: token ids (no BOS / EOS) and its score (beam: length-normalised log-probability)."""

    tokens: list[int]
    score: float


# ---------------------------------------------------------------------------------------------- logits processors
def apply_min_length(logits: torch.Tensor, step: int, min_len: int, eos_id: int) -> torch.Tensor:
    """Forbid EOS (logit −∞, in place) while fewer than ``min_len`` tokens exist; ``step`` = tokens so far.

    logits: (N, V). Returns ``logits`` for chaining."""
    if step < min_len:
        logits[:, eos_id] = -math.inf
    return logits


def top_k_filter(logits: torch.Tensor, k: int | None) -> torch.Tensor:
    """Keep the ``k`` largest logits of each row (ties with the k-th are kept too), set the rest to −∞.

    logits: (N, V) → a new (N, V) tensor. ``k`` None, ≤ 0 or ≥ V keeps everything."""
    if not k or k <= 0 or k >= logits.shape[-1]:
        return logits
    kth = logits.topk(k, dim=-1).values[..., -1:]  # (N, 1) the k-th largest logit
    return logits.masked_fill(logits < kth, -math.inf)


def top_p_filter(logits: torch.Tensor, p: float | None) -> torch.Tensor:
    """Nucleus filter (Holtzman et al., 2020): keep the smallest set of most likely tokens whose probability
    reaches ``p``; the most likely token is always kept. Others get −∞.

    logits: (N, V) → a new (N, V) tensor. ``p`` None or ≥ 1 keeps everything."""
    if p is None or p >= 1.0:
        return logits
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    probs = sorted_logits.float().softmax(dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs  # probability of the strictly more likely tokens
    drop_sorted = mass_before >= p  # the set already reached p without this token; never drops rank 0
    drop = drop_sorted.scatter(-1, order, drop_sorted)  # back to vocabulary order
    return logits.masked_fill(drop, -math.inf)


def sample_next(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Choose the next token of each row from logits (N, V) → ids (N,).

    temperature ≤ 0: greedy (argmax; filters and ``generator`` unused). Otherwise sample from
    softmax(logits / temperature) restricted by ``top_k`` and then ``top_p``. The same ``generator`` state
    gives the same tokens."""
    if temperature <= 0:
        return logits.argmax(dim=-1)
    logits = logits.float() / temperature
    logits = top_p_filter(top_k_filter(logits, top_k), top_p)
    probs = logits.softmax(dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


# ---------------------------------------------------------------------------------------------- helpers
def output_limits(
    src_ids: torch.Tensor,
    pad_id: int,
    max_len: int | None = None,
    max_len_ratio: float | None = None,
    max_len_offset: int = 10,
    cap: int | None = None,
) -> torch.Tensor:
    """Per-sentence maximum number of output tokens (B,), as described in the module docstring (≥ 1)."""
    if max_len is not None and max_len < 1:
        raise ValueError(f"max_len must be at least 1, got {max_len}")
    src_len = (src_ids != pad_id).sum(dim=1)  # (B,)
    limit = torch.full_like(src_len, max_len if max_len is not None else torch.iinfo(torch.int64).max)
    if max_len_ratio is not None or max_len is None:
        ratio = DEFAULT_MAX_LEN_RATIO if max_len_ratio is None else max_len_ratio
        limit = torch.minimum(limit, (src_len * ratio).long() + max_len_offset)
    if cap is not None:
        limit = limit.clamp(max=cap)
    return limit.clamp(min=1)


def gnmt_penalty(length: int | torch.Tensor, alpha: float) -> float | torch.Tensor:
    """GNMT length penalty lp(Y) = ((5 + |Y|) / 6)^α of a length (int or tensor); α = 0 gives 1."""
    return ((5 + length) / 6) ** alpha


def _banned_tokens(config, device: torch.device) -> torch.Tensor:
    """Ids never produced: PAD and BOS (their logits are set to −∞ every step)."""
    return torch.tensor(sorted({config.pad_id, config.bos_id}), device=device)


# ---------------------------------------------------------------------------------------------- greedy
@torch.inference_mode()
def greedy_search(
    model,
    src_ids: torch.Tensor,
    max_len: int | None = None,
    max_len_ratio: float | None = None,
    max_len_offset: int = 10,
    min_len: int = 0,
    return_scores: bool = False,
) -> list[list[int]] | list[Hypothesis]:
    """Greedy decoding of a batch of sources src_ids (B, S) (padded with ``config.pad_id``).

    One ``decode_step`` of the whole batch per output position; rows that finished (EOS or their length
    limit) are dropped from the batch once they make up a quarter of it, so short outputs do not pay for
    long ones. Returns per sentence its token ids (no BOS/EOS), or with ``return_scores`` a ``Hypothesis``
    whose score is the sum of its tokens' log-probabilities (EOS included when it ended the output).
    """
    config = model.config
    eos = config.eos_id
    limits = output_limits(src_ids, config.pad_id, max_len, max_len_ratio, max_len_offset, config.max_len)
    n, total = src_ids.shape[0], int(limits.max())
    device = src_ids.device
    banned = _banned_tokens(config, device)

    memory, memory_mask, _ = model.encode(src_ids)
    state = model.start_decoding(memory, memory_mask)

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
        best = logits.argmax(dim=-1)  # (N,)
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


# ---------------------------------------------------------------------------------------------- beam search
@torch.inference_mode()
def beam_search_nbest(
    model,
    src_ids: torch.Tensor,
    beam_size: int = 4,
    n_best: int = 1,
    max_len: int | None = None,
    max_len_ratio: float | None = None,
    max_len_offset: int = 10,
    min_len: int = 0,
    length_penalty: float = 0.6,
    early_stopping: bool = False,
) -> list[list[Hypothesis]]:
    """Beam search over a batch of sources src_ids (B, S); returns per sentence its ``n_best`` hypotheses,
    best first, scored log P(Y | X) / lp(Y) with lp(Y) = ((5 + |Y|) / 6)^``length_penalty``.

    All B·K hypotheses are one batch: a step is one ``decode_step`` of (B·K, 1) tokens (the first step
    of (B, 1): each sentence starts from BOS alone), then per sentence a top-2K over its K·V candidate
    extensions (2K, so that K of them are not EOS even if K are):

    * a candidate ending in EOS among the K best, or any of the K best when the sentence reaches its length
      limit, becomes a finished hypothesis (the K best finished ones are kept, in tensors); an EOS ranked
      below K is dropped, as in fairseq and Hugging Face (K alive hypotheses were better);
    * the K best candidates not ending in EOS stay alive; the decoder caches follow them (reorder).

    Hot path: no Python loop over hypotheses; per step two host syncs (any finished? any sentence done?).

    A sentence stops when it has K finished hypotheses and
    * ``early_stopping=False`` (default): no alive hypothesis can still beat the worst of them. Log-probs
      only fall as a hypothesis grows, so an alive raw score s ≤ 0 can at best reach s / max lp(L) over
      the lengths L it may still end at (lp is monotone: L = its limit for α ≥ 0, the next step for α < 0).
      The result is then exactly what running every beam to the length limit would give.
    * ``early_stopping=True``: as soon as it has K finished hypotheses (fairseq's rule; faster, and with
      K = 1 the same as greedy search for any α).

    Finished sentences leave the batch (their rows are dropped in the same reorder), so the remaining ones
    run at the batch size they need.
    """
    if beam_size < 1 or not 1 <= n_best <= beam_size:
        raise ValueError(f"need beam_size ≥ 1 and 1 ≤ n_best ≤ beam_size, got {beam_size} and {n_best}")
    config = model.config
    eos, k = config.eos_id, beam_size
    limits = output_limits(src_ids, config.pad_id, max_len, max_len_ratio, max_len_offset, config.max_len)
    n, total = src_ids.shape[0], int(limits.max())
    device = src_ids.device
    banned = _banned_tokens(config, device)

    memory, memory_mask, _ = model.encode(src_ids)
    state = model.start_decoding(memory, memory_mask)  # one row per sentence: the first step has one
    # hypothesis per sentence (BOS); the rows multiply as the beams fill, by the reorders below.

    # Per sentence still decoding (first dimension Bₐ ≤ B, shrinking as sentences finish); W alive
    # hypotheses each: 1 at the start, then K (fewer only with a vocabulary smaller than the beam).
    sentences = list(range(n))  # original index
    sent_limits = limits
    # The largest lp a hypothesis may still get, for the stop bound (α ≥ 0: at the limit).
    lp_at_limit = gnmt_penalty(limits.float(), length_penalty)
    alive_scores = torch.zeros((n, 1), device=device)  # (Bₐ, W) raw log-probs
    alive_tokens = torch.full((n, 1, total), config.pad_id, dtype=torch.long, device=device)  # (Bₐ, W, T)
    fin_scores = torch.full((n, k), -math.inf, device=device)  # (Bₐ, K) normalised, best first
    fin_tokens = torch.full((n, k, total), config.pad_id, dtype=torch.long, device=device)
    fin_lengths = torch.zeros((n, k), dtype=torch.long, device=device)  # output tokens, EOS excluded
    first_k = torch.arange(2 * k, device=device) < k  # (2K,) the K best ranks of the candidates

    results: list[list[Hypothesis]] = [[] for _ in range(n)]
    tokens = torch.full((n, 1), config.bos_id, dtype=torch.long, device=device)
    for step in range(total):
        n_active, width = alive_scores.shape
        logits = model.decode_step(tokens, state)[:, -1].float()  # (Bₐ·W, V)
        log_z = logits.logsumexp(dim=-1, keepdim=True)  # log-prob = logit − log_z (before any ban)
        logits[:, banned] = -math.inf
        apply_min_length(logits, step, min_len, eos)

        # The 2K best extensions of a sentence are among the 2K best tokens of each of its hypotheses, so
        # rank within rows first (no (Bₐ·K, V) log-prob tensor), then over the sentence's K·2K of them.
        row_logits, row_tokens = logits.topk(min(2 * k, logits.shape[-1]), dim=1)  # (Bₐ·W, 2K)
        per_row = row_logits.shape[1]
        candidates = (alive_scores.view(-1, 1) - log_z + row_logits).view(n_active, width * per_row)
        n_cand = min(2 * k, width * per_row)
        cand_scores, cand_index = candidates.topk(n_cand, dim=1)  # (Bₐ, 2K), best first
        cand_beam = cand_index // per_row
        cand_token = row_tokens.view(n_active, width * per_row).gather(1, cand_index)
        cand_eos = cand_token == eos
        at_limit = sent_limits == step + 1  # (Bₐ,) this token is the last one allowed

        # 1. Finished hypotheses: merge the new ones into the K best kept so far.
        ends = first_k[:n_cand] & (cand_eos | at_limit[:, None]) & (cand_scores > -math.inf)
        if bool(ends.any()):
            new_scores = (cand_scores / gnmt_penalty(step + 1, length_penalty)).masked_fill(~ends, -math.inf)
            new_tokens = alive_tokens.gather(1, cand_beam[:, :, None].expand(-1, -1, total)).clone()
            new_tokens[:, :, step] = cand_token
            new_lengths = step + 1 - cand_eos.long()  # EOS is scored but not an output token
            fin_scores, pick = torch.cat([fin_scores, new_scores], dim=1).topk(k, dim=1)
            fin_tokens = torch.cat([fin_tokens, new_tokens], dim=1).gather(1, pick[:, :, None].expand(-1, -1, total))
            fin_lengths = torch.cat([fin_lengths, new_lengths], dim=1).gather(1, pick)

        # 2. Alive hypotheses: the K best candidates that did not end in EOS.
        alive_scores, pick = cand_scores.masked_fill(cand_eos, -math.inf).topk(min(k, n_cand), dim=1)  # (Bₐ, W')
        alive_beam, alive_token = cand_beam.gather(1, pick), cand_token.gather(1, pick)

        # 3. Which sentences are done.
        worst_finished = fin_scores[:, -1]  # −∞ until K hypotheses finished
        if early_stopping:
            done = worst_finished > -math.inf
        else:
            best_lp = lp_at_limit.clamp(min=gnmt_penalty(step + 2, length_penalty))
            done = worst_finished >= alive_scores[:, 0] / best_lp
        done |= at_limit

        keep = None
        if bool(done.any()):
            done_list = done.tolist()
            finished_rows = [i for i, d in enumerate(done_list) if d]
            scores_cpu = fin_scores[finished_rows].tolist()
            tokens_cpu = fin_tokens[finished_rows].tolist()
            lengths_cpu = fin_lengths[finished_rows].tolist()
            for j, i in enumerate(finished_rows):
                results[sentences[i]] = [
                    Hypothesis(tokens_cpu[j][b][: lengths_cpu[j][b]], scores_cpu[j][b])
                    for b in range(n_best)
                    if scores_cpu[j][b] > -math.inf
                ]
            if len(finished_rows) == n_active:
                break
            keep = (~done).nonzero().squeeze(1)
            sentences = [s for s, d in zip(sentences, done_list) if not d]
            sent_limits, lp_at_limit = sent_limits[keep], lp_at_limit[keep]
            alive_scores, alive_beam, alive_token = alive_scores[keep], alive_beam[keep], alive_token[keep]
            fin_scores, fin_tokens, fin_lengths = fin_scores[keep], fin_tokens[keep], fin_lengths[keep]

        # 4. Follow the survivors: flat row index (in the current batch) of the hypothesis each extends.
        first_row = (keep if keep is not None else torch.arange(n_active, device=device)) * width
        survivors = (first_row[:, None] + alive_beam).view(-1)  # (Bₐ'·W',)
        new_width = alive_beam.shape[1]
        alive_tokens = alive_tokens.view(n_active * width, total).index_select(0, survivors)
        alive_tokens = alive_tokens.view(-1, new_width, total)
        alive_tokens[:, :, step] = alive_token
        if keep is None and new_width == width:
            _follow_beams(state, survivors)
        else:  # sentences left or beams grew: the cross-attention caches change shape too
            state.reorder(survivors)
        tokens = alive_token.view(-1, 1)
    return results


def _follow_beams(state, rows: torch.Tensor) -> None:
    """``state.reorder(rows)`` for a ``rows`` that maps every sentence's beams onto its own beams: only the
    self-attention caches change. The K rows of a sentence hold the same source, so their cross-attention
    keys/values and memory mask are equal and copying them (a third or more of the cache) is skipped."""
    for layer in state.layers:
        layer.self_attn.reorder(rows)


def beam_search(
    model,
    src_ids: torch.Tensor,
    beam_size: int = 4,
    max_len: int | None = None,
    max_len_ratio: float | None = None,
    max_len_offset: int = 10,
    min_len: int = 0,
    length_penalty: float = 0.6,
    early_stopping: bool = False,
) -> list[list[int]]:
    """``beam_search_nbest`` with n_best = 1, returning only the best token ids of each sentence."""
    nbest = beam_search_nbest(model, src_ids, beam_size, 1, max_len, max_len_ratio, max_len_offset, min_len,
                              length_penalty, early_stopping)
    return [hyps[0].tokens if hyps else [] for hyps in nbest]
