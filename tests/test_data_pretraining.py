"""rosetta.data.pretraining: sentences, packing (checked by brute force), and that the Chinese pretraining text
holds no evaluation text (CMRC test articles, XQuAD-zh) and exactly Tatoeba's training split."""

import os
import random

import pytest

from rosetta.data.corpora import load_parallel
from rosetta.data.pretraining import chinese_documents, pack_segments, split_segments, split_sentences
from rosetta.data.qa import cmrc_splits, xquad_splits


def test_split_sentences_keeps_punctuation_and_closing_quotes():
    assert split_sentences("他来了。你呢？好") == ["他来了。", "你呢？", "好"]
    assert split_sentences("他说：“走吧！”然后走了……真的吗?!\n  第二行 ") == \
        ["他说：“走吧！”", "然后走了……", "真的吗?!", "第二行"]
    assert split_sentences("") == [] and split_sentences(" \n ") == []


def test_pack_segments_is_greedy_and_loses_nothing():
    rng = random.Random(0)
    docs = [[[rng.randrange(100) for _ in range(rng.choice([1, 3, 7, 12, 25]))] for _ in range(rng.randrange(1, 9))]
            for _ in range(30)]
    segments = pack_segments(docs, 10)
    assert all(1 <= len(s) <= 10 for s in segments)
    # brute force: the segments of each document, in order, spell its sentences; greedy: no segment could
    # have taken the first sentence (piece) of the next one
    flat = [t for s in segments for t in s]
    assert flat == [t for doc in docs for sentence in doc for t in sentence]
    pieces_per_doc = [[sentence[i:i + 10] for sentence in doc for i in range(0, len(sentence), 10)] for doc in docs]
    it = iter(segments)
    for pieces in pieces_per_doc:
        packed, current = [], []
        for piece in pieces:
            if current and len(current) + len(piece) > 10:
                packed.append(current)
                current = []
            current = current + piece
        packed.append(current)
        assert [next(it) for _ in packed] == packed
    with pytest.raises(ValueError, match="max_tokens"):
        pack_segments(docs, 0)


def test_split_segments_is_seeded_and_disjoint():
    segments = [[i] for i in range(50)]
    train, valid = split_segments(segments, 5, seed=1)
    assert len(valid) == 5 and len(train) == 45 and sorted(train + valid) == segments
    assert split_segments(segments, 5, seed=1) == (train, valid) and split_segments(segments, 5, seed=2)[1] != valid
    with pytest.raises(ValueError, match="valid_size"):
        split_segments(segments, 50)


@pytest.fixture(scope="module")
def documents():
    if not os.environ.get("ROSETTA_DATA"):
        pytest.skip("ROSETTA_DATA is not set (point it at the shared corpora folder)")
    return chinese_documents(seed=1)


def test_chinese_corpus_holds_no_evaluation_text(documents):
    sentences = {s for docs in documents.values() for doc in docs for s in doc}
    text = "".join(s for doc in documents["cmrc2018"] for s in doc)
    splits = cmrc_splits(seed=1)
    test_contexts = {c for a in splits["test"] for c in a.contexts}
    xquad_zh = {c for split in xquad_splits("zh", seed=1).values() for a in split for c in a.contexts}
    shared = 0
    for context in test_contexts | xquad_zh:
        assert context not in text
        long_ones = [s for s in split_sentences(context) if len(s) >= 15]
        found = sum(s in sentences for s in long_ones)
        # Wikipedia's boilerplate ("本鱼分布于…", "口中型；颌齿两列…") recurs across articles: a few sentences
        # of another article may match (14 of 440 contexts, 1–3 sentences each), never the article itself
        assert found <= max(3, len(long_ones) // 4), context[:40]
        shared += found > 0
    assert shared < 0.05 * len(test_contexts | xquad_zh)
    train_contexts = [c for a in splits["train"] for c in a.contexts]
    assert len(documents["cmrc2018"]) == len(train_contexts)
    assert text == "".join("".join(split_sentences(c)) for c in train_contexts)


def test_chinese_corpus_is_exactly_tatoebas_training_split(documents):
    train = [zh.strip() for _, zh in load_parallel("tatoeba-en-zh", "train", src_lang="en", tgt_lang="zh", seed=1)]
    assert documents["tatoeba"] == [[s for s in train if s]]
    held_out = {zh for split in ("valid", "test")
                for _, zh in load_parallel("tatoeba-en-zh", split, src_lang="en", tgt_lang="zh", seed=1)}
    assert len(held_out - set(train)) > 1500  # the held-out Chinese sentences really are left out
