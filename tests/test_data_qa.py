"""QA data: SQuAD reading (CMRC's UTF-16 offsets, answers without a span), splits by article, and windows whose
offsets give every gold answer back from the ORIGINAL context (random contexts via hypothesis, and the real
XQuAD / CMRC 2018 files including the answers CMRC's SOURCE.md flags)."""

import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rosetta.data.qa import (
    Question,
    answer_tokens,
    char_span,
    cmrc_splits,
    collate_windows,
    drcd_articles,
    load_qa,
    make_windows,
    parse_squad,
    python_offset,
    questions_of,
    read_squad,
    specials_of,
    to_simplified_articles,
    xquad_splits,
)
from rosetta.data.tokenizer import Tokenizer
from rosetta.models.pretrained import load_tokenizer, minilm_path

WORDS = ["the", "Norman", "conquest", "of", "1066", "river", "Warsaw's", "café", "naïve", "co-operation",
         "北京", "大学", "学生", "喜欢", "足球", "（", "）", "，", "。", "𫚭", "3.14", "x"]


@pytest.fixture(scope="module")
def wordpiece():
    return load_tokenizer(minilm_path(), max_length=32)  # truncation on: make_windows must not depend on it


@pytest.fixture(scope="module")
def chars():
    return Tokenizer.train_chars(["".join(WORDS) + " "])


def real_data() -> Path:
    root = os.environ.get("ROSETTA_DATA")
    if not root or not Path(root).is_dir():
        pytest.skip("ROSETTA_DATA is not set (point it at the shared corpora folder)")
    return Path(root)


# ------------------------------------------------------------------------------------------------ reading
def test_parse_squad_fixes_utf16_offsets_and_keeps_answers_without_span():
    context = "𫚭鱼是一种鱼，生活在海里。"  # one character outside the BMP: 2 UTF-16 units, 1 Python character
    data = {"data": [{"title": "t", "paragraphs": [{"context": context, "qas": [
        {"id": "a", "question": "q", "answers": [{"text": "海里", "answer_start": 11}]},  # UTF-16 units
        {"id": "b", "question": "q", "answers": [{"text": "海里", "answer_start": 10}]},  # Python offset
        {"id": "c", "question": "q", "answers": [{"text": "不在上下文中", "answer_start": -1},
                                                 {"text": "鱼", "answer_start": 1}]}]}]}]}
    (article,) = parse_squad(data)
    a, b, c = article.questions
    assert context[10:12] == "海里"
    assert (a.answers[0].start, b.answers[0].start) == (10, 10)
    assert c.answers[0].start == -1 and c.spans == [c.answers[1]] and c.answer_texts == ["不在上下文中", "鱼"]
    assert python_offset(context, 2) == 1 and python_offset(context, 1) == -1  # inside the surrogate pair


def test_parse_squad_errors_say_what_is_wrong(tmp_path):
    with pytest.raises(ValueError, match="'data' list"):
        parse_squad({"version": "1.1"})
    with pytest.raises(ValueError, match="article 0 .*'paragraphs'"):
        parse_squad({"data": [{"title": "x"}]})
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_squad(bad)


# ------------------------------------------------------------------------------------------------ windows
def test_slices_overlap_by_stride_and_cover_the_context(wordpiece):
    context = " ".join(["word"] * 50)
    (q,) = [Question("1", "what?", context)]
    windows = make_windows([q], wordpiece, max_length=20, stride=5, targets=False)
    sp = specials_of(wordpiece)
    room = 20 - 3 - len(wordpiece.encode("what?", add_special_tokens=False).ids)
    starts = []
    for w in windows:
        assert len(w.ids) <= 20 and w.ids[0] == sp.cls and w.ids[-1] == sp.sep
        ctx = [o for o in w.offsets if o is not None]
        starts.append(ctx[0][0])
        assert len(ctx) <= room
    assert len(windows) == 1 + -(-(50 - room) // (room - 5))  # ceil((n - room) / (room - stride)) more
    assert windows[0].offsets[4][0] == 0 and windows[-1].offsets[-2][1] == len(context)
    shared = {o for o in windows[0].offsets if o} & {o for o in windows[1].offsets if o}
    assert len(shared) == 5
    with pytest.raises(ValueError, match="stride"):
        make_windows([q], wordpiece, max_length=20, stride=17, targets=False)  # no room left for a question


def test_answer_tokens_include_partly_covered_tokens():
    offsets = [(0, 2), (2, 4), (5, 9)]  # "34个 word" → "34" "个" "word"
    assert answer_tokens(offsets, 1, 3) == (0, 1)  # "4个" needs the token "34"
    assert answer_tokens(offsets, 4, 9) == (2, 2)  # a leading space belongs to no token
    assert answer_tokens(offsets[1:], 0, 3) is None  # starts before this window
    assert answer_tokens(offsets, 4, 5) is None  # only whitespace


@st.composite
def contexts_with_answers(draw):
    words = draw(st.lists(st.sampled_from(WORDS), min_size=1, max_size=60))
    seps = draw(st.lists(st.sampled_from([" ", "  ", "\n", ""]), min_size=len(words), max_size=len(words)))
    a = draw(st.integers(0, len(words) - 1))
    b = draw(st.integers(a, min(len(words) - 1, a + 4)))
    context, spans = "", []
    for i, (w, sep) in enumerate(zip(words, seps)):
        if i:
            context += sep or " "  # answers are whole words: a word boundary on both sides
        spans.append((len(context), len(context) + len(w)))
        context += w
    return context, spans[a][0], spans[b][1]


def check_recoverable(tokenizer, context, start, end, max_length, stride):
    gold = context[start:end]
    q = parse_squad({"data": [{"paragraphs": [{"context": context, "qas": [
        {"id": "1", "question": "which words?", "answers": [{"text": gold, "answer_start": start}]}]}]}]})
    windows = make_windows(questions_of(q), tokenizer, max_length, stride)
    hits = [w for w in windows if w.start > 0]
    for w in windows:
        ctx = [o for o in w.offsets if o is not None]
        inside = bool(ctx) and ctx[0][0] <= start and ctx[-1][1] >= end
        assert (w.start > 0) == inside  # a target exactly where the whole answer is in the window
        if w.start > 0:
            assert w.offsets[w.start] is not None and w.offsets[w.end] is not None and w.start <= w.end
            s, e = char_span(context, w, w.start, w.end)
            assert context[s:e] == gold
    return hits


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(contexts_with_answers(), st.integers(24, 40), st.integers(0, 6))
def test_every_gold_answer_comes_back_wordpiece(wordpiece, case, max_length, stride):
    context, start, end = case
    hits = check_recoverable(wordpiece, context, start, end, max_length, stride)
    answer_len = len(wordpiece.encode(context[start:end], add_special_tokens=False).ids)
    if answer_len <= stride + 1:
        assert hits  # neighbouring windows share `stride` tokens: an answer this short lies whole in one


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(contexts_with_answers(), st.integers(20, 34), st.integers(0, 4))
def test_every_gold_answer_comes_back_characters(chars, case, max_length, stride):
    context, start, end = case
    hits = check_recoverable(chars, context, start, end, max_length, stride)
    if end - start <= stride + 1 or len(context) <= max_length - 3 - len("which words?"):
        assert hits


def test_collate_pads_and_masks(wordpiece):
    qs = [Question("1", "who?", "Ada wrote it."), Question("2", "what did Ada write in 1843?", "Notes.")]
    windows = make_windows(qs, wordpiece, targets=False)
    batch = collate_windows(windows, specials_of(wordpiece).pad)
    assert batch.ids.shape == batch.mask.shape == batch.type_ids.shape
    assert batch.mask.sum(1).tolist() == [len(w.ids) for w in windows]
    assert batch.type_ids[0, : len(windows[0].ids)].tolist() == windows[0].type_ids


# ------------------------------------------------------------------------------------------------ real data
@pytest.mark.corpus
def test_splits_are_by_article_seeded_and_parallel():
    root = real_data()
    en, zh = xquad_splits("en", root), xquad_splits("zh", root)
    assert [len(en["train"]), len(en["test"])] == [38, 10]
    assert [a.title for a in en["test"]] == [a.title for a in zh["test"]]
    assert [q.id for a in en["test"] for q in a.questions] == [q.id for a in zh["test"] for q in a.questions]
    assert not {a.title for a in en["train"]} & {a.title for a in en["test"]}
    assert [a.title for a in xquad_splits("en", root, seed=2)["test"]] != [a.title for a in en["test"]]
    cmrc = cmrc_splits(root)
    train_ctx = {c for a in cmrc["train"] for c in a.contexts}
    assert not train_ctx & {c for a in cmrc["test"] for c in a.contexts}
    assert len(cmrc["test"]) == 200 and len(questions_of(cmrc["train"])) + len(questions_of(cmrc["test"])) == 4221
    assert [q.id for q in questions_of(cmrc_splits(root)["test"])] == [q.id for q in questions_of(cmrc["test"])]
    with pytest.raises(ValueError, match="choose one of en, zh, de"):
        xquad_splits("fr", root)


def flagged_cmrc_answers(root: Path) -> list[Question]:
    """The answers SOURCE.md flags: answer_start in UTF-16 units (context[start:start+len] is not the text)."""
    out = []
    for name in ("cmrc2018_trial.json", "cmrc2018_dev.json"):
        data = json.loads((root / "cmrc2018" / name).read_text(encoding="utf-8"))
        for art in data["data"]:
            for par in art["paragraphs"]:
                for qa in par["qas"]:
                    for a in qa["answers"]:
                        s, t = a["answer_start"], a["text"]
                        if s >= 0 and par["context"][s:s + len(t)] != t:
                            one = {"data": [{"paragraphs": [{"context": par["context"], "qas": [
                                {"id": qa["id"], "question": qa["question"], "answers": [a]}]}]}]}
                            out.extend(questions_of(parse_squad(one)))
    return out


@pytest.mark.corpus
def test_real_answers_come_back_from_windows(wordpiece, chars):
    root = real_data()
    flagged = flagged_cmrc_answers(root)
    assert len(flagged) == 12 and all(q.spans for q in flagged)  # 7 dev + 5 trial, all fixed
    cmrc = questions_of(cmrc_splits(root)["train"] + cmrc_splits(root)["test"])
    zh_chars = Tokenizer.train_chars([q.context + q.question for q in cmrc + flagged])
    xquad = {lang: questions_of(sum(xquad_splits(lang, root).values(), [])) for lang in ("en", "zh")}
    cases = [(zh_chars, cmrc + flagged, True), (wordpiece, xquad["en"], False), (wordpiece, xquad["zh"], False),
             (wordpiece, flagged, False)]
    for tokenizer, questions, exact in cases:
        windows = make_windows(questions, tokenizer, max_length=384, stride=128)
        found, recovered = set(), 0
        for w in windows:
            if w.start > 0 and w.question not in found:
                found.add(w.question)
                q = questions[w.question]
                s, e = char_span(q.context, w, w.start, w.end)
                gold = q.spans[0].text.strip()
                assert gold in q.context[s:e]
                recovered += q.context[s:e] == gold
        # every token covers at least one character, so an answer of ≤ stride + 1 characters lies whole in a
        # window; longer ones (a few CMRC answers are whole paragraphs) may straddle every window's edge
        missed = [q for i, q in enumerate(questions) if i not in found]
        assert all(len(q.spans[0].text) > 129 for q in missed) and len(missed) <= 0.005 * len(questions)
        if exact:
            assert recovered == len(found)  # characters: the exact gold text, every time
        else:
            assert recovered >= 0.99 * len(found)  # WordPiece: a token may reach past the answer ("34" of "4个")


# ------------------------------------------------------------------------------------ Traditional → Simplified
def test_traditional_articles_become_simplified_with_every_answer_at_its_offset():
    data = {"data": [{"title": "梵語", "paragraphs": [{"context": "在歐洲，梵語的學術研究由德國學者開創。", "qas": [
        {"id": "1", "question": "哪一地區？", "answers": [{"text": "歐洲", "answer_start": 1}]},
        {"id": "2", "question": "誰開創了研究？", "answers": [{"text": "德國學者", "answer_start": 12},
                                                        {"text": "不在文中", "answer_start": -1}]}]}]}]}
    (article,) = to_simplified_articles(parse_squad(data))
    q1, q2 = article.questions
    assert article.title == "梵语" and q1.context == "在欧洲，梵语的学术研究由德国学者开创。"  # written by hand
    assert (q1.question, q2.question) == ("哪一地区？", "谁开创了研究？")
    assert [(a.text, a.start) for a in q1.answers + q2.answers] == [("欧洲", 1), ("德国学者", 12), ("不在文中", -1)]
    assert [s.text for s in q2.spans] == ["德国学者"] and q1.context[12:16] == "德国学者"


def test_a_conversion_that_changes_a_context_length_is_refused(monkeypatch):
    import rosetta.data.clean as clean

    monkeypatch.setattr(clean, "to_simplified", lambda text: text.replace("歐洲", "欧罗巴洲"))
    data = {"data": [{"paragraphs": [{"context": "在歐洲。", "qas": [
        {"id": "1", "question": "哪裡？", "answers": [{"text": "歐洲", "answer_start": 1}]}]}]}]}
    with pytest.raises(ValueError, match="offsets would not hold"):
        to_simplified_articles(parse_squad(data))


def test_unknown_or_testless_qa_corpora_say_what_to_use():
    with pytest.raises(ValueError, match="unknown QA corpus 'cmrc2019'.*cmrc2018, drcd, xquad-en"):
        load_qa("cmrc2018+cmrc2019")
    with pytest.raises(ValueError, match="'drcd' has none; put one with a test split first"):
        load_qa("drcd+cmrc2018", Path("/nonexistent"))


@pytest.mark.corpus
def test_drcd_keeps_every_answer_at_its_offset_and_joins_cmrc_training():
    root = real_data()
    original, converted = (questions_of(a) for a in (read_squad(root / "drcd" / "DRCD_dev.json"), drcd_articles(root)))
    from rosetta.data.clean import to_simplified

    assert len(converted) == 3524 and all(q.spans for q in converted)
    for o, c in zip(original, converted):
        assert len(c.context) == len(o.context) and c.id == o.id
        for a, b in zip(o.answers, c.answers):  # the span's converted characters are the converted answer
            assert (b.start, b.text, c.context[b.start:b.end]) == (a.start, to_simplified(a.text), b.text)
    cmrc, joined = cmrc_splits(root), load_qa("cmrc2018+drcd", root)
    assert [q.id for q in questions_of(joined["test"])] == [q.id for q in questions_of(cmrc["test"])]
    assert len(questions_of(joined["train"])) == len(questions_of(cmrc["train"])) + 3524


@pytest.mark.corpus
def test_the_uer_cmrc_test_file_has_no_real_answers():
    """Why cmrc2018_test_uer.json is not training data: its 2,000 questions carry placeholder answers only.
    (If a later copy has real answers this fails, and the file can join the QA recipe.)"""
    questions = questions_of(read_squad(real_data() / "cmrc2018" / "cmrc2018_test_uer.json"))
    assert len(questions) == 2000
    assert all(a.text.startswith("FAKE_ANSWER_") and a.start == -1 for q in questions for a in q.answers)
