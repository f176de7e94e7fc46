"""Extractive question answering data: SQuAD-format reading, splits by article, windows with character offsets.

Reading. A SQuAD-format file (``{"data": [{"title", "paragraphs": [{"context", "qas": [{"id", "question",
"answers": [{"text", "answer_start"}]}]}]}]}``) becomes a list of ``Article`` (title + its ``Question`` s, each
carrying its context). ``answer_start`` is a character offset into the context, with two CMRC 2018 caveats
(``/work/shared/data/cmrc2018/SOURCE.md``): a few offsets are counted in UTF-16 code units (contexts with
characters outside the Basic Multilingual Plane), converted here to Python character offsets; and some
answers have ``answer_start == -1`` with a text that is not in the context: they are kept as gold texts for
the metrics (``Question.answers``) but give no training span (``Question.spans``).

Splits are by article, seeded and deterministic, so no test context is ever seen in training:
``xquad_splits(lang)`` (the same article indices for every language: XQuAD-zh test = XQuAD-en test articles)
and ``cmrc_splits()`` (train = trial + the training part of dev, test = held-out dev articles).

Windows: see ``make_windows`` (question + context pairs cut into overlapping windows, token → character
offsets, a target span or "no answer here" = position 0, the [CLS] token).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch

from rosetta.data.download import locate
from rosetta.special_tokens import BOS_ID, EOS_ID, PAD_ID


@dataclass(frozen=True)
class AnswerSpan:
    """A gold answer: its text and its start as a Python character offset into the context (-1: not found)."""

    text: str
    start: int

    @property
    def end(self) -> int:
        """End character offset, exclusive (``context[start:end] == text`` for a valid span)."""
        return self.start + len(self.text)


@dataclass(frozen=True)
class Question:
    """One question about one context, with its gold answers (possibly several, possibly repeated)."""

    id: str
    question: str
    context: str
    answers: tuple[AnswerSpan, ...] = ()

    @property
    def spans(self) -> list[AnswerSpan]:
        """The answers whose span really is in the context (the training targets)."""
        return [a for a in self.answers if a.start >= 0 and self.context[a.start:a.end] == a.text]

    @property
    def answer_texts(self) -> list[str]:
        """Every gold answer text (what the metrics compare against, even those without a span)."""
        return [a.text for a in self.answers]


@dataclass
class Article:
    """A titled article and its questions (all paragraphs together: a split never cuts an article)."""

    title: str
    questions: list[Question] = field(default_factory=list)

    @property
    def contexts(self) -> list[str]:
        """The article's distinct contexts, in order."""
        return list(dict.fromkeys(q.context for q in self.questions))


def python_offset(context: str, utf16_offset: int) -> int:
    """The Python character index at ``utf16_offset`` UTF-16 code units into ``context`` (-1 if none).

    Characters outside the Basic Multilingual Plane (``ord(c) > 0xFFFF``) take two UTF-16 units, one Python char.
    """
    units = 0
    for i, ch in enumerate(context):
        if units == utf16_offset:
            return i
        units += 2 if ord(ch) > 0xFFFF else 1
    return len(context) if units == utf16_offset else -1


def _answer(context: str, text: str, start: int) -> AnswerSpan:
    """The gold answer with a Python character offset: as given, else read as UTF-16 units, else -1."""
    if start >= 0 and context[start:start + len(text)] == text:
        return AnswerSpan(text, start)
    if start >= 0:
        fixed = python_offset(context, start)
        if fixed >= 0 and context[fixed:fixed + len(text)] == text:
            return AnswerSpan(text, fixed)
    return AnswerSpan(text, -1)


def parse_squad(data: dict, where: str = "SQuAD data") -> list[Article]:
    """Articles from a parsed SQuAD-format dict (see the module docstring); a wrong shape raises ``ValueError``."""
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise ValueError(f"{where}: not SQuAD format: expected a JSON object with a 'data' list of articles "
                         '({"data": [{"title", "paragraphs": [{"context", "qas": [...]}]}]})')
    articles = []
    for a, art in enumerate(data["data"]):
        try:
            article = Article(str(art.get("title", a)))
            for par in art["paragraphs"]:
                context = par["context"]
                for qa in par["qas"]:
                    answers = tuple(_answer(context, x["text"], int(x["answer_start"]))
                                    for x in qa.get("answers", []))
                    article.questions.append(Question(str(qa["id"]), qa["question"], context, answers))
        except (KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"{where}: article {a} is not SQuAD format ({type(e).__name__}: {e}); each article "
                             "needs 'paragraphs', each paragraph 'context' and 'qas', each qa 'id' and "
                             "'question'") from None
        articles.append(article)
    return articles


def read_squad(path: str | Path) -> list[Article]:
    """Articles of a SQuAD-format JSON file (XQuAD, CMRC 2018 squad-style, SQuAD v1.1)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    return parse_squad(data, str(path))


def questions_of(articles: list[Article]) -> list[Question]:
    """All questions of ``articles``, in order."""
    return [q for a in articles for q in a.questions]


def _split_articles(articles: list[Article], n_test: int, seed: int) -> tuple[list[Article], list[Article]]:
    """(train, test): ``n_test`` articles drawn by a seeded shuffle of the indices; both keep the file order."""
    if not 0 < n_test < len(articles):
        raise ValueError(f"test size must be between 1 and {len(articles) - 1} articles, got {n_test}")
    order = list(range(len(articles)))
    random.Random(seed).shuffle(order)
    test = set(order[:n_test])
    return ([a for i, a in enumerate(articles) if i not in test], [a for i, a in enumerate(articles) if i in test])


XQUAD_LANGS = ("en", "zh", "de")


def xquad_splits(lang: str = "en", data_dir: str | Path | None = None, seed: int = 1,
                 test_articles: int = 10) -> dict[str, list[Article]]:
    """XQuAD in ``lang`` split by article: {"train": 38 articles, "test": 10} (the defaults).

    The three files are parallel (same articles, same order), so a seed picks the same articles in every
    language: the XQuAD-zh test articles are the XQuAD-en test articles, translated.
    """
    if lang not in XQUAD_LANGS:
        raise ValueError(f"XQuAD language {lang!r} is not here; choose one of {', '.join(XQUAD_LANGS)}")
    articles = read_squad(locate("xquad", data_dir) / f"xquad.{lang}.json")
    train, test = _split_articles(articles, test_articles, seed)
    return {"train": train, "test": test}


def cmrc_splits(data_dir: str | Path | None = None, seed: int = 1,
                test_articles: int = 200) -> dict[str, list[Article]]:
    """CMRC 2018 split by article: {"train": trial + dev minus ``test_articles``, "test": those dev articles}.

    (The official train set is not in the shared data; each CMRC article has one paragraph.) Text for
    pretraining must come from the "train" articles only (and never from XQuAD-zh test contexts).
    """
    folder = locate("cmrc2018", data_dir)
    trial, dev = read_squad(folder / "cmrc2018_trial.json"), read_squad(folder / "cmrc2018_dev.json")
    dev_train, test = _split_articles(dev, test_articles, seed)
    return {"train": trial + dev_train, "test": test}


def to_simplified_articles(articles: list[Article]) -> list[Article]:
    """Articles converted Traditional → Simplified Chinese by OpenCC (``t2s``), every answer kept at its offset.

    OpenCC converts DRCD one character to one, so a context keeps its length and each answer its span; the gold
    text becomes the converted context's characters at that span (``context[start:end]``), the converted answer
    wherever the span held the answer before. A context whose length changed raises ``ValueError``.
    """
    from rosetta.data.clean import to_simplified

    out = []
    for article in articles:
        converted, contexts = Article(to_simplified(article.title)), {}
        for q in article.questions:
            if q.context not in contexts:
                contexts[q.context] = to_simplified(q.context)
                if len(contexts[q.context]) != len(q.context):
                    raise ValueError(f"OpenCC changed a context's length in {article.title!r}: the answer offsets "
                                     "would not hold")
            ctx = contexts[q.context]
            answers = tuple(AnswerSpan(ctx[a.start:a.end], a.start) if a.start >= 0 and q.context[a.start:a.end]
                            == a.text else AnswerSpan(to_simplified(a.text), -1) for a in q.answers)
            converted.questions.append(Question(q.id, to_simplified(q.question), ctx, answers))
        out.append(converted)
    return out


def drcd_articles(data_dir: str | Path | None = None) -> list[Article]:
    """DRCD dev (383 articles, 3,524 questions, zh-TW Wikipedia) in Simplified Chinese: extra training."""
    return to_simplified_articles(read_squad(locate("drcd", data_dir) / "DRCD_dev.json"))


# name → (its splits: (data_dir, seed) → {split: articles}, language); a corpus with "train" alone is extra training
QA_CORPORA: dict[str, tuple[Any, str]] = {
    "cmrc2018": (cmrc_splits, "zh"),
    "drcd": (lambda data_dir, seed: {"train": drcd_articles(data_dir)}, "zh"),
    **{f"xquad-{lang}": (partial(xquad_splits, lang), lang) for lang in XQUAD_LANGS},
}
TRAINING_ONLY = ("drcd",)


def _qa_names(name: str) -> list[str]:
    names = [n.strip() for n in name.split("+")]
    for n in names:
        if n not in QA_CORPORA:
            raise ValueError(f"unknown QA corpus {n!r}; known: {', '.join(QA_CORPORA)} (join with '+', e.g. "
                             "cmrc2018+drcd), or give a SQuAD-format JSON file")
    return names


def qa_language(name: str) -> str:
    """The language of a QA corpus name (of a joined name: its first corpus's)."""
    return QA_CORPORA[_qa_names(name)[0]][1]


def load_qa(name: str, data_dir: str | Path | None = None, seed: int = 1) -> dict[str, list[Article]]:
    """The {"train", "test"} articles of a QA corpus by name (``QA_CORPORA``): "xquad-en|zh|de", "cmrc2018", and
    the training-only "drcd". Names joined by '+' train on every corpus's "train" articles and test on the first
    one's "test" articles: "cmrc2018+drcd" tests on CMRC's held-out dev articles."""
    names = _qa_names(name)
    if names[0] in TRAINING_ONLY and len(names) > 1:
        with_test = [n for n in QA_CORPORA if n not in TRAINING_ONLY]
        raise ValueError(f"{name!r}: the first corpus gives the test articles and {names[0]!r} has none; put one "
                         f"with a test split first ({', '.join(with_test)})")
    parts = [QA_CORPORA[n][0](data_dir, seed) for n in names]
    if len(parts) == 1:
        return parts[0]
    return {"train": [a for part in parts for a in part["train"]], "test": parts[0]["test"]}


# --------------------------------------------------------------------------------------------- windows
@dataclass(frozen=True)
class Specials:
    """The ids framing a window: [CLS] question [SEP] context [SEP], padded with ``pad``."""

    cls: int
    sep: int
    pad: int


@dataclass
class Window:
    """One model input: [CLS] question [SEP] a slice of the context [SEP].

    ``offsets[t]`` is the (start, end) character span in the ORIGINAL context of token t, ``None`` for the
    [CLS], question and [SEP] tokens. ``start`` / ``end`` are the token positions of the gold answer
    (inclusive), (0, 0) — the [CLS] token — when the answer is not inside this window ("no answer here").
    """

    question: int  # index of the question in the list given to make_windows
    ids: list[int]
    type_ids: list[int]
    offsets: list[tuple[int, int] | None]
    start: int = 0
    end: int = 0


_RAW_COPIES: dict[int, tuple] = {}  # id(source) → (source, its raw copy), the last few sources only


def raw_tokenizer(tokenizer):
    """A ``tokenizers.Tokenizer`` copy of ``tokenizer`` (Rosetta's, or a Hugging Face one) without truncation
    or padding: windows are cut here, not by the tokenizer.

    Made once per tokenizer and reused (the last 8 are kept): the tokenizers library keeps about 10 kB of
    native memory for every Tokenizer that has encoded something, even once it is freed, so a fresh copy per
    call made a QA server grow by 5 MiB every 1,000 requests (benchmarks/server_load.py --soak)."""
    from tokenizers import Tokenizer as HFTokenizer

    hf = getattr(tokenizer, "hf", tokenizer)
    source, copy = _RAW_COPIES.pop(id(hf), (None, None))
    if source is not hf:  # (an id can be reused once its object is gone: the source is kept to tell)
        copy = HFTokenizer.from_str(hf.to_str())
        copy.no_truncation()
        copy.no_padding()
    _RAW_COPIES[id(hf)] = (hf, copy)  # last in the dict: the most recently used
    while len(_RAW_COPIES) > 8:
        del _RAW_COPIES[next(iter(_RAW_COPIES))]
    return copy


def specials_of(tokenizer) -> Specials:
    """[CLS]/[SEP]/[PAD] ids of a WordPiece (BERT) vocabulary, else Rosetta's <s> / </s> / <pad>."""
    hf = getattr(tokenizer, "hf", tokenizer)
    ids = [hf.token_to_id(t) for t in ("[CLS]", "[SEP]", "[PAD]")]
    return Specials(*ids) if None not in ids else Specials(BOS_ID, EOS_ID, PAD_ID)


def answer_tokens(offsets: list[tuple[int, int]], start_char: int, end_char: int) -> tuple[int, int] | None:
    """(first, last) token indices of the tokens overlapping characters [start_char, end_char) of the text, or
    ``None`` when the tokens do not reach over the whole answer (it is not inside this window) or none overlaps
    it. A token partly inside the answer is included ("4个" inside the token "34" gives "34个")."""
    if not offsets or offsets[0][0] > start_char or offsets[-1][1] < end_char:
        return None
    inside = [i for i, (s, e) in enumerate(offsets) if s < end_char and e > start_char and e > s]
    return (inside[0], inside[-1]) if inside else None


def _slices(n_tokens: int, room: int, stride: int) -> list[tuple[int, int]]:
    """[a, b) token ranges of at most ``room`` tokens, consecutive ones sharing ``stride`` tokens, covering all."""
    if stride >= room:
        raise ValueError(f"stride ({stride}) must be smaller than the room left for the context in a window "
                         f"({room} tokens): lower stride or max_query_length, or raise max_length")
    out, a = [], 0
    while True:
        b = min(a + room, n_tokens)
        out.append((a, b))
        if b >= n_tokens:
            return out
        a = b - stride


def make_windows(questions: list[Question], tokenizer, max_length: int = 384, stride: int = 128,
                 max_query_length: int = 64, targets: bool = True) -> list[Window]:
    """Every question's context cut into windows of at most ``max_length`` tokens.

    Each window is [CLS] question [SEP] context tokens [a, b) [SEP]; consecutive windows of one context share
    ``stride`` tokens (Hugging Face's meaning of stride), so an answer cut by one window's edge is whole in
    the next. The question keeps its first ``max_query_length`` tokens (fewer if the window would otherwise
    hold fewer than stride + 1 context tokens). ``targets``: a question's first gold span (``Question.spans``)
    gives each window its (start, end) token targets, (0, 0) where the answer is not inside the window;
    questions without any span are left out (they cannot be trained on).
    """
    q_cap = min(max_query_length, max_length - 4 - stride)  # a window keeps room for stride + 1 context tokens
    if q_cap < 1:
        raise ValueError(f"max_length {max_length} leaves no room for a question and a context slice with stride "
                         f"{stride}: raise max_length or lower stride")
    tk, sp = raw_tokenizer(tokenizer), specials_of(tokenizer)
    contexts = list(dict.fromkeys(q.context for q in questions))
    encoded = dict(zip(contexts, tk.encode_batch(contexts, add_special_tokens=False)))
    q_ids = [e.ids[:q_cap] for e in tk.encode_batch([q.question for q in questions], add_special_tokens=False)]
    windows = []
    for qi, (q, ids) in enumerate(zip(questions, q_ids)):
        span = (q.spans or [None])[0]
        if targets and span is None:
            continue
        ctx = encoded[q.context]
        room = max_length - len(ids) - 3
        head = [sp.cls, *ids, sp.sep]
        for a, b in _slices(len(ctx.ids), room, stride):
            offsets = [tuple(o) for o in ctx.offsets[a:b]]
            w = Window(qi, head + ctx.ids[a:b] + [sp.sep], [0] * len(head) + [1] * (b - a + 1),
                       [None] * len(head) + offsets + [None])
            found = answer_tokens(offsets, span.start, span.end) if targets else None
            if found is not None:
                w.start, w.end = found[0] + len(head), found[1] + len(head)
            windows.append(w)
    return windows


def char_span(context: str, window: Window, start: int, end: int) -> tuple[int, int]:
    """Character span [s, e) of the context covered by tokens start…end of ``window``, surrounding whitespace
    dropped (a Metaspace token "▁word" also covers the space before the word)."""
    s, e = window.offsets[start][0], window.offsets[end][1]
    while s < e and context[s].isspace():
        s += 1
    while e > s and context[e - 1].isspace():
        e -= 1
    return s, e


@dataclass
class QABatch:
    """Windows as tensors, right-padded: ids / type_ids / mask (B, T); starts / ends (B,) token targets."""

    ids: torch.Tensor
    type_ids: torch.Tensor
    mask: torch.Tensor
    starts: torch.Tensor
    ends: torch.Tensor


def collate_windows(windows: list[Window], pad_id: int) -> QABatch:
    """Pad a list of windows into a ``QABatch`` (mask: 1 at real tokens, 0 at padding)."""
    width = max(len(w.ids) for w in windows)
    ids = torch.full((len(windows), width), pad_id, dtype=torch.long)
    types = torch.zeros((len(windows), width), dtype=torch.long)
    mask = torch.zeros((len(windows), width), dtype=torch.long)
    for i, w in enumerate(windows):
        n = len(w.ids)
        ids[i, :n], types[i, :n], mask[i, :n] = torch.tensor(w.ids), torch.tensor(w.type_ids), 1
    starts = torch.tensor([w.start for w in windows], dtype=torch.long)
    ends = torch.tensor([w.end for w in windows], dtype=torch.long)
    return QABatch(ids, types, mask, starts, ends)
