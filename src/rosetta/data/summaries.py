"""Summarisation corpora (SciTLDR-A: a paper's abstract → its one-sentence TLDR) and a sentence splitter.

    ``load_summaries("scitldr", "valid")`` → [Document(sentences, references, title, doc_id), …]

SciTLDR ships each abstract already split into sentences (``source``) and one to four reference TLDRs per paper
(``target``: the author's first, then ones written from peer reviews); train has one reference, dev 1–4.
Splits: ``train`` (1,992 papers) and ``valid`` (the source's dev, 619); the test split is withheld.

Repeats across splits. OpenReview resubmissions put the same paper in two splits under different ids. Loading
``valid`` (``dedupe=True``, the default) drops every paper whose title or abstract (case and whitespace
ignored) is also in train, and keeps only the first of two papers with the same abstract: 5 of dev's 619,
leaving 614. Train is read as it is.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from rosetta.data.download import locate
from rosetta.data.registry import get_corpus


@dataclass(frozen=True)
class Document:
    """One paper: its abstract as sentences, the reference summaries (≥ 1), title and id."""

    sentences: tuple[str, ...]
    references: tuple[str, ...]
    title: str = ""
    doc_id: str = ""

    @property
    def text(self) -> str:
        """The abstract as one line: its sentences joined by spaces."""
        return " ".join(self.sentences)


def _key(text: str) -> str:
    return " ".join(text.lower().split())


def read_scitldr(path: str | Path) -> list[Document]:
    """Documents of one SciTLDR JSON Lines file (fields ``source``, ``target``, ``title``, ``paper_id``)."""
    docs = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            docs.append(Document(tuple(record["source"]), tuple(record["target"]), record.get("title", ""),
                                 record.get("paper_id", "")))
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ValueError(f"{path}: line {number} is not a SciTLDR record with 'source' and 'target' "
                             f"lists ({e})") from None
    return docs


def drop_repeats(docs: list[Document], seen: list[Document]) -> list[Document]:
    """``docs`` without those whose title or abstract occurs in ``seen`` (another split), and without a
    second copy of an abstract (the first is kept). Case and whitespace are ignored."""
    titles = {_key(d.title) for d in seen if d.title}
    abstracts = {_key(d.text) for d in seen}
    kept = []
    for doc in docs:
        title, abstract = _key(doc.title), _key(doc.text)
        if (title and title in titles) or abstract in abstracts:
            continue
        abstracts.add(abstract)
        kept.append(doc)
    return kept


def load_summaries(name: str = "scitldr", split: str = "train", data_dir: str | Path | None = None, *,
                   dedupe: bool = True, download: bool = False) -> list[Document]:
    """The documents of a summarisation corpus split (see the module docstring for ``dedupe``)."""
    info = get_corpus(name)
    if info.task != "summarisation":
        raise ValueError(f"corpus {name!r} is a {info.task} corpus, not summarisation")
    if split not in info.splits:
        raise ValueError(f"corpus {name!r} has no split {split!r}; its splits: {', '.join(info.splits)} "
                         "(SciTLDR's test split is withheld: evaluate on valid, the source's dev)")
    folder = locate(name, data_dir, download)
    docs = read_scitldr(folder / f"{info.splits[split]}.jsonl")
    if dedupe and split != "train":
        docs = drop_repeats(docs, read_scitldr(folder / f"{info.splits['train']}.jsonl"))
    return docs


# ------------------------------------------------------------------------------------------ sentences
# Words whose final "." does not end a sentence (compared case-insensitively, with their dot).
ABBREVIATIONS = frozenset(
    "e.g. i.e. et al. etc. vs. cf. fig. figs. eq. eqs. sec. secs. tab. ref. refs. resp. approx. no. "
    "dr. mr. mrs. ms. prof. st. jr. inc. ltd. co. al. viz. ca. i.i.d.".split())
_BOUNDARY = re.compile(r"""[.!?]["')\]]*(?=\s+["'(\[]?[A-Z0-9])""")  # an end mark, then space + capital


def split_sentences(text: str) -> list[str]:
    """Split ``text`` into sentences by these rules, and no others:

    1. a sentence ends after ".", "!" or "?" (and any closing quotes or brackets) followed by whitespace and
       then a capital letter or a digit (optionally after an opening quote or bracket);
    2. except after a word in ``ABBREVIATIONS`` ("e.g.", "et al.", "Fig.", …) or a single capital letter with a
       dot (an initial: "J. Smith").

    So "3.5" and "U.S.A" never split (no space after the dot), and a sentence that starts with a lower-case
    letter ("… in training. word2vec then …") is not split from the one before — a known miss, as is an
    abbreviation not in the list followed by a capital. Whitespace inside a sentence is kept as it is;
    blank text gives [].
    """
    sentences, start = [], 0
    for match in _BOUNDARY.finditer(text):
        sentence = text[start : match.end()]
        words = sentence.rstrip("\"')]").split()
        last_word = words[-1].lower() if words else ""
        if last_word in ABBREVIATIONS or re.fullmatch(r"[a-z]\.", last_word):
            continue
        sentences.append(sentence.strip())
        start = match.end()
    tail = text[start:].strip()
    return [s for s in sentences if s] + ([tail] if tail else [])
