"""Text for masked-language-model pretraining: the Chinese corpus, sentences, segments of at most N tokens.

``chinese_documents(data_dir)`` assembles Chinese text that no evaluation ever reads:

    source            what                                              why it is not test data
    cmrc2018          the contexts of CMRC 2018's "train" articles      ``cmrc_splits`` (the QA split by article):
                      (trial + the training part of dev)                the held-out dev articles are never read
    tatoeba           the Chinese side of Tatoeba's TRAINING split      ``load_parallel("tatoeba-en-zh", "train")``
                      (the translation task's seed and clean-up)       with the translation recipe's seed 1

Left out on purpose: XQuAD-zh (an evaluation set: SQuAD v1.1 dev translated) and the CMRC test articles.
The rest of ``../shared/data`` has no Chinese. Each document is a list of sentences (``split_sentences``);
Tatoeba's sentences form one document (independent sentences in the split's seeded order).

``pack_segments`` packs the token ids of consecutive sentences of one document into segments of at most
``max_tokens`` (BERT's "full sentences" packing: few padding tokens, long contexts for the learned positions).
A sentence longer than ``max_tokens`` is cut into pieces of ``max_tokens``.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from pathlib import Path

from rosetta.data.corpora import load_parallel
from rosetta.data.qa import cmrc_splits

CORPUS_NAME = "zh-pretraining"
# A sentence ends after 。！？!? (or a run of them, or …) and any closing quotes or brackets; newlines end one too.
_SENTENCE = re.compile(r"[^\n。！？!?…]*(?:[。！？!?…]+[”’」』）)]*|\n|$)")


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text``, in order, punctuation kept, surrounding whitespace and empty ones dropped:
    ``"他来了。你呢？好"`` → ``["他来了。", "你呢？", "好"]``."""
    return [s.strip() for s in _SENTENCE.findall(text) if s.strip()]


def chinese_documents(data_dir: str | Path | None = None, seed: int = 1) -> dict[str, list[list[str]]]:
    """{"cmrc2018": one document per training article, "tatoeba": [all training sentences]} (module docstring).

    ``seed`` is the split seed of both sources (1: the seed the QA and translation recipes use)."""
    articles = cmrc_splits(data_dir, seed=seed)["train"]
    cmrc = [split_sentences(context) for article in articles for context in article.contexts]
    tatoeba = [zh for _, zh in load_parallel("tatoeba-en-zh", "train", data_dir, src_lang="en", tgt_lang="zh",
                                             seed=seed)]
    return {"cmrc2018": [d for d in cmrc if d], "tatoeba": [[s.strip() for s in tatoeba if s.strip()]]}


def pack_segments(documents: Sequence[Sequence[Sequence[int]]], max_tokens: int) -> list[list[int]]:
    """Token ids of each document's sentences packed greedily, in order, into segments of ≤ ``max_tokens`` ids.

    documents: per document, per sentence, its token ids. A segment never spans two documents; a sentence
    longer than ``max_tokens`` is cut into ``max_tokens``-long pieces (the last one packed on as usual)."""
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be at least 1, got {max_tokens}")
    segments: list[list[int]] = []
    for document in documents:
        current: list[int] = []
        for sentence in document:
            pieces = [list(sentence[i : i + max_tokens]) for i in range(0, len(sentence), max_tokens)]
            for piece in pieces:
                if current and len(current) + len(piece) > max_tokens:
                    segments.append(current)
                    current = []
                current = current + piece
        if current:
            segments.append(current)
    return segments


def split_segments(segments: Sequence[list[int]], valid_size: int, seed: int = 1
                   ) -> tuple[list[list[int]], list[list[int]]]:
    """(train, valid): ``valid_size`` segments drawn by a seeded shuffle are held out for validation."""
    if not 0 < valid_size < len(segments):
        raise ValueError(f"valid_size must be between 1 and {len(segments) - 1} segments, got {valid_size}")
    order = list(range(len(segments)))
    random.Random(seed).shuffle(order)
    held = set(order[:valid_size])
    train = [s for i, s in enumerate(segments) if i not in held]
    return train, [segments[i] for i in sorted(held)]
