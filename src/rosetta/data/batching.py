"""Batches: token-budgeted, length-bucketed, seeded, resumable, shared out over DDP ranks.

Corpus token ids stay in memory as Python lists; padded tensors are built only for the batch being yielded.

How ``max_tokens`` is counted: a batch of B examples costs ``B * max(longest source, longest target)``,
i.e. the padded size of the larger of its two tensors, so neither ``src`` (B, S) nor ``tgt_in`` (B, T)
exceeds ``max_tokens`` elements. Lengths are those of the collated tensors: for translation pairs
``BatchStream`` uses ``len(src)`` and ``len(tgt) + 1`` (BOS/EOS are added by ``collate_translation``).
An example longer than ``max_tokens`` on its own forms a batch by itself (never dropped; filter long
examples beforehand, e.g. with ``max_length``).

Order: examples are sorted by length with ties broken by a seeded random draw, cut greedily into batches,
and the order of the batches is shuffled with ``random.Random`` seeded from (seed, epoch): the same
(seed, epoch) gives the same batches on every run and machine; another epoch gives another order.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch


def _rng(seed: int, epoch: int) -> random.Random:
    return random.Random(seed * 1_000_003 + epoch)


def make_batches(src_lengths: Sequence[int], tgt_lengths: Sequence[int] | None = None,
                 max_tokens: int | None = 4096, *, shuffle: bool = True, seed: int = 0, epoch: int = 0,
                 max_sentences: int | None = None) -> list[list[int]]:
    """Example indices grouped into batches of at most ``max_tokens`` padded tokens (see the module doc)
    and at most ``max_sentences`` examples. ``shuffle=False``: sorted by length, batches in that order."""
    if max_tokens is None and max_sentences is None:
        raise ValueError("make_batches needs max_tokens or max_sentences")
    lengths = list(src_lengths) if tgt_lengths is None else [max(s, t) for s, t in zip(src_lengths, tgt_lengths)]
    if tgt_lengths is not None and len(tgt_lengths) != len(src_lengths):
        raise ValueError(f"{len(src_lengths)} source lengths but {len(tgt_lengths)} target lengths")
    rng = _rng(seed, epoch)
    ties = [rng.random() for _ in lengths] if shuffle else list(range(len(lengths)))
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], ties[i]))
    batches: list[list[int]] = []
    batch: list[int] = []
    width = 0
    for i in order:
        new_width = max(width, lengths[i])
        too_many = max_tokens is not None and (len(batch) + 1) * new_width > max_tokens
        if batch and (too_many or (max_sentences is not None and len(batch) >= max_sentences)):
            batches.append(batch)
            batch, new_width = [], lengths[i]
        batch.append(i)
        width = new_width
    if batch:
        batches.append(batch)
    if shuffle:
        rng.shuffle(batches)
    return batches


def shard(batches: Sequence[list[int]], rank: int, world_size: int) -> list[list[int]]:
    """Rank ``rank``'s share ``batches[rank::world_size]``, after dropping the remainder so that every
    rank gets the same number of batches."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside world_size {world_size}")
    usable = len(batches) - len(batches) % world_size
    return list(batches[rank:usable:world_size])


# ------------------------------------------------------------------------------------------------ collate
@dataclass
class TranslationBatch:
    """``src`` (B, S); ``tgt_in`` (B, T) = BOS + y; ``tgt_out`` (B, T) = y + EOS; all padded with pad_id."""

    src: torch.Tensor
    tgt_in: torch.Tensor
    tgt_out: torch.Tensor
    n_src_tokens: int
    n_tgt_tokens: int  # non-pad positions of tgt_out (what the loss is averaged over)

    def to(self, device: torch.device | str) -> TranslationBatch:
        return TranslationBatch(self.src.to(device), self.tgt_in.to(device), self.tgt_out.to(device),
                                self.n_src_tokens, self.n_tgt_tokens)

    def __len__(self) -> int:
        return self.src.shape[0]


@dataclass
class LMBatch:
    """``x`` (B, T) tokens and ``y`` (B, T) the next tokens (x shifted by one)."""

    x: torch.Tensor
    y: torch.Tensor
    n_tokens: int

    def to(self, device: torch.device | str) -> LMBatch:
        return LMBatch(self.x.to(device), self.y.to(device), self.n_tokens)


@dataclass
class ClassificationBatch:
    """``ids`` (B, T) padded token ids, ``lengths`` (B,), ``labels`` (B,)."""

    ids: torch.Tensor
    lengths: torch.Tensor
    labels: torch.Tensor

    def to(self, device: torch.device | str) -> ClassificationBatch:
        return ClassificationBatch(self.ids.to(device), self.lengths.to(device), self.labels.to(device))


def pad(seqs: Sequence[Sequence[int]], pad_id: int, width: int | None = None) -> torch.Tensor:
    """(B, width) long tensor of ``seqs`` left-aligned, padded with ``pad_id`` (width: the longest)."""
    width = max((len(s) for s in seqs), default=0) if width is None else width
    out = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    for i, s in enumerate(seqs):
        if s:
            out[i, : len(s)] = torch.as_tensor(s, dtype=torch.long)
    return out


def collate_translation(examples: Sequence[tuple[Sequence[int], Sequence[int]]], pad_id: int, bos_id: int,
                        eos_id: int, max_len: int | None = None) -> TranslationBatch:
    """Pad (source ids, target ids) pairs into a ``TranslationBatch``. Sources are used as given (add EOS
    before if the model wants one); ``max_len`` truncates sources and the target tensors to that length."""
    srcs = [list(s[:max_len]) if max_len else list(s) for s, _ in examples]
    tgts = [list(t[: max_len - 1]) if max_len else list(t) for _, t in examples]
    tgt_in = pad([[bos_id] + t for t in tgts], pad_id)
    tgt_out = pad([t + [eos_id] for t in tgts], pad_id)
    return TranslationBatch(pad(srcs, pad_id), tgt_in, tgt_out, sum(map(len, srcs)), sum(len(t) + 1 for t in tgts))


def chunk_tokens(ids: Sequence[int], block_size: int) -> list[list[int]]:
    """Cut a token stream into non-overlapping examples of ``block_size + 1`` tokens (stride ``block_size``:
    the last token of one is the first of the next), for ``collate_lm``. A short tail is dropped."""
    return [list(ids[i : i + block_size + 1]) for i in range(0, len(ids) - block_size, block_size)]


def collate_lm(chunks: Sequence[Sequence[int]]) -> LMBatch:
    """Equal-length chunks of ``T + 1`` tokens → ``x`` = chunk[:-1], ``y`` = chunk[1:], both (B, T)."""
    data = torch.as_tensor([list(c) for c in chunks], dtype=torch.long)
    return LMBatch(data[:, :-1].contiguous(), data[:, 1:].contiguous(), data[:, 1:].numel())


def collate_classification(examples: Sequence[tuple[Sequence[int], int]], pad_id: int,
                           max_len: int | None = None) -> ClassificationBatch:
    """(token ids, label) examples → a ``ClassificationBatch`` (ids truncated to ``max_len``)."""
    seqs = [list(ids[:max_len]) if max_len else list(ids) for ids, _ in examples]
    return ClassificationBatch(pad(seqs, pad_id), torch.tensor([len(s) for s in seqs]),
                               torch.tensor([label for _, label in examples], dtype=torch.long))


def default_lengths(example: Any) -> tuple[int, int] | int:
    """Collated length(s) of an example: ``(len(src), len(tgt) + 1)`` for a (src ids, tgt ids) pair,
    ``len(ids)`` for an (ids, label) pair or a plain sequence of ids."""
    if isinstance(example, tuple) and len(example) == 2:
        first, second = example
        if isinstance(second, int):
            return len(first)
        return len(first), len(second) + 1
    return len(example)


# ------------------------------------------------------------------------------------------------ stream
class BatchStream:
    """An endless, resumable stream of collated batches, epoch after epoch, for one DDP rank.

    Each epoch's batches come from ``make_batches`` (seeded by ``seed`` and the epoch number); rank ``rank``
    of ``world_size`` takes its ``shard``. ``state_dict()`` records (epoch, index of the next batch in this
    epoch); ``load_state_dict`` makes iteration continue with exactly that batch. The index is per rank and
    equal on all ranks, so rank 0's state resumes every rank. ``collate`` turns a list of examples into a
    batch (default: the list itself).
    """

    def __init__(self, examples: Sequence[Any], max_tokens: int | None = 4096, *, seed: int = 0, rank: int = 0,
                 world_size: int = 1, collate: Callable[[list[Any]], Any] | None = None,
                 lengths: Callable[[Any], tuple[int, int] | int] = default_lengths, shuffle: bool = True,
                 max_sentences: int | None = None):
        if not examples:
            raise ValueError("BatchStream: no examples")
        self.examples, self.max_tokens, self.max_sentences = examples, max_tokens, max_sentences
        self.seed, self.rank, self.world_size, self.shuffle = seed, rank, world_size, shuffle
        self.collate = collate or (lambda batch: batch)
        sizes = [lengths(x) for x in examples]
        pairs = isinstance(sizes[0], tuple)
        self._src = [s[0] for s in sizes] if pairs else sizes
        self._tgt = [s[1] for s in sizes] if pairs else None
        self.epoch, self.index = 0, 0
        self._cached: tuple[int, list[list[int]]] | None = None
        if not self.epoch_batches(0):
            raise ValueError(f"BatchStream: fewer batches than ranks (world_size={world_size}); "
                             "lower max_tokens or use more data")

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """This rank's batches (lists of example indices) of ``epoch``, in order."""
        if self._cached is None or self._cached[0] != epoch:
            all_batches = make_batches(self._src, self._tgt, self.max_tokens, shuffle=self.shuffle, seed=self.seed,
                                       epoch=epoch, max_sentences=self.max_sentences)
            self._cached = (epoch, shard(all_batches, self.rank, self.world_size))
        return self._cached[1]

    def __len__(self) -> int:
        """Batches per epoch on this rank."""
        return len(self.epoch_batches(self.epoch))

    def __iter__(self) -> Iterator[Any]:
        while True:
            batches = self.epoch_batches(self.epoch)
            if self.index >= len(batches):
                self.epoch, self.index = self.epoch + 1, 0
                continue
            indices = batches[self.index]
            self.index += 1  # the state now points at the next batch, before this one is used
            yield self.collate([self.examples[i] for i in indices])

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "index": self.index, "seed": self.seed, "world_size": self.world_size}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue at ``state``'s position. Saved with another world size, the position is rescaled to the
        same fraction of the epoch (approximately the same data; exact only for the same world size)."""
        self.epoch, self.index = int(state["epoch"]), int(state["index"])
        saved_ws = int(state.get("world_size", self.world_size))
        if saved_ws != self.world_size:
            self.index = self.index * saved_ws // self.world_size
