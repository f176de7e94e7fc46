"""Beam search for the encoder–decoder ``Transformer`` (conventions and length limits: ``rosetta.decode.search``).

Keep the ``beam_size`` (K) best partial hypotheses of every sentence, scored by log P(Y | X) / lp(Y) with the
GNMT length penalty lp(Y) = ((5 + |Y|) / 6)^α (Wu et al., 2016, §7). A step reads as four named parts:

    candidates   the 2K best one-token extensions of each sentence's alive hypotheses
    1. finish    candidates ending in EOS (or at the length limit) join the K best finished hypotheses
    2. alive     the K best candidates that did not end stay alive
    3. done      sentences that cannot improve leave the batch (their results are written out)
    4. follow    the decoder's caches follow the surviving hypotheses (``state.select_beams``)

Hugging Face's scoring and stopping (lp(Y) = |Y|^α, ``generate``'s stopping estimate, a forced final EOS, a forced
first token) are options for its models: ``length_norm="hf"``, ``force_eos``, ``force_bos``, ``renormalize``
(``beam_search_nbest``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from rosetta.decode.defaults import DEFAULTS
from rosetta.decode.sampling import apply_min_length, no_repeat_ngram_filter
from rosetta.decode.search import (
    LENGTH_NORMS,
    Hypothesis,
    _banned_tokens,
    force_bos_at_start,
    force_eos_at_limit,
    max_positions,
    output_limits,
)
from rosetta.decode.selection import topk_rows


@dataclass
class _Candidates:
    """The 2K best extensions of each sentence still decoding (Bₐ sentences), best first."""

    scores: torch.Tensor  # (Bₐ, 2K) raw log-probabilities of the extended hypotheses
    beam: torch.Tensor  # (Bₐ, 2K) which alive hypothesis each extends
    token: torch.Tensor  # (Bₐ, 2K) the token it adds
    eos: torch.Tensor  # (Bₐ, 2K) bool: that token is EOS


@dataclass
class _Beams:
    """Per sentence still decoding (first dimension Bₐ ≤ B, shrinking as sentences finish): W alive hypotheses
    (1 at the start, then K; fewer only with a vocabulary smaller than the beam) and the K best finished."""

    sentences: list[int]  # original index of each sentence
    limits: torch.Tensor  # (Bₐ,) output-token limit
    lp_at_limit: torch.Tensor  # (Bₐ,) the largest lp a hypothesis may still get (α ≥ 0: at the limit)
    alive_scores: torch.Tensor  # (Bₐ, W) raw log-probs
    alive_tokens: torch.Tensor  # (Bₐ, W, T)
    fin_scores: torch.Tensor  # (Bₐ, K) normalised, best first; −∞ for an empty slot
    fin_tokens: torch.Tensor  # (Bₐ, K, T)
    fin_lengths: torch.Tensor  # (Bₐ, K) output tokens, EOS excluded
    norm: str = "gnmt"  # the length penalty's formula, a key of LENGTH_NORMS

    @property
    def lp(self) -> Callable[..., Any]:
        """lp(length, α) of ``norm``."""
        return LENGTH_NORMS[self.norm]

    @classmethod
    def start(cls, limits: torch.Tensor, k: int, total: int, pad_id: int, alpha: float, norm: str = "gnmt"
              ) -> _Beams:
        n, device, lp = limits.shape[0], limits.device, LENGTH_NORMS[norm]
        return cls(
            sentences=list(range(n)), limits=limits, lp_at_limit=lp(limits.float(), alpha), norm=norm,
            alive_scores=torch.zeros((n, 1), device=device),
            alive_tokens=torch.full((n, 1, total), pad_id, dtype=torch.long, device=device),
            fin_scores=torch.full((n, k), -math.inf, device=device),
            fin_tokens=torch.full((n, k, total), pad_id, dtype=torch.long, device=device),
            fin_lengths=torch.zeros((n, k), dtype=torch.long, device=device),
        )

    def keep(self, index: torch.Tensor, done: list[bool]) -> None:
        """Keep only the sentences ``index`` (those not ``done``); the alive hypotheses are re-indexed by the caller."""
        self.sentences = [s for s, d in zip(self.sentences, done) if not d]
        for name in ("limits", "lp_at_limit", "fin_scores", "fin_tokens", "fin_lengths"):
            setattr(self, name, getattr(self, name)[index])


def _candidates(log_probs: torch.Tensor, beams: _Beams, k: int, eos_id: int) -> _Candidates:
    """The 2K best extensions of each sentence: 2K so that K of them are not EOS even if K are.

    The 2K best of a sentence are among the 2K best tokens of each of its hypotheses, so rank within rows
    first, then over the sentence's W·2K of them."""
    n_active, width = beams.alive_scores.shape
    row_scores, row_tokens = topk_rows(log_probs, 2 * k)  # (Bₐ·W, 2K) (decode.selection)
    per_row = row_scores.shape[1]
    scores = (beams.alive_scores.view(-1, 1) + row_scores).view(n_active, width * per_row)
    scores, index = scores.topk(min(2 * k, width * per_row), dim=1)  # (Bₐ, 2K), best first
    token = row_tokens.view(n_active, width * per_row).gather(1, index)
    return _Candidates(scores, index // per_row, token, token == eos_id)


def _finish(beams: _Beams, cand: _Candidates, at_limit: torch.Tensor, step: int, k: int, alpha: float) -> None:
    """1. Candidates among the K best that end in EOS, or any of the K best when the sentence reaches its
    limit, become finished hypotheses; the K best finished ones are kept. An EOS ranked below K is dropped,
    as in fairseq and Hugging Face (K alive hypotheses were better)."""
    n_cand, total = cand.scores.shape[1], beams.alive_tokens.shape[2]
    first_k = torch.arange(n_cand, device=cand.scores.device) < k
    ends = first_k & (cand.eos | at_limit[:, None]) & (cand.scores > -math.inf)
    if not bool(ends.any()):
        return
    new_scores = (cand.scores / beams.lp(step + 1, alpha)).masked_fill(~ends, -math.inf)
    new_tokens = beams.alive_tokens.gather(1, cand.beam[:, :, None].expand(-1, -1, total)).clone()
    new_tokens[:, :, step] = cand.token
    new_lengths = step + 1 - cand.eos.long()  # EOS is scored but not an output token
    beams.fin_scores, pick = torch.cat([beams.fin_scores, new_scores], dim=1).topk(k, dim=1)
    beams.fin_tokens = torch.cat([beams.fin_tokens, new_tokens], dim=1).gather(
        1, pick[:, :, None].expand(-1, -1, total))
    beams.fin_lengths = torch.cat([beams.fin_lengths, new_lengths], dim=1).gather(1, pick)


def _choose_alive(cand: _Candidates, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """2. The K best candidates that did not end in EOS: (scores, beam, token), each (Bₐ, W')."""
    scores, pick = cand.scores.masked_fill(cand.eos, -math.inf).topk(min(k, cand.scores.shape[1]), dim=1)
    return scores, cand.beam.gather(1, pick), cand.token.gather(1, pick)


def _done(beams: _Beams, alive_scores: torch.Tensor, at_limit: torch.Tensor, step: int, alpha: float,
          early_stopping: bool) -> torch.Tensor:
    """3. Which sentences are done (Bₐ,) bool: K finished hypotheses and no alive one can beat the worst of
    them (or, with ``early_stopping``, K finished at all), or the length limit reached. With ``beams.norm`` "hf",
    "can beat" is Hugging Face's estimate: the best alive score over its current length, lp(step + 1)."""
    worst_finished = beams.fin_scores[:, -1]  # −∞ until K hypotheses finished
    if early_stopping:
        done = worst_finished > -math.inf
    elif beams.norm == "hf":
        done = worst_finished >= alive_scores[:, 0] / beams.lp(step + 1, alpha)
    else:
        best_lp = beams.lp_at_limit.clamp(min=beams.lp(step + 2, alpha))
        done = worst_finished >= alive_scores[:, 0] / best_lp
    return done | at_limit


def _write_results(beams: _Beams, done: list[bool], results: list[list[Hypothesis]], n_best: int) -> None:
    """Copy the finished sentences' ``n_best`` hypotheses to the host, into ``results`` (by original index)."""
    rows = [i for i, d in enumerate(done) if d]
    scores, tokens, lengths = (t[rows].tolist() for t in (beams.fin_scores, beams.fin_tokens, beams.fin_lengths))
    for j, i in enumerate(rows):
        results[beams.sentences[i]] = [Hypothesis(tokens[j][b][: lengths[j][b]], scores[j][b])
                                       for b in range(n_best) if scores[j][b] > -math.inf]


def _follow(beams: _Beams, state, keep: torch.Tensor | None, alive_scores: torch.Tensor, alive_beam: torch.Tensor,
            alive_token: torch.Tensor, step: int) -> None:
    """4. The alive hypotheses become the chosen ones, and the decoder's caches follow them: ``survivors`` is
    the flat row (in the current batch of Bₐ·W rows) of the hypothesis each extends. ``keep``: the sentences
    still decoding (None: all of them)."""
    n_active, width, total = beams.alive_tokens.shape
    first_row = (keep if keep is not None else torch.arange(n_active, device=alive_beam.device)) * width
    survivors = (first_row[:, None] + alive_beam).view(-1)  # (Bₐ'·W',)
    new_width = alive_beam.shape[1]
    alive_tokens = beams.alive_tokens.view(n_active * width, total).index_select(0, survivors)
    beams.alive_tokens = alive_tokens.view(-1, new_width, total)
    beams.alive_tokens[:, :, step] = alive_token
    beams.alive_scores = alive_scores
    state.select_beams(survivors, keep)  # the source side stays one row per sentence (only ``keep`` changes it)


@torch.inference_mode()
def beam_search_nbest(
    model,
    src_ids: torch.Tensor,
    beam_size: int = DEFAULTS.beam,
    n_best: int = 1,
    max_len: int | None = None,
    max_len_ratio: float | None = None,
    max_len_offset: int = DEFAULTS.max_len_offset,
    min_len: int = 0,
    length_penalty: float = DEFAULTS.length_penalty,
    early_stopping: bool = False,
    no_repeat_ngram_size: int = 0,
    length_norm: str = "gnmt",
    force_eos: bool = False,
    renormalize: bool = False,
    force_bos: int | None = None,
) -> list[list[Hypothesis]]:
    """Beam search over a batch of sources src_ids (B, S); returns per sentence its ``n_best`` hypotheses,
    best first, scored log P(Y | X) / lp(Y) with lp(Y) = ((5 + |Y|) / 6)^``length_penalty``.

    All B·K hypotheses are one batch: a step is one ``decode_step`` of (B·K, 1) tokens (the first step
    of (B, 1): each sentence starts from BOS alone), then the four parts of the module docstring. Hot path:
    no Python loop over hypotheses; per step two host syncs (any finished? any sentence done?).

    A sentence stops when it has K finished hypotheses and
    * ``early_stopping=False`` (default): no alive hypothesis can still beat the worst of them. Log-probs
      only fall as a hypothesis grows, so an alive raw score s ≤ 0 can at best reach s / max lp(L) over
      the lengths L it may still end at (lp is monotone: L = its limit for α ≥ 0, the next step for α < 0).
      The result is then exactly what running every beam to the length limit would give.
    * ``early_stopping=True``: as soon as it has K finished hypotheses (fairseq's rule; faster, and with
      K = 1 the same as greedy search for any α).

    Finished sentences leave the batch (their rows are dropped in the same reorder), so the remaining ones
    run at the batch size they need. ``no_repeat_ngram_size`` n > 0: no hypothesis extends into an n-gram it
    already contains (``no_repeat_ngram_filter`` on each alive hypothesis's tokens).

    Hugging Face's conventions (``generate``, ``early_stopping=False``), for its models:
    * ``length_norm="hf"``: lp(Y) = |Y|^α, and a sentence stops once its worst finished score ≥ the best alive
      raw score / lp(its current length) — ``generate``'s estimate, not a bound: a longer hypothesis could
      still have won with α > 0.
    * ``force_eos``: the last token a limit allows is EOS, at no cost (``forced_eos_token_id``).
    * ``force_bos``: the first token is this id, at no cost (``forced_bos_token_id``); the first step then keeps
      one finite hypothesis per sentence, and the beams fill from it at the second.
    * ``renormalize``: log-probabilities are renormalised after the bans (``renormalize_logits``).
    * ``early_stopping=True`` is ``generate``'s too: with ``length_norm="hf"`` a sentence ends once K finished.
    """
    if length_norm not in LENGTH_NORMS:
        raise ValueError(f"length_norm={length_norm!r} is not one of {sorted(LENGTH_NORMS)}")
    if beam_size < 1 or not 1 <= n_best <= beam_size:
        raise ValueError(f"need beam_size ≥ 1 and 1 ≤ n_best ≤ beam_size, got {beam_size} and {n_best}")
    config, k, alpha = model.config, beam_size, length_penalty
    limits = output_limits(src_ids, config.pad_id, max_len, max_len_ratio, max_len_offset, max_positions(config))
    n, total = src_ids.shape[0], int(limits.max())
    banned = _banned_tokens(config, src_ids.device)

    memory, memory_mask, _ = model.encode(src_ids)
    state = model.start_decoding(memory, memory_mask, src_ids)  # one row per sentence until the beams fill
    beams = _Beams.start(limits, k, total, config.pad_id, alpha, length_norm)
    results: list[list[Hypothesis]] = [[] for _ in range(n)]
    tokens = torch.full((n, 1), config.bos_id, dtype=torch.long, device=src_ids.device)
    for step in range(total):
        logits = model.decode_step(tokens, state)[:, -1]  # (Bₐ·W, V), in the model's dtype
        log_probs = torch.log_softmax(logits, dim=-1, dtype=torch.float32)  # normalised before any ban
        log_probs[:, banned] = -math.inf
        apply_min_length(log_probs, step, min_len, config.eos_id)
        if no_repeat_ngram_size:
            history = beams.alive_tokens[:, :, :step].reshape(log_probs.shape[0], step)  # (Bₐ·W, step)
            no_repeat_ngram_filter(log_probs, history, no_repeat_ngram_size)
        at_limit = beams.limits == step + 1  # (Bₐ,) this token is the last one allowed
        force_bos_at_start(log_probs, step, force_bos)
        if force_eos:
            force_eos_at_limit(log_probs, at_limit.repeat_interleave(log_probs.shape[0] // at_limit.shape[0]),
                               config.eos_id)
        if renormalize:
            log_probs = torch.log_softmax(log_probs, dim=-1)
        cand = _candidates(log_probs, beams, k, config.eos_id)

        _finish(beams, cand, at_limit, step, k, alpha)
        alive_scores, alive_beam, alive_token = _choose_alive(cand, k)
        done = _done(beams, alive_scores, at_limit, step, alpha, early_stopping)

        keep = None
        if bool(done.any()):
            done_list = done.tolist()
            _write_results(beams, done_list, results, n_best)
            if all(done_list):
                break
            keep = (~done).nonzero().squeeze(1)
            beams.keep(keep, done_list)
            alive_scores, alive_beam, alive_token = alive_scores[keep], alive_beam[keep], alive_token[keep]

        _follow(beams, state, keep, alive_scores, alive_beam, alive_token, step)
        tokens = alive_token.view(-1, 1)
    return results


def beam_search(
    model,
    src_ids: torch.Tensor,
    beam_size: int = DEFAULTS.beam,
    max_len: int | None = None,
    max_len_ratio: float | None = None,
    max_len_offset: int = DEFAULTS.max_len_offset,
    min_len: int = 0,
    length_penalty: float = DEFAULTS.length_penalty,
    early_stopping: bool = False,
    no_repeat_ngram_size: int = 0,
    length_norm: str = "gnmt",
    force_eos: bool = False,
    renormalize: bool = False,
    force_bos: int | None = None,
) -> list[list[int]]:
    """``beam_search_nbest`` with n_best = 1, returning only the best token ids of each sentence."""
    nbest = beam_search_nbest(model, src_ids, beam_size, 1, max_len, max_len_ratio, max_len_offset, min_len,
                              length_penalty, early_stopping, no_repeat_ngram_size, length_norm, force_eos,
                              renormalize, force_bos)
    return [hyps[0].tokens if hyps else [] for hyps in nbest]
