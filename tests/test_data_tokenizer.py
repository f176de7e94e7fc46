"""rosetta.data.tokenizer: fixed special ids, exact round trips (en/de/zh/mixed), CJK isolation, files."""

import functools
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rosetta.data import tokenizer as T
from rosetta.data.tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID, Tokenizer

EXAMPLES = ["我喜欢 Python 3.11。", "Das ist ein Haus, oder?", "I am a student.", "他说：“你好！”",
            "Die Straße ist schön, größer als Öl-Fässer.", "Er sagte: „Nein!“ (wirklich)", "Tom's 42 cats; $5.",
            "我们明天去北京吗？我不知道…", "Hello 世界, 你好 world!"]


def synthetic_corpus() -> list[str]:
    """Made-up sentences covering every character of EXAMPLES, repeated so that BPE learns merges."""
    words = ["the student", "a house", "das Haus", "ist schön", "ein Student", "我喜欢学习", "你好世界",
             "Python is fun", "über alles", "Grüße aus Köln"]
    return [f"{w} {v}." for w in words for v in words] + EXAMPLES * 3


@functools.cache
def trained(vocab_size: int = 300) -> Tokenizer:
    return Tokenizer.train(synthetic_corpus(), vocab_size=vocab_size, min_frequency=2)


def test_special_ids_are_fixed():
    assert (PAD_ID, BOS_ID, EOS_ID, UNK_ID) == (0, 1, 2, 3)
    for tok in (trained(), Tokenizer.train_chars(["abc"])):
        assert [tok.id_to_token(i) for i in range(4)] == ["<pad>", "<s>", "</s>", "<unk>"]
        assert tok.token_to_id("</s>") == EOS_ID


def test_encode_adds_no_specials_and_decode_skips_them():
    tok = trained()
    ids = tok.encode("I am a student.")
    assert ids and not set(ids) & {PAD_ID, BOS_ID, EOS_ID, UNK_ID}
    assert tok.decode([BOS_ID, *ids, EOS_ID, PAD_ID, PAD_ID]) == "I am a student."
    assert tok.encode_batch(["I am", "a student."]) == [tok.encode("I am"), tok.encode("a student.")]
    assert tok.decode_batch([tok.encode("I am"), [BOS_ID]]) == ["I am", ""]
    assert 40 < tok.vocab_size <= 300


@pytest.mark.parametrize("text", EXAMPLES)
def test_round_trip_examples(text):
    tok = trained()
    assert tok.decode(tok.encode(text)) == text  # these are already NFKC-normal, single-spaced


def test_normalisation_nfkc_whitespace_and_kept_fullwidth_punctuation():
    tok = trained()
    assert tok.normalize("  ＡＢＣ１２３ \t x\n y  ") == "ABC123 x y"
    assert tok.normalize("你好，世界！真的？（是）…") == "你好，世界！真的？（是）…"
    assert tok.decode(tok.encode("  I   am\ta student. ")) == "I am a student."


def test_chinese_characters_are_isolated():
    tok = trained()
    pieces = tok.tokens("我喜欢学习你好世界")  # each appears many times in training, adjacent
    assert [p.lstrip("▁") for p in pieces] == list("我喜欢学习你好世界")
    pre = [p for p, _ in tok.hf.pre_tokenizer.pre_tokenize_str("他说：“你好！” OK")]
    assert pre == ["▁他", "说", "：", "“", "你", "好", "！", "”", "▁OK"]
    assert tok.tokens("I am a student.")[-1] == "."


def test_unseen_character_becomes_unk():
    tok = trained()
    assert tok.encode("ж") == [tok.token_to_id("▁"), UNK_ID] or tok.encode("ж") == [UNK_ID]
    assert tok.decode(tok.encode("I ж am")) == "I  am"  # <unk> is dropped, its spaces stay


ALPHABET = "abcxyzABXäöüßÄÖÜ0123456789.,;:!?'\"()-%&+/我你他是的学生中国人好吗。，！？“”"


@functools.cache
def alphabet_tokenizer() -> Tokenizer:
    words = ["".join(ALPHABET[(i * 7 + j) % len(ALPHABET)] for j in range(1 + i % 5)) for i in range(400)]
    return Tokenizer.train([" ".join(words[i : i + 8]) for i in range(0, 400, 4)], vocab_size=200)


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=ALPHABET + "   \t", max_size=40))
def test_round_trip_property(text):
    tok = alphabet_tokenizer()
    expected = " ".join(text.split())  # NFKC leaves this alphabet alone; whitespace runs collapse
    assert tok.normalize(text) == expected
    assert tok.decode(tok.encode(text)) == expected
    assert "".join(tok.tokens(text)).replace("▁", " ").strip() == expected


def test_save_load_equality_and_errors(tmp_path):
    tok = trained()
    path = tok.save(tmp_path / "tok" / "tokenizer.json")
    again = Tokenizer.load(path)
    assert again == tok and Tokenizer.load(tmp_path / "tok") == tok
    assert all(again.encode(t) == tok.encode(t) for t in EXAMPLES)
    with pytest.raises(FileNotFoundError, match="missing.json"):
        Tokenizer.load(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="bad.json"):
        Tokenizer.load(tmp_path / "bad.json")


def test_joint_and_separate_tokenizers(tmp_path):
    src = ["the cat sat", "a dog ran"] * 5
    tgt = ["猫坐着", "狗跑了"] * 5
    s, t = T.train_tokenizers(src, tgt, vocab_size=100, joint=True)
    assert s is t and s.encode("猫") and s.token_to_id("<unk>") == UNK_ID
    T.save_tokenizers(tmp_path, s, t)
    assert sorted(os.listdir(tmp_path)) == ["tokenizer.json"]
    s2, t2 = T.load_tokenizers(tmp_path)
    assert s2 is t2 and s2 == s
    s, t = T.train_tokenizers(src, tgt, vocab_size=100, joint=False)
    assert s != t and s.encode("猫")[-1] == UNK_ID and UNK_ID not in t.encode("猫")
    T.save_tokenizers(tmp_path, s, t)
    assert sorted(os.listdir(tmp_path)) == ["tokenizer.src.json", "tokenizer.tgt.json"]
    s2, t2 = T.load_tokenizers(tmp_path)
    assert (s2, t2) == (s, t)
    with pytest.raises(FileNotFoundError, match="tokenizer.src.json"):
        T.load_tokenizers(tmp_path / "nothing")


def test_char_tokenizer(tmp_path: Path):
    text = "First Line:\nHello, world!\n\nÄ end\n"
    tok = Tokenizer.train_chars([text])
    assert tok.vocab_size == 4 + len(set(text))
    assert tok.decode(tok.encode(text)) == text and len(tok.encode(text)) == len(text)
    assert tok.tokens("He\n") == ["H", "e", "\n"]
    assert tok.encode("z") == [UNK_ID]
    loaded = Tokenizer.load(tok.save(tmp_path))
    assert (tmp_path / "tokenizer.json").is_file() and loaded == tok
