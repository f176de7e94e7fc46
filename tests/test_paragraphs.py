"""rosetta.data.paragraphs (the zh-text pretraining corpus) on tiny gzip files made here: streaming with the file's
sha256 (against hashlib over the bytes), exact duplicates dropped, a held-out slice that depends on the text alone,
packing equal to ``pretraining.pack_segments`` and never across files, every token kept exactly once."""

import dataclasses
import gzip
import hashlib
import random
from collections import Counter
from pathlib import Path

import pytest

from rosetta.data import corpora, paragraphs
from rosetta.data.pretraining import pack_segments, split_sentences
from rosetta.data.registry import REGISTRY
from rosetta.data.tokenizer import Tokenizer
from rosetta.special_tokens import BOS_ID, EOS_ID


def made_up_paragraphs(n: int, seed: int, subject: str = "我") -> list[str]:
    """Templated Chinese paragraphs of 2-4 sentences (``subject`` starts each)."""
    rng = random.Random(seed)
    where, what = ["北京", "上海", "学校", "公园", "家里"], ["看书", "跑步", "吃饭", "唱歌", "画画"]
    return ["".join(f"{subject}第{rng.randrange(1000)}天在{rng.choice(where)}{rng.choice(what)}。"
                    for _ in range(rng.randrange(2, 5))) for _ in range(n)]


def write_gz(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return path


def test_read_paragraphs_streams_lines_and_hashes_the_file(tmp_path):
    lines = ["  第一段。 ", "", "第二段，有 空格。", "   ", "第三段"]
    gz = write_gz(tmp_path / "a.txt.gz", lines)
    plain = tmp_path / "b.txt"
    plain.write_text("\n".join(lines) + "\n", encoding="utf-8")
    for path in (gz, plain):
        hashes: dict[str, str] = {}
        stream = paragraphs.read_paragraphs(path, hashes)
        assert next(stream) == "第一段。" and not hashes  # a generator: nothing is read ahead to the end
        assert list(stream) == ["第二段，有 空格。", "第三段"]
        assert hashes == {path.name: hashlib.sha256(path.read_bytes()).hexdigest()}


def test_damaged_files_are_named_with_the_line(tmp_path):
    bad_utf8 = tmp_path / "bad.txt.gz"
    with gzip.open(bad_utf8, "wb") as f:
        f.write("好的\n".encode() + b"\xff\xfe\n")
    with pytest.raises(ValueError, match=r"bad.txt.gz: line 2 is not valid UTF-8"):
        list(paragraphs.read_paragraphs(bad_utf8))
    whole = write_gz(tmp_path / "whole.txt.gz", made_up_paragraphs(200, 0)).read_bytes()
    truncated = tmp_path / "cut.txt.gz"
    truncated.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ValueError, match=r"cut.txt.gz: not a complete gzip file after line \d+"):
        list(paragraphs.read_paragraphs(truncated))


def test_duplicates_are_dropped_and_the_held_out_slice_depends_on_the_text_alone():
    texts = [f"段落{i}：今天天气很好。" for i in range(20_000)]
    a = paragraphs.Source("a", paragraphs=texts[:12_000] + ["段落5：今天天气很好。", "  段落7：今天天气很好。 "])
    b = paragraphs.Source("b", paragraphs=texts[12_000:] + ["段落19999：今天天气很好。"])
    counts = paragraphs._Kept()
    kept = list(paragraphs.kept_paragraphs([a, b], counts))
    assert [p for _, _, p in kept] == texts and counts.duplicates == 3  # the first occurrence is the one kept
    held = {p for _, h, p in kept if h}
    assert abs(len(held) - 200) < 4 * (20_000 * 0.01 * 0.99) ** 0.5  # 1 %, within 4 binomial standard deviations
    reordered = paragraphs.Source("r", paragraphs=list(reversed(texts)))
    assert {p for _, h, p in paragraphs.kept_paragraphs([reordered]) if h} == held  # not the order, the text
    assert paragraphs.paragraph_key(" 今天  天气\t好 ") == paragraphs.paragraph_key("今天 天气 好")
    assert set(paragraphs.training_text([a, b])) == set(texts) - held


def test_segment_packer_equals_pack_segments_of_one_document():
    rng = random.Random(1)
    sentences = [[rng.randrange(5, 90) for _ in range(rng.choice([1, 2, 5, 9, 13, 30]))] for _ in range(200)]
    for max_tokens in (1, 7, 12, 40):
        out: list[list[int]] = []
        packer = paragraphs.SegmentPacker(max_tokens, out.append)
        for s in sentences:
            packer.add(s)
        packer.flush()
        assert out == pack_segments([sentences], max_tokens)


def test_packed_segments_index_like_a_list():
    store = paragraphs.PackedSegments(vocab_size=8000)
    rows = [[1, 5, 6, 2], [1, 7, 2], [1, 65535, 2]]
    for r in rows:
        store.append(r)
    assert len(store) == 3 and [store[i] for i in range(3)] == rows and store[-1] == rows[-1]
    assert store.tokens.itemsize == 2 and store.n_tokens == 10
    with pytest.raises(IndexError):
        store[3]


def test_pack_corpus_keeps_every_token_once_and_never_joins_files(tmp_path):
    sources = [paragraphs.Source("a", paragraphs=made_up_paragraphs(400, 1, "甲")),
               paragraphs.Source("b", paragraphs=made_up_paragraphs(400, 2, "乙") + made_up_paragraphs(3, 1, "甲"))]
    tokenizer = Tokenizer.train_wordpiece(paragraphs.training_text(sources), 300, 1)
    train, held, stats = paragraphs.pack_corpus(sources, tokenizer, max_tokens=20)
    a, b = tokenizer.token_to_id("甲"), tokenizer.token_to_id("乙")
    segments = {False: [train[i] for i in range(len(train))], True: [held[i] for i in range(len(held))]}
    for side, rows in segments.items():
        assert all(r[0] == BOS_ID and r[-1] == EOS_ID and len(r) <= 22 for r in rows)
        assert not any(a in r and b in r for r in rows)  # a segment never spans two files
        expected = Counter(t for _, h, p in paragraphs.kept_paragraphs(sources) if h == side
                           for s in split_sentences(p) for t in tokenizer.encode(s))
        assert Counter(t for r in rows for t in r[1:-1]) == expected
    assert stats["duplicates_dropped"] == 3 and stats["paragraphs"] == 800
    assert stats["held_out_paragraphs"] > 0 and stats["train_segments"] == len(train) > 0
    assert stats["train_tokens"] == train.n_tokens


def test_a_weighted_part_repeats_its_training_segments_and_not_its_held_out_slice():
    made = {"a": made_up_paragraphs(300, 1, "甲"), "b": made_up_paragraphs(300, 2, "乙")}
    tokenizer = Tokenizer.train_wordpiece((p for ps in made.values() for p in ps), 300, 1)

    def packed(weight_b: int):
        sources = [paragraphs.Source("a", paragraphs=made["a"]), paragraphs.Source("b", paragraphs=made["b"],
                                                                                     weight=weight_b)]
        train, held, stats = paragraphs.pack_corpus(sources, tokenizer, max_tokens=20)
        return [train[i] for i in range(len(train))], [held[i] for i in range(len(held))], stats

    once, held_once, _ = packed(1)
    thrice, held_thrice, stats = packed(3)
    b = tokenizer.token_to_id("乙")
    a_rows, b_rows = [r for r in once if b not in r], [r for r in once if b in r]
    assert thrice == a_rows + b_rows * 3  # a's segments once, then b's three times, each in its order
    assert held_thrice == held_once and stats["train_segments"] == len(thrice) and stats["weights"] == [1, 3]
    assert paragraphs.corpus_parts("zh-text + zh-pretraining*20") == [("zh-text", 1), ("zh-pretraining", 20)]
    for bad in ("zh-text*0", "zh-text*2.5", "zh-text*"):
        with pytest.raises(ValueError, match="whole number >= 1"):
            paragraphs.corpus_parts(bad)
    assert paragraphs.is_paragraph_corpus("zh-text*2+zh-pretraining")


def test_zh_text_is_registered_and_read_local_first_with_its_checksums(tmp_path, monkeypatch):
    info = REGISTRY["zh-text"]
    assert info.layout == "paragraphs" and all(f.url is None and len(f.sha256) == 64 for f in info.files)
    for i, f in enumerate(info.files):
        write_gz(tmp_path / "zh-text" / f.path, made_up_paragraphs(30, i))
    with pytest.warns(UserWarning, match="differs from the registered"):
        counts = paragraphs._Kept()
        list(paragraphs.kept_paragraphs(paragraphs.corpus_sources("zh-text", tmp_path), counts))
    assert [v["registered"] for v in counts.files.values()] == [False] * 4
    real = {f.path: hashlib.sha256((tmp_path / "zh-text" / f.path).read_bytes()).hexdigest() for f in info.files}
    monkeypatch.setitem(REGISTRY, "zh-text", dataclasses.replace(
        info, files=tuple(dataclasses.replace(f, sha256=real[f.path]) for f in info.files)))
    counts = paragraphs._Kept()
    list(paragraphs.kept_paragraphs(paragraphs.corpus_sources("zh-text", tmp_path), counts))
    assert all(v["registered"] for v in counts.files.values())
    assert paragraphs.is_paragraph_corpus("zh-text+zh-pretraining") and not paragraphs.is_paragraph_corpus("sst2")


def test_bad_corpus_names_and_whole_string_reads_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown corpus 'zh-txt'"):
        paragraphs.corpus_sources("zh-text+zh-txt", tmp_path)
    with pytest.raises(ValueError, match="'sst2' is a classification corpus, not paragraphs"):
        paragraphs.corpus_sources("sst2", tmp_path)
    with pytest.raises(ValueError, match="too big for one string"):
        corpora.load_text("zh-text", data_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="corpus 'zh-text' not found"):
        paragraphs.corpus_sources("zh-text", tmp_path)
