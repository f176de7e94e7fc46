"""rosetta.data.batching: token budget, coverage, determinism, exact resume, DDP shares, collate shapes."""

import itertools
import random

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rosetta.data import batching
from rosetta.data.batching import BatchStream, make_batches, shard

PAD, BOS, EOS = 0, 1, 2


def synthetic_pairs(n: int = 300, seed: int = 0) -> list[tuple[list[int], list[int]]]:
    rng = random.Random(seed)
    return [([rng.randrange(4, 50) for _ in range(rng.randrange(1, 30))],
             [rng.randrange(4, 50) for _ in range(rng.randrange(1, 30))]) for _ in range(n)]


def lengths(pairs):
    return [len(s) for s, _ in pairs], [len(t) + 1 for _, t in pairs]


def cost(batch, src, tgt):
    return len(batch) * max(max(src[i], tgt[i]) for i in batch)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 40), st.integers(1, 40)), min_size=1, max_size=80),
       st.integers(20, 200), st.integers(0, 3))
def test_every_example_once_and_budget_respected(sizes, max_tokens, epoch):
    src, tgt = [s for s, _ in sizes], [t for _, t in sizes]
    batches = make_batches(src, tgt, max_tokens, seed=5, epoch=epoch)
    assert sorted(i for b in batches for i in b) == list(range(len(sizes)))
    for b in batches:
        assert b and (cost(b, src, tgt) <= max_tokens or len(b) == 1)


def test_overlong_example_is_its_own_batch():
    batches = make_batches([3, 50, 3, 4], [3, 2, 3, 4], 20, shuffle=False)
    assert [1] in batches and sorted(sum(batches, [])) == [0, 1, 2, 3]


def test_deterministic_per_seed_and_epoch_and_different_otherwise():
    src, tgt = lengths(synthetic_pairs())
    a = make_batches(src, tgt, 200, seed=1, epoch=0)
    assert a == make_batches(src, tgt, 200, seed=1, epoch=0)
    assert a != make_batches(src, tgt, 200, seed=1, epoch=1)
    assert a != make_batches(src, tgt, 200, seed=2, epoch=0)
    fixed = make_batches(src, tgt, 200, shuffle=False)
    assert fixed == make_batches(src, tgt, 200, shuffle=False, epoch=3)
    widths = [max(max(src[i], tgt[i]) for i in b) for b in fixed]
    assert widths == sorted(widths)  # unshuffled: by length


def test_max_sentences():
    batches = make_batches([1] * 10, None, None, max_sentences=3, seed=0)
    assert sorted(map(len, batches)) == [1, 3, 3, 3]
    with pytest.raises(ValueError):
        make_batches([1], None, None)


def test_shard_equal_disjoint_covering():
    batches = [[i] for i in range(11)]
    shares = [shard(batches, r, 3) for r in range(3)]
    assert [len(s) for s in shares] == [3, 3, 3]
    flat = [b[0] for s in shares for b in s]
    assert len(set(flat)) == 9 and set(flat) <= set(range(11))
    with pytest.raises(ValueError):
        shard(batches, 3, 3)


def collate(examples):
    return batching.collate_translation(examples, PAD, BOS, EOS)


def test_stream_epoch_covers_every_example_once():
    pairs = synthetic_pairs(200)
    stream = BatchStream(pairs, max_tokens=150, seed=3)
    n = len(stream)
    it = iter(stream)
    seen = [tuple(map(tuple, ex)) for _ in range(n) for ex in next(it)]
    assert sorted(seen) == sorted(tuple(map(tuple, p)) for p in pairs)
    assert stream.state_dict()["epoch"] == 0 and stream.state_dict()["index"] == n
    next(it)
    assert stream.state_dict()["epoch"] == 1 and stream.state_dict()["index"] == 1


def test_stream_resume_continues_with_the_next_batch():
    pairs = synthetic_pairs(120)
    a = BatchStream(pairs, max_tokens=120, seed=7, collate=collate)
    it = iter(a)
    k = len(a) - 2
    for _ in range(k):
        next(it)
    state = a.state_dict()
    expected = [next(it) for _ in range(5)]  # crosses into epoch 1
    b = BatchStream(pairs, max_tokens=120, seed=7, collate=collate)
    b.load_state_dict(state)
    got = list(itertools.islice(b, 5))
    for x, y in zip(expected, got):
        assert torch.equal(x.src, y.src) and torch.equal(x.tgt_in, y.tgt_in) and torch.equal(x.tgt_out, y.tgt_out)
    assert b.state_dict() == a.state_dict()


def test_rank_shares_disjoint_and_covering():
    pairs = synthetic_pairs(300)
    world = 3
    streams = [BatchStream(pairs, max_tokens=100, seed=2, rank=r, world_size=world) for r in range(world)]
    assert len({len(s) for s in streams}) == 1
    everything = make_batches(*lengths(pairs), 100, seed=2, epoch=0)
    shares = [s.epoch_batches(0) for s in streams]
    taken = [i for share in shares for b in share for i in b]
    assert len(taken) == len(set(taken))  # disjoint
    dropped = len(everything) % world
    assert sum(map(len, shares)) == len(everything) - dropped
    assert sorted(map(tuple, sum(shares, []))) == sorted(map(tuple, everything[: len(everything) - dropped]))
    with pytest.raises(ValueError, match="fewer batches than ranks"):
        BatchStream(pairs[:1], max_tokens=100, rank=0, world_size=2)


def test_collate_translation():
    batch = batching.collate_translation([([5, 6, 7, EOS], [8, 9]), ([5, EOS], [8, 9, 10, 11])], PAD, BOS, EOS)
    assert batch.src.tolist() == [[5, 6, 7, EOS], [5, EOS, PAD, PAD]]
    assert batch.tgt_in.tolist() == [[BOS, 8, 9, PAD, PAD], [BOS, 8, 9, 10, 11]]
    assert batch.tgt_out.tolist() == [[8, 9, EOS, PAD, PAD], [8, 9, 10, 11, EOS]]
    assert batch.src.dtype == torch.long and len(batch) == 2
    assert batch.n_tgt_tokens == 8 and batch.n_src_tokens == 6
    short = batching.collate_translation([([5, 6, 7], [8, 9, 10, 11])], PAD, BOS, EOS, max_len=3)
    assert short.src.shape == (1, 3) and short.tgt_in.tolist() == [[BOS, 8, 9]]
    assert short.tgt_out.tolist() == [[8, 9, EOS]]


def test_collate_lm_and_chunks():
    chunks = batching.chunk_tokens(list(range(10)), 3)
    assert chunks == [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9]]
    batch = batching.collate_lm(chunks[:2])
    assert batch.x.tolist() == [[0, 1, 2], [3, 4, 5]] and batch.y.tolist() == [[1, 2, 3], [4, 5, 6]]
    assert batch.n_tokens == 6
    stream = BatchStream(chunks, max_tokens=None, max_sentences=2, collate=batching.collate_lm)
    assert next(iter(stream)).x.shape[1] == 3


def test_collate_classification():
    batch = batching.collate_classification([([5, 6, 7], 1), ([8], 0)], PAD)
    assert batch.ids.tolist() == [[5, 6, 7], [8, PAD, PAD]]
    assert batch.lengths.tolist() == [3, 1] and batch.labels.tolist() == [1, 0]
    assert batching.default_lengths(([5, 6], 1)) == 2 and batching.default_lengths(([5, 6], [7])) == (2, 2)
