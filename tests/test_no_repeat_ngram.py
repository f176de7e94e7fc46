"""No repeated n-grams (``no_repeat_ngram_size``): the filter against Hugging Face's NoRepeatNGramLogitsProcessor
on random histories, and greedy / beam search on a model that would loop forever without it."""

from __future__ import annotations

import math

import pytest
import torch

from rosetta.decode import beam_search, greedy_search
from rosetta.decode.sampling import no_repeat_ngram_filter
from rosetta.nn.config import ModelConfig
from rosetta.nn.stack import DecoderState

PAD, BOS, EOS = 0, 1, 2


def ngrams(tokens: list[int], n: int) -> list[tuple[int, ...]]:
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


@pytest.mark.parametrize("n", [1, 2, 3, 4])
@pytest.mark.parametrize("seed", range(4))
def test_filter_equals_hugging_face(n, seed):
    """Same banned tokens as transformers' processor, which reads the decoder input with its start token
    (columns PAD and BOS aside: the searches never emit those anyway)."""
    processor = pytest.importorskip("transformers.generation.logits_process").NoRepeatNGramLogitsProcessor(n)
    g = torch.Generator().manual_seed(seed)
    vocab = 7  # a small vocabulary: histories repeat n-grams often
    for t in range(0, 12):
        history = torch.randint(3, vocab, (5, t), generator=g)
        scores = torch.randn(5, vocab, generator=g)
        with_start = torch.cat([torch.full((5, 1), BOS), history], dim=1)
        want = processor(with_start, scores.clone())[:, BOS + 1 :]  # HF's unigram ban also hits <s> itself,
        got = no_repeat_ngram_filter(scores.clone(), history, n)[:, BOS + 1 :]  # which searches never emit
        assert torch.equal(torch.isinf(got), torch.isinf(want)), (t, history, got, want)
        assert torch.equal(got[~torch.isinf(got)], scores[:, BOS + 1 :][~torch.isinf(got)])


def test_filter_by_hand():
    history = torch.tensor([[5, 6, 7, 5, 6], [5, 6, 7, 5, 8]])
    logits = no_repeat_ngram_filter(torch.zeros(2, 10), history, 3)
    assert torch.isinf(logits[0]).nonzero().flatten().tolist() == [7]  # "5 6 7" seen: after "5 6", 7 is banned
    assert not torch.isinf(logits[1]).any()  # "5 8" never seen before
    bigram = no_repeat_ngram_filter(torch.zeros(2, 10), history, 2)
    assert torch.isinf(bigram[0]).nonzero().flatten().tolist() == [7]  # "6 7" seen
    assert not torch.isinf(bigram[1]).any()
    assert not torch.isinf(no_repeat_ngram_filter(torch.zeros(2, 10), history, 0)).any()  # 0 = off


class Looper:
    """A fake encoder–decoder whose next-token choice depends on the last token only: from <s> it prefers 5,
    then 5 → 6 → 5 → 6 … forever (logit 3), token 7 next best (logit 2), then 8 (logit 1); EOS is never
    likely. Without the filter every search loops "5 6 5 6 …" up to its length limit."""

    favourite = {BOS: 5, 5: 6, 6: 5, 7: 5, 8: 5}

    def __init__(self, vocab: int = 10):
        self.vocab = vocab
        self.config = ModelConfig.preset("tiny", src_vocab_size=vocab, tgt_vocab_size=vocab)

    def encode(self, src):
        return torch.zeros(src.shape[0], src.shape[1], 4), (src != PAD)[:, None, None, :], []

    def start_decoding(self, memory, memory_mask, src_ids=None):
        return DecoderState(memory_mask=memory_mask, batch_size=memory.shape[0])

    def decode_step(self, tokens, state):
        logits = torch.full((tokens.shape[0], 1, self.vocab), -5.0)
        logits[:, 0, EOS] = -3.0
        logits[:, 0, 7], logits[:, 0, 8] = 2.0, 1.0
        for row, last in enumerate(tokens[:, -1].tolist()):
            logits[row, 0, self.favourite.get(last, 5)] = 3.0
        state.offset += tokens.shape[1]
        return logits


def test_searches_loop_without_the_filter_and_stop_repeating_with_it():
    model, src = Looper(), torch.tensor([[3, 4, EOS], [4, EOS, PAD]])
    plain = greedy_search(model, src, max_len=12)
    assert plain[0] == [5, 6] * 6  # the loop: "5 6" twelve tokens long
    for n in (2, 3):
        for out in (greedy_search(model, src, max_len=12, no_repeat_ngram_size=n),
                    beam_search(model, src, beam_size=3, max_len=12, no_repeat_ngram_size=n)):
            for tokens in out:
                grams = ngrams(tokens, n)
                assert len(grams) == len(set(grams)), (n, tokens)
    # n = 2 by hand: 5 6 5, then 6 is banned ("5 6" seen) → 7; then 5, then 6 and 7 banned → 8 …
    assert greedy_search(model, src, max_len=6, no_repeat_ngram_size=2)[0] == [5, 6, 5, 7, 5, 8]


def test_beam_scores_stay_log_probabilities():
    """Banned tokens are removed, not renormalised: a beam's score is the model's log-probability sum."""
    from rosetta.decode import beam_search_nbest

    model, src = Looper(), torch.tensor([[3, EOS]])
    hyp = beam_search_nbest(model, src, beam_size=2, max_len=4, length_penalty=0.0, no_repeat_ngram_size=2)[0][0]
    log_z = torch.tensor([3.0, 2.0, 1.0, -3.0] + [-5.0] * 6).logsumexp(0).item()  # the 10 logits of a step
    logits = {5: 3.0, 6: 3.0, 7: 2.0, 8: 1.0}
    assert hyp.score == pytest.approx(sum(logits[t] - log_z for t in hyp.tokens))
    assert not math.isinf(hyp.score)
