"""Paragraph corpora for pretraining (``zh-text``): streamed, deduplicated, held out by hash, packed into segments.

    gzip files, one paragraph a line ─ read line by line (never whole) ─ normalise (whitespace runs collapsed)
        ─ 64-bit hash ─ seen before? dropped (exact duplicate) ─ hash mod 1000 < 10? held out (1 %)
        ─ sentences ─ WordPiece ids ─ packed, in file order, into segments of ≤ N tokens ─ <s> … </s>
        ─ ``PackedSegments``: one flat array of ids (2 bytes a token), not a Python list per token

``data.corpus`` names the sources, joined by "+": a registered corpus of layout "paragraphs" ("zh-text": four
files, 58 M characters, SOURCE.md), and/or "zh-pretraining" (``rosetta.data.pretraining``: CMRC 2018's training
contexts, one paragraph each, and Tatoeba's training sentences, one each). "zh-text+zh-pretraining" is the issue's
"zh-text plus what we already use". A part may carry a weight, ``name*K`` (K a whole number ≥ 1): its training
segments are packed once and then repeated K times in the training set (its held-out slice is not), so
"zh-text+zh-pretraining*20" reads the small in-domain part (CMRC's Wikipedia contexts) 20 times as often as it
would by its size — about a fifth of the batches instead of about 1 %.

Why these choices:

* Exact duplicates, after normalisation, are dropped across all sources (the first one is kept): the set of
  64-bit hashes costs about 60 bytes a paragraph (1.4 M paragraphs: under 100 MB); a collision (p ≈ 1e-7 for
  1.4 M paragraphs) would drop one paragraph. Near-duplicates stay.
* The held-out slice depends on the paragraph's text alone (not on a seed, the file order or the recipe), so MLM
  and ELECTRA runs score the same paragraphs, and a paragraph that occurs twice is never on both sides.
* Segments pack consecutive sentences of one source file (BERT's "full sentences"), a sentence longer than N is
  cut into pieces of N (as ``pretraining.pack_segments``); a segment never spans two files. Held-out paragraphs
  are packed the same way among themselves.
* Each file's sha256 is computed while it streams and compared with the registry's (``CorpusFile.sha256``);
  a local copy that differs is used, with a warning, and the statistics say so (as ``rosetta.data.download``,
  local files may legitimately differ; the hash in config.json records which text a model saw).
"""

from __future__ import annotations

import gzip
import hashlib
import warnings
import zlib
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from rosetta.data.download import locate
from rosetta.data.pretraining import CORPUS_NAME as ZH_PRETRAINING
from rosetta.data.pretraining import chinese_documents, split_sentences
from rosetta.data.registry import REGISTRY, get_corpus
from rosetta.special_tokens import BOS_ID, EOS_ID

LAYOUT = "paragraphs"
HELD_OUT_PER_MILLE = 10  # 1 % of the distinct paragraphs are held out for validation
ENCODE_CHUNK = 2048  # paragraphs tokenised per call (the Rust tokenizer runs a batch on all cores)


def corpus_parts(corpus: str) -> list[tuple[str, int]]:
    """``data.corpus`` split into (name, weight): "zh-text+zh-pretraining*20" → [("zh-text", 1),
    ("zh-pretraining", 20)]. A weight that is not a whole number ≥ 1 raises ``ValueError`` saying so."""
    parts = []
    for part in corpus.split("+"):
        name, star, weight = part.strip().partition("*")
        if star and not (weight.strip().isdigit() and int(weight) >= 1):
            raise ValueError(f"data.corpus part {part!r}: the weight after '*' must be a whole number >= 1 "
                             f"(e.g. 'zh-pretraining*20'), got {weight!r}")
        parts.append((name.strip(), int(weight) if star else 1))
    return parts


def is_paragraph_corpus(corpus: str | None) -> bool:
    """True when ``data.corpus`` names paragraph sources ("zh-text", "zh-text+zh-pretraining", …)."""
    if not corpus:
        return False
    names = [name for name, _ in corpus_parts(corpus)]
    return any(n in REGISTRY and REGISTRY[n].layout == LAYOUT for n in names)


def normalise(paragraph: str) -> str:
    """What counts as "the same paragraph": whitespace runs as one space, none at the ends. (NFKC as well would
    also merge full- and half-width punctuation, but took three times as long as reading the file, measured.)"""
    return " ".join(paragraph.split())


def paragraph_key(paragraph: str) -> int:
    """A 64-bit hash of the normalised paragraph (BLAKE2b: the same on every machine and Python run)."""
    return int.from_bytes(hashlib.blake2b(normalise(paragraph).encode("utf-8"), digest_size=8).digest(), "big")


def is_held_out(key: int) -> bool:
    """The paragraph with this key belongs to the validation slice (``HELD_OUT_PER_MILLE`` ‰ of all keys)."""
    return key % 1000 < HELD_OUT_PER_MILLE


class _HashingReader:
    """A binary file that hashes every byte read through it (the gzip reader's input)."""

    def __init__(self, raw: BinaryIO, sha256: Any):
        self.raw, self.sha256 = raw, sha256

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.sha256.update(data)
        return data

    def readable(self) -> bool:
        return True


def _raw_lines(f: BinaryIO, gz: bool, sha256: Any) -> Iterator[bytes]:
    if gz:
        yield from gzip.GzipFile(fileobj=_HashingReader(f, sha256), mode="rb")
    else:
        for line in f:
            sha256.update(line)
            yield line
    sha256.update(f.read())  # whatever the gzip reader left unread (nothing, for a well-formed file)


def read_paragraphs(path: str | Path, hashes: dict[str, str] | None = None) -> Iterator[str]:
    """Non-empty lines of a gzip (``.gz``) or plain UTF-8 file, stripped, one at a time: the file is streamed.

    When the file has been read to its end, ``hashes[path.name]`` is its sha256 (of the bytes on disk). A
    damaged file raises ``ValueError`` naming it and the line."""
    path, sha256, number = Path(path), hashlib.sha256(), 0
    with open(path, "rb") as f:
        try:
            for number, raw in enumerate(_raw_lines(f, path.suffix == ".gz", sha256), 1):
                try:
                    line = raw.decode("utf-8").strip()
                except UnicodeDecodeError as e:
                    raise ValueError(f"{path}: line {number} is not valid UTF-8 ({e.reason}); "
                                     "restore the file from its source") from None
                if line:
                    yield line
        except (OSError, EOFError, zlib.error) as e:
            raise ValueError(f"{path}: not a complete gzip file after line {number} ({e}); restore the file from "
                             "its source") from None
    if hashes is not None:
        hashes[path.name] = sha256.hexdigest()


@dataclass
class Source:
    """One stream of paragraphs: a file (``path``, registered ``sha256``) or an in-memory list (``paragraphs``)."""

    name: str
    path: Path | None = None
    sha256: str | None = None
    paragraphs: list[str] = field(default_factory=list)
    weight: int = 1  # its training segments appear this many times (``name*K`` in data.corpus)

    def read(self, hashes: dict[str, str]) -> Iterator[str]:
        return read_paragraphs(self.path, hashes) if self.path is not None else iter(self.paragraphs)


def corpus_sources(corpus: str, data_dir: str | Path | None = None, seed: int = 1) -> list[Source]:
    """The sources ``data.corpus`` names, "+"-joined (module docstring), in order; files local first."""
    parts = corpus_parts(corpus)
    for part, _ in parts:  # every name checked before any file is looked for
        info = None if part == ZH_PRETRAINING else get_corpus(part)  # ValueError listing the known corpora
        if info is not None and info.layout != LAYOUT:
            raise ValueError(f"data.corpus part {part!r} is a {info.task} corpus, not paragraphs of text; use "
                             f"{ZH_PRETRAINING!r} or a paragraph corpus such as 'zh-text', joined by '+'")
    sources: list[Source] = []
    for part, weight in parts:
        if part == ZH_PRETRAINING:
            docs = chinese_documents(data_dir, seed)
            sources.append(Source("zh-pretraining/cmrc2018", paragraphs=["".join(d) for d in docs["cmrc2018"]],
                                  weight=weight))
            sources.append(Source("zh-pretraining/tatoeba", paragraphs=[s for d in docs["tatoeba"] for s in d],
                                  weight=weight))
            continue
        info, folder = get_corpus(part), locate(part, data_dir)
        sources += [Source(f"{part}/{f.path}", folder / f.path, f.sha256, weight=weight) for f in info.files]
    return sources


@dataclass
class _Kept:
    """Counts of one pass over the sources (for the corpus statistics)."""

    paragraphs: int = 0
    duplicates: int = 0
    held_out: int = 0
    characters: int = 0
    files: dict[str, dict[str, Any]] = field(default_factory=dict)


def kept_paragraphs(sources: Sequence[Source], counts: _Kept | None = None
                    ) -> Iterator[tuple[int, bool, str]]:
    """(source index, held out?, paragraph) for every paragraph that is not an exact duplicate of an earlier one."""
    counts = counts if counts is not None else _Kept()
    seen: set[int] = set()
    for index, source in enumerate(sources):
        hashes: dict[str, str] = {}
        for paragraph in source.read(hashes):
            key = paragraph_key(paragraph)
            if key in seen:
                counts.duplicates += 1
                continue
            seen.add(key)
            held = is_held_out(key)
            counts.paragraphs += 1
            counts.held_out += held
            counts.characters += len(paragraph)
            yield index, held, paragraph
        if source.path is not None:
            counts.files[source.name] = _check_hash(source, hashes.get(source.path.name))


def _check_hash(source: Source, actual: str | None) -> dict[str, Any]:
    matches = source.sha256 is None or actual == source.sha256
    if not matches:
        warnings.warn(f"{source.path}: sha256 {actual} differs from the registered {source.sha256}; using the "
                      "local copy as it is", stacklevel=3)
    return {"sha256": actual, "registered": source.sha256 is not None and matches}


def training_text(sources: Sequence[Source]) -> Iterator[str]:
    """The training paragraphs (not held out, no duplicates), streamed: what the tokenizer learns from."""
    return (p for _, held, p in kept_paragraphs(sources) if not held)


class PackedSegments(Sequence):
    """Segments of token ids in one flat array (``array("H")``: 2 bytes a token for vocabularies ≤ 65,536) and
    their end offsets; ``segments[i]`` is a list of ids, as ``BatchStream`` and ``pad`` expect."""

    def __init__(self, vocab_size: int):
        self.tokens = array("H" if vocab_size <= 1 << 16 else "l")
        self.ends = array("q")

    def append(self, ids: Sequence[int]) -> None:
        self.tokens.extend(ids)
        self.ends.append(len(self.tokens))

    def __len__(self) -> int:
        return len(self.ends)

    def __getitem__(self, i: int) -> list[int]:  # type: ignore[override]
        if not -len(self) <= i < len(self):
            raise IndexError(f"segment {i} of {len(self)}")
        i %= len(self)
        return self.tokens[self.ends[i - 1] if i else 0 : self.ends[i]].tolist()

    @property
    def n_tokens(self) -> int:
        return len(self.tokens)


class SegmentPacker:
    """``pretraining.pack_segments`` for one long document fed a sentence at a time: greedy, in order, segments of
    ≤ ``max_tokens`` ids handed to ``emit``; a sentence longer than ``max_tokens`` is cut into pieces."""

    def __init__(self, max_tokens: int, emit: Callable[[list[int]], None]):
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, got {max_tokens}")
        self.max_tokens, self.emit, self.current = max_tokens, emit, []

    def add(self, sentence: Sequence[int]) -> None:
        for start in range(0, len(sentence), self.max_tokens):
            piece = list(sentence[start : start + self.max_tokens])
            if self.current and len(self.current) + len(piece) > self.max_tokens:
                self.flush()
            self.current += piece

    def flush(self) -> None:
        if self.current:
            self.emit(self.current)
            self.current = []


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    chunk: list = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _framed(out: PackedSegments) -> Callable[[list[int]], None]:
    return lambda segment: out.append([BOS_ID, *segment, EOS_ID])


def _repeat_weighted(train: PackedSegments, sources: Sequence[Source], starts: dict[int, int]) -> None:
    """Append each weighted source's training segments (weight − 1) more times (``name*K``)."""
    order = sorted(starts.items())  # (source index, its first training segment), in packing order
    ends = [start for _, start in order[1:]] + [len(train)]
    for (index, start), end in zip(order, ends):
        for _ in range(sources[index].weight - 1):
            for i in range(start, end):
                train.append(train[i])


def pack_corpus(sources: Sequence[Source], tokenizer, max_tokens: int
                ) -> tuple[PackedSegments, PackedSegments, dict[str, Any]]:
    """(training segments, held-out segments, statistics): every kept paragraph's sentences, tokenised (no
    specials), packed per source file into ≤ ``max_tokens`` ids and framed as <s> … </s>."""
    train, valid = PackedSegments(tokenizer.vocab_size), PackedSegments(tokenizer.vocab_size)
    counts, current, packers, starts = _Kept(), -1, {}, {}
    for chunk in _chunks(kept_paragraphs(sources, counts), ENCODE_CHUNK):
        sentences = [(index, held, s) for index, held, p in chunk for s in split_sentences(p)]
        for (index, held, _), ids in zip(sentences, tokenizer.encode_batch([s for *_, s in sentences])):
            if index != current:  # a new file: the previous file's last segments go out first
                for packer in packers.values():
                    packer.flush()
                packers = {side: SegmentPacker(max_tokens, _framed(out)) for side, out in ((False, train),
                                                                                          (True, valid))}
                current, starts[index] = index, len(train)
            packers[held].add(ids)
    for packer in packers.values():
        packer.flush()
    _repeat_weighted(train, sources, starts)
    stats = {"paragraphs": counts.paragraphs, "duplicates_dropped": counts.duplicates,
             "held_out_paragraphs": counts.held_out, "characters": counts.characters, "files": counts.files,
             "train_segments": len(train), "valid_segments": len(valid), "train_tokens": train.n_tokens,
             "sources": [s.name for s in sources], "weights": [s.weight for s in sources]}
    return train, valid, stats
