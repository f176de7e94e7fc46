"""Decoding: greedy and beam search against uncached, naive and brute-force references; logits processors."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import rosetta
from rosetta import decode
from rosetta.decode import (
    apply_min_length,
    beam_search,
    beam_search_nbest,
    greedy_search,
    output_limits,
    sample_next,
    top_k_filter,
    top_p_filter,
)

PAD, BOS, EOS = 0, 1, 2
VARIANTS = {
    "postln-sinusoidal": {},
    "preln-rope-rmsnorm": dict(norm_first=True, positional="rope", norm="rmsnorm"),
    "learned-swiglu": dict(positional="learned", activation="swiglu", max_len=32),
}


def make_model(seed: int, vocab: int = 30, **overrides) -> rosetta.Transformer:
    """A tiny random model, dropout off; an untied output layer with larger weights, so its next-token
    distributions are far from flat (no near-ties between the best tokens)."""
    torch.manual_seed(seed)
    config = rosetta.ModelConfig.preset("tiny", src_vocab_size=vocab, tgt_vocab_size=vocab, dropout=0.0,
                                        tie_output=False, **overrides)
    model = rosetta.Transformer(config).eval()
    with torch.no_grad():
        model.output.weight.normal_(0.0, 0.25)
    return model


class EosRamp:
    """A model whose EOS logit rises with the position (+0.8 per step from −4): random tiny models mostly
    repeat one token forever, this gives them outputs of varied lengths. Cached (``decode_step``) and
    uncached (``__call__``) paths add the same bias, so it changes what is decoded, not how."""

    def __init__(self, model: rosetta.Transformer, slope: float = 0.8, base: float = -4.0):
        self.model, self.config, self.slope, self.base = model, model.config, slope, base

    def _ramp(self, logits: torch.Tensor, start: int) -> torch.Tensor:
        position = torch.arange(start, start + logits.shape[1], dtype=logits.dtype)
        logits = logits.clone()
        logits[:, :, EOS] += self.slope * position + self.base
        return logits

    def __call__(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        return self._ramp(self.model(src, tgt_in), 0)

    def encode(self, src):
        return self.model.encode(src)

    def start_decoding(self, memory, memory_mask, src_ids=None):
        return self.model.start_decoding(memory, memory_mask)

    def decode_step(self, tokens, state):
        start = state.offset
        return self._ramp(self.model.decode_step(tokens, state), start)


def ramp_model(seed: int, **overrides) -> EosRamp:
    return EosRamp(make_model(seed, **overrides))


def make_src(seed: int, lengths: list[int], vocab: int = 30) -> torch.Tensor:
    """(B, max(lengths)) sources ending in EOS, padded with PAD."""
    g = torch.Generator().manual_seed(seed)
    src = torch.full((len(lengths), max(lengths)), PAD, dtype=torch.long)
    for i, n in enumerate(lengths):
        src[i, : n - 1] = torch.randint(3, vocab, (n - 1,), generator=g)
        src[i, n - 1] = EOS
    return src


def unpadded(src: torch.Tensor, i: int) -> torch.Tensor:
    row = src[i]
    return row[row != PAD][None]


def step_log_probs(model, src: torch.Tensor, prefixes: list[list[int]]) -> torch.Tensor:
    """Uncached: the full teacher-forced forward of [BOS] + prefix for each (equal-length) prefix → (N, V)."""
    tgt_in = torch.tensor([[BOS] + p for p in prefixes], dtype=torch.long)
    return model(src.expand(len(prefixes), -1), tgt_in)[:, -1].float().log_softmax(-1)


def allowed(step: int, min_len: int, vocab: int) -> list[int]:
    return [v for v in range(vocab) if v not in (PAD, BOS) and not (v == EOS and step < min_len)]


# ---------------------------------------------------------------------------------------------- references
def reference_greedy(model, src: torch.Tensor, limit: int, min_len: int = 0) -> decode.Hypothesis:
    """One unpadded source (1, S), no cache: re-run the whole forward every step."""
    tokens, score = [], 0.0
    for step in range(limit):
        log_probs = step_log_probs(model, src, [tokens])[0]
        ok = allowed(step, min_len, log_probs.shape[0])
        best = max(ok, key=lambda v: log_probs[v].item())
        score += log_probs[best].item()
        if best == EOS:
            break
        tokens.append(best)
    return decode.Hypothesis(tokens, score)


def reference_beam(model, src: torch.Tensor, k: int, limit: int, min_len: int, alpha: float,
                   stop: str = "bound") -> list[decode.Hypothesis]:
    """One unpadded source (1, S), no cache, plain Python lists: the rules of beam_search_nbest spelled out.

    stop: "bound" (early_stopping=False), "k" (early_stopping=True) or "never" (run to the limit)."""

    def lp(n: int) -> float:
        return ((5 + n) / 6) ** alpha

    alive: list[tuple[list[int], float]] = [([], 0.0)]
    finished: list[decode.Hypothesis] = []
    for step in range(limit):
        log_probs = step_log_probs(model, src, [toks for toks, _ in alive])
        candidates = [(s + log_probs[b, v].item(), toks, v) for b, (toks, s) in enumerate(alive)
                      for v in allowed(step, min_len, log_probs.shape[1])]
        candidates = sorted(candidates, key=lambda c: -c[0])[: 2 * k]
        at_limit = step + 1 == limit
        for s, toks, v in candidates[:k]:
            if v == EOS or at_limit:
                finished.append(decode.Hypothesis(toks if v == EOS else toks + [v], s / lp(step + 1)))
        finished = sorted(finished, key=lambda h: -h.score)[:k]
        alive = [(toks + [v], s) for s, toks, v in candidates if v != EOS][:k]
        if at_limit or not alive:
            break
        if len(finished) == k and stop != "never":
            if stop == "k" or finished[-1].score >= alive[0][1] / max(lp(step + 2), lp(limit)):
                break
    return finished


def assert_same_hypotheses(got: list[decode.Hypothesis], want: list[decode.Hypothesis]) -> None:
    assert [h.tokens for h in got] == [h.tokens for h in want]
    assert [h.score for h in got] == pytest.approx([h.score for h in want], abs=1e-4)


# ---------------------------------------------------------------------------------------------- greedy
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("min_len", [0, 3])
@pytest.mark.parametrize("ramp", [False, True])
def test_cached_greedy_equals_uncached_reference(variant, min_len, ramp):
    model = ramp_model(3, **VARIANTS[variant]) if ramp else make_model(1, **VARIANTS[variant])
    src = make_src(0, [5, 8, 3, 6])
    limits = output_limits(src, PAD, max_len=9, max_len_ratio=1.0, max_len_offset=2).tolist()
    got = greedy_search(model, src, max_len=9, max_len_ratio=1.0, max_len_offset=2, min_len=min_len,
                        return_scores=True)
    for i, hyp in enumerate(got):
        assert_same_hypotheses([hyp], [reference_greedy(model, unpadded(src, i), limits[i], min_len)])
    assert [h.tokens for h in got] == greedy_search(model, src, max_len=9, max_len_ratio=1.0, max_len_offset=2,
                                                    min_len=min_len)


@pytest.mark.parametrize("seed", [1, 3])
def test_greedy_batched_equals_one_by_one(seed):
    """Varied output lengths: finished rows leave the batch while the others go on."""
    model = ramp_model(seed)
    src = make_src(seed, [4, 9, 2, 7, 5, 9, 3])
    batched = greedy_search(model, src, max_len=10, return_scores=True)
    for i, hyp in enumerate(batched):
        assert_same_hypotheses([hyp], greedy_search(model, unpadded(src, i), max_len=10, return_scores=True))


# ---------------------------------------------------------------------------------------------- beam search
@pytest.mark.parametrize("seed", [1, 3])
@pytest.mark.parametrize("alpha, early_stopping", [(0.0, False), (0.6, True), (1.0, True)])
def test_beam_of_one_equals_greedy(seed, alpha, early_stopping):
    """With K = 1 a finished hypothesis stops the sentence when it cannot be beaten (α = 0) or at once
    (early stopping): exactly greedy search."""
    model = ramp_model(seed)
    src = make_src(seed + 10, [6, 3, 8, 5])
    greedy = greedy_search(model, src, max_len=12, return_scores=True)
    beam = beam_search_nbest(model, src, beam_size=1, max_len=12, length_penalty=alpha,
                             early_stopping=early_stopping)
    assert [h[0].tokens for h in beam] == [h.tokens for h in greedy]
    if alpha == 0.0:
        assert [h[0].score for h in beam] == pytest.approx([h.score for h in greedy], abs=1e-4)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("k, alpha, early_stopping, min_len", [
    (2, 0.6, False, 0), (3, 0.0, False, 2), (3, 1.0, True, 0), (4, -0.5, False, 0), (4, 0.6, False, 4),
])
def test_beam_equals_naive_uncached_reference(variant, k, alpha, early_stopping, min_len):
    model = ramp_model(3, **VARIANTS[variant])
    src = make_src(4, [6, 3, 8, 5, 2])
    limits = output_limits(src, PAD, max_len=11, max_len_ratio=1.5, max_len_offset=1).tolist()
    got = beam_search_nbest(model, src, beam_size=k, n_best=k, max_len=11, max_len_ratio=1.5, max_len_offset=1,
                            min_len=min_len, length_penalty=alpha, early_stopping=early_stopping)
    for i, hyps in enumerate(got):
        want = reference_beam(model, unpadded(src, i), k, limits[i], min_len, alpha,
                              "k" if early_stopping else "bound")
        assert_same_hypotheses(hyps, want)


@pytest.mark.parametrize("ramp, k, alpha", [(True, 3, 0.0), (True, 3, 0.6), (True, 3, 1.5), (True, 3, -0.5),
                                           (False, 2, 3.0)])
def test_stop_bound_loses_nothing(ramp, k, alpha):
    """early_stopping=False stops a sentence only when running its beam to the limit changes nothing.
    (The last case is one where the looser bound s / lp(next length) stops too early and loses the best.)"""
    model = ramp_model(1) if ramp else make_model(1)
    src = make_src(6, [6, 3, 8, 5, 4, 7])
    limits = output_limits(src, PAD, max_len=12).tolist()
    got = beam_search_nbest(model, src, beam_size=k, n_best=k, max_len=12, length_penalty=alpha)
    for i, hyps in enumerate(got):
        assert_same_hypotheses(hyps, reference_beam(model, unpadded(src, i), k, limits[i], 0, alpha, "never"))


@pytest.mark.parametrize("max_len", [3, 4])
@pytest.mark.parametrize("alpha", [0.0, 0.6, 2.0])
def test_wide_beam_finds_the_brute_force_best(max_len, alpha):
    """Vocabulary of 5 (PAD, BOS, EOS, a, b): a beam wider than the number of outputs is exhaustive."""
    model = make_model(5, vocab=5)
    src = make_src(5, [4, 2], vocab=5)
    outputs = [list(y) + [EOS] for n in range(max_len) for y in itertools.product((3, 4), repeat=n)]
    outputs += [list(y) for y in itertools.product((3, 4), repeat=max_len)]  # stopped by the limit
    n_best = 5
    got = beam_search_nbest(model, src, beam_size=len(outputs), n_best=n_best, max_len=max_len,
                            length_penalty=alpha)
    for i, hyps in enumerate(got):
        scored = []
        for y in outputs:  # the whole sequence scored with one teacher-forced forward
            log_probs = model(unpadded(src, i), torch.tensor([[BOS] + y[:-1]]))[0].log_softmax(-1)
            log_p = sum(log_probs[t, v].item() for t, v in enumerate(y))
            scored.append(decode.Hypothesis([v for v in y if v != EOS], log_p / ((5 + len(y)) / 6) ** alpha))
        assert_same_hypotheses(hyps, sorted(scored, key=lambda h: -h.score)[:n_best])


@pytest.mark.parametrize("k", [1, 3])
def test_beam_batched_equals_one_by_one(k):
    model = ramp_model(1)
    src = make_src(7, [4, 9, 2, 7, 5, 9, 3])
    batched = beam_search_nbest(model, src, beam_size=k, n_best=k, max_len=10)
    for i, hyps in enumerate(batched):
        assert_same_hypotheses(hyps, beam_search_nbest(model, unpadded(src, i), beam_size=k, n_best=k,
                                                       max_len=10)[0])
    assert beam_search(model, src, beam_size=k, max_len=10) == [h[0].tokens for h in batched]


def test_nbest_sorted_and_distinct():
    model = ramp_model(3)
    src = make_src(1, [6, 3, 8])
    for hyps in beam_search_nbest(model, src, beam_size=5, n_best=5, max_len=7):
        assert len(hyps) == 5
        scores = [h.score for h in hyps]
        assert scores == sorted(scores, reverse=True)
        assert len({tuple(h.tokens) for h in hyps}) == 5


# ---------------------------------------------------------------------------------------------- lengths, ids
@pytest.mark.parametrize("search", ["greedy", "beam"])
def test_min_len_holds_back_eos_and_max_len_is_respected(search):
    model = make_model(1)  # a model that ends almost at once
    src = make_src(2, [5, 8, 3])

    def run(**kw):
        if search == "greedy":
            return greedy_search(model, src, **kw)
        return beam_search(model, src, beam_size=3, **kw)

    assert min(map(len, run(max_len=10))) < 4
    assert all(4 <= len(y) <= 10 for y in run(max_len=10, min_len=4))
    assert [len(y) for y in run(max_len=6, min_len=6)] == [6, 6, 6]
    assert [len(y) for y in run(max_len=7, min_len=50)] == [7, 7, 7]  # min beyond max: max wins
    ratio = run(max_len_ratio=0.5, max_len_offset=1, min_len=50)
    assert [len(y) for y in ratio] == [int(0.5 * n) + 1 for n in (5, 8, 3)]


def test_output_limits():
    src = make_src(0, [4, 10, 1])
    assert output_limits(src, PAD, max_len=7).tolist() == [7, 7, 7]
    assert output_limits(src, PAD, max_len_ratio=1.5, max_len_offset=2).tolist() == [8, 17, 3]
    assert output_limits(src, PAD, max_len=9, max_len_ratio=1.5, max_len_offset=2).tolist() == [8, 9, 3]
    assert output_limits(src, PAD).tolist() == [int(n * decode.DEFAULTS.max_len_ratio) + 10 for n in (4, 10, 1)]
    assert output_limits(src, PAD, max_len=50, cap=12).tolist() == [12, 12, 12]
    with pytest.raises(ValueError):
        output_limits(src, PAD, max_len=0)


class PadLover:
    """A model wrapper whose PAD and BOS logits tower over everything else: they must still never appear."""

    def __init__(self, model):
        self.model, self.config = model, model.config

    def encode(self, src):
        return self.model.encode(src)

    def start_decoding(self, memory, mask, src_ids=None):
        return self.model.start_decoding(memory, mask)

    def decode_step(self, tokens, state):
        logits = self.model.decode_step(tokens, state).clone()
        logits[..., PAD] += 100.0
        logits[..., BOS] += 50.0
        return logits


def test_pad_and_bos_never_emitted():
    model = PadLover(make_model(0))
    src = make_src(3, [5, 8, 3])
    for out in (greedy_search(model, src, max_len=8, min_len=2), beam_search(model, src, beam_size=4, max_len=8,
                                                                            min_len=2)):
        assert all(len(y) >= 2 and PAD not in y and BOS not in y and EOS not in y for y in out)


def test_bad_beam_arguments():
    model = make_model(0)
    with pytest.raises(ValueError):
        beam_search_nbest(model, make_src(0, [3]), beam_size=2, n_best=3)


# ---------------------------------------------------------------------------------------------- processors
def nucleus(probs: list[float], p: float) -> set[int]:
    """Reference: the smallest set of most likely tokens whose mass reaches p."""
    order = sorted(range(len(probs)), key=lambda i: -probs[i])
    kept, mass = set(), 0.0
    for i in order:
        kept.add(i)
        mass += probs[i]
        if mass >= p:
            break
    return kept


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), vocab=st.integers(2, 12), k=st.one_of(st.none(), st.integers(1, 12)),
       p=st.one_of(st.none(), st.floats(0.05, 0.999)), temperature=st.floats(0.3, 2.0))
def test_samples_stay_in_the_allowed_set(seed, vocab, k, p, temperature):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(3, vocab, generator=g) * 3
    tokens = torch.stack([sample_next(logits, temperature, k, p, g) for _ in range(8)], dim=1)  # (3, 8)
    for row, drawn in zip(logits, tokens.tolist()):
        scaled = row / temperature
        ok = set(range(vocab))
        if k is not None and k < vocab:
            kth = scaled.topk(k).values[-1]
            ok = {i for i in ok if scaled[i] >= kth}
        if p is not None:
            masked = torch.full_like(scaled, -math.inf)
            masked[list(ok)] = scaled[list(ok)]
            ok = nucleus(masked.softmax(-1).tolist(), p)
        assert set(drawn) <= ok


def test_filters_keep_the_top_token_and_greedy_is_argmax():
    logits = torch.tensor([[1.0, 3.0, 2.0, -1.0], [0.0, 0.0, 5.0, 0.1]])
    assert top_k_filter(logits, 1).argmax(-1).tolist() == [1, 2]
    assert torch.isinf(top_k_filter(logits, 2)).sum().item() == 4
    assert (top_p_filter(logits, 1e-6) > -math.inf).sum(-1).tolist() == [1, 1]
    assert torch.equal(top_p_filter(logits, None), logits) and torch.equal(top_k_filter(logits, 0), logits)
    for temperature in (0.0, -1.0):
        assert sample_next(logits, temperature, top_k=3, top_p=0.5).tolist() == [1, 2]
    assert apply_min_length(logits.clone(), 2, 3, 2)[:, 2].tolist() == [-math.inf, -math.inf]
    assert torch.equal(apply_min_length(logits.clone(), 3, 3, 2), logits)


def test_same_generator_seed_same_samples():
    logits = torch.randn(4, 50)

    def draw(seed):
        g = torch.Generator().manual_seed(seed)
        return [sample_next(logits, 1.0, 20, 0.9, g).tolist() for _ in range(5)]

    assert draw(7) == draw(7)
    assert draw(7) != draw(8)
