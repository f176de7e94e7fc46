"""Reading corpora: text files, line-aligned pairs, the per-corpus readers, train/valid/test splits.

Splits: ``train`` / ``valid`` / ``test``. Multi30k uses its own files (test = test_2016_flickr). Tatoeba
ships no split, so ``split_by_key`` makes one by English sentence (see there). Tiny Shakespeare is cut by
characters (first 90% train, last 10% valid, as nanoGPT). SST-2 uses GLUE train/dev (GLUE test is unlabelled).

What each corpus is and where it lives publicly: ``rosetta.data.registry``; finding it on disk, local folder
first, else downloading: ``rosetta.data.download``. Their public names are re-exported here, so
``corpora.locate``, ``corpora.REGISTRY``, ``corpora.CorpusInfo`` … keep working. ``REGISTRY`` is the same dict
object; ``DEFAULT_DATA_DIR`` here is only a copy (patch ``rosetta.data.download.DEFAULT_DATA_DIR`` instead).
"""

from __future__ import annotations

import html
import random
import re
import tarfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from rosetta.data.clean import apply_cleaning, check_steps, clean_pairs
from rosetta.data.download import (
    DEFAULT_DATA_DIR,
    ENV_VAR,
    ChecksumError,
    fetch,
    find_local,
    locate,
    resolve_data_dir,
)
from rosetta.data.registry import REGISTRY, CorpusFile, CorpusInfo, get_corpus, list_corpora, register_corpus

__all__ = [
    # reading (this module)
    "Clean", "corpus_stats", "describe", "load_classification", "load_parallel", "load_parallel_files",
    "load_text", "read_lines", "read_text", "split_by_key",
    # re-exported: rosetta.data.registry
    "REGISTRY", "CorpusFile", "CorpusInfo", "get_corpus", "list_corpora", "register_corpus",
    # re-exported: rosetta.data.download
    "DEFAULT_DATA_DIR", "ENV_VAR", "ChecksumError", "fetch", "find_local", "locate", "resolve_data_dir",
    # re-exported: rosetta.data.clean (callers use corpora.clean_pairs)
    "clean_pairs",
]

Clean = Sequence[str] | Mapping[str, Sequence[str]] | None


def read_text(path: str | Path) -> str:
    """A UTF-8 text file (a leading BOM dropped); invalid UTF-8 raises ``ValueError`` naming the file,
    the byte offset and the line."""
    path = Path(path)
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise ValueError(f"{path}: not valid UTF-8 at byte offset {e.start} (line {line}): {e.reason}") from None
    return text[1:] if text.startswith("\ufeff") else text


def read_lines(path: str | Path) -> list[str]:
    """Lines of a UTF-8 text file, split on ``\\n`` only (a final newline ends the last line; ``\\r`` dropped)."""
    lines = read_text(path).split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def load_parallel_files(src_path: str | Path, tgt_path: str | Path) -> list[tuple[str, str]]:
    """Sentence pairs from two line-aligned files (one sentence a line); unequal line counts are an error."""
    src, tgt = read_lines(src_path), read_lines(tgt_path)
    if len(src) != len(tgt):
        raise ValueError(f"parallel files differ in length: {src_path} has {len(src)} lines, "
                         f"{tgt_path} has {len(tgt)} lines")
    return list(zip(src, tgt))


def split_by_key(items: Sequence, key: Callable, *, seed: int = 1, valid_size: int | float = 1000,
                 test_size: int | float = 1000) -> dict[str, list]:
    """A seeded train/valid/test split in which all items sharing a key land in the same split.

    The distinct keys are sorted, shuffled with ``random.Random(seed)`` (stable across runs and platforms),
    and the first ``test_size`` keys go to test, the next ``valid_size`` to valid, the rest to train. A size
    is a number of keys (int) or a fraction of the keys (float < 1). Within a split, items come in shuffled
    key order (so any prefix is a random sample), items of one key in their original order.
    """
    keys = sorted({key(x) for x in items})
    random.Random(seed).shuffle(keys)

    def count(size: int | float) -> int:
        return round(size * len(keys)) if isinstance(size, float) and size < 1 else int(size)

    n_test, n_valid = count(test_size), count(valid_size)
    if n_test + n_valid >= len(keys):
        raise ValueError(f"valid ({n_valid}) + test ({n_test}) keys leave no training data ({len(keys)} keys)")
    rank = {k: i for i, k in enumerate(keys)}
    ordered = sorted(items, key=lambda x: rank[key(x)])  # stable: original order within a key
    out: dict[str, list] = {"test": [], "valid": [], "train": []}
    for x in ordered:
        r = rank[key(x)]
        out["test" if r < n_test else "valid" if r < n_test + n_valid else "train"].append(x)
    return out


def _english_key(pair: tuple[str, str]) -> str:
    return " ".join(pair[0].split())


def _read_tatoeba(info: CorpusInfo, folder: Path, split: str, seed: int, **sizes) -> list[tuple[str, str]]:
    pairs = []
    for i, line in enumerate(read_lines(folder / "cmn.txt"), 1):
        fields = line.split("\t")
        if len(fields) < 2:
            raise ValueError(f"{folder / 'cmn.txt'}: line {i} has {len(fields)} tab-separated field(s), expected 3")
        pairs.append((fields[0], fields[1]))
    return split_by_key(pairs, _english_key, seed=seed, **sizes)[split]


def _read_aligned(info: CorpusInfo, folder: Path, split: str, seed: int, **sizes) -> list[tuple[str, str]]:
    stem, (a, b) = info.splits[split], info.languages
    return load_parallel_files(folder / f"{stem}.{a}", folder / f"{stem}.{b}")


_IWSLT_TEST = ["IWSLT14.TED.dev2010", "IWSLT14.TEDX.dev2012", "IWSLT14.TED.tst2010", "IWSLT14.TED.tst2011",
               "IWSLT14.TED.tst2012"]
_SEG = re.compile(r'<seg id="?\d+"?>\s*(.*?)\s*</seg>')
_TAGGED = re.compile(r"^\s*<(title|description)>(.*)</\1>\s*$")


def _read_iwslt(info: CorpusInfo, folder: Path, split: str, seed: int, **sizes) -> list[tuple[str, str]]:
    """IWSLT'14 split like fairseq's prepare-iwslt14.sh, on raw text (no Moses tokenising, lowercasing or
    length/ratio filtering): train.tags minus its metadata lines, every 23rd pair → valid; test = dev2010 +
    dev2012 + tst2010-2012."""
    with tarfile.open(folder / "de-en.tgz") as tar:
        members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}

        def lines(name: str) -> list[str]:
            if name not in members:
                raise FileNotFoundError(f"{folder / 'de-en.tgz'}: no member {name}")
            return tar.extractfile(members[name]).read().decode("utf-8").rstrip("\n").split("\n")

        if split == "test":
            out = []
            for stem in _IWSLT_TEST:
                de, en = ([html.unescape(m.group(1)) for m in map(_SEG.search, lines(f"{stem}.de-en.{lang}.xml")) if m]
                          for lang in ("de", "en"))
                out += list(zip(de, en, strict=True))
            return out
        kept = []
        for de, en in zip(lines("train.tags.de-en.de"), lines("train.tags.de-en.en"), strict=True):
            de, en = (_TAGGED.sub(r"\2", s).strip() for s in (de, en))
            if de and en and not de.startswith("<") and not en.startswith("<"):
                kept.append((de, en))
    return [p for i, p in enumerate(kept, 1) if (i % 23 == 0) == (split == "valid")]


_READERS = {"aligned": _read_aligned, "tatoeba": _read_tatoeba, "iwslt": _read_iwslt}


def _check_split(info: CorpusInfo, split: str) -> None:
    if split not in info.splits:
        raise ValueError(f"corpus {info.name!r} has no split {split!r}; its splits: {', '.join(info.splits)}")


def _steps(info: CorpusInfo, clean: Clean, lang: str) -> list[str]:
    """Clean-up steps of one language: the corpus defaults (None), a per-language mapping, or one list."""
    if clean is None:
        return list(info.clean.get(lang, ()))
    if isinstance(clean, Mapping):
        return check_steps(clean.get(lang, ()))
    return check_steps(clean)


def load_parallel(name: str, split: str, data_dir: str | Path | None = None, *, src_lang: str | None = None,
                  tgt_lang: str | None = None, seed: int = 1, clean: Clean = None, download: bool = False,
                  valid_size: int | float = 1000, test_size: int | float = 1000) -> list[tuple[str, str]]:
    """(source, target) sentence pairs of a translation corpus split, in the direction src_lang → tgt_lang.

    ``clean``: None for the corpus's default clean-up, a list of step names for both sides, or a mapping
    language → steps. ``seed``/``valid_size``/``test_size`` matter only for corpora without a split (Tatoeba,
    split by English sentence: the defaults hold out 1,000 English sentences each, about 1,050 pairs).
    """
    info = get_corpus(name)
    if info.task != "translation":
        raise ValueError(f"corpus {name!r} is a {info.task} corpus, not translation")
    if info.layout not in _READERS:
        raise ValueError(f"corpus {name!r} is registered for download only (files: "
                         f"{', '.join(f.path for f in info.files)}); prepare it into line-aligned files and use "
                         "load_parallel_files")
    a, b = info.languages
    if src_lang is None:
        src_lang = a if tgt_lang in (None, b) else b
    if tgt_lang is None:
        tgt_lang = b if src_lang == a else a
    if {src_lang, tgt_lang} != {a, b}:
        raise ValueError(f"corpus {name!r} has languages {a}, {b}; got src_lang={src_lang!r}, tgt_lang={tgt_lang!r}")
    _check_split(info, split)
    steps = {lang: _steps(info, clean, lang) for lang in (a, b)}
    folder = locate(name, data_dir, download)
    pairs = _READERS[info.layout](info, folder, split, seed, valid_size=valid_size, test_size=test_size)
    pairs = clean_pairs(pairs, steps[a], steps[b])
    return pairs if src_lang == a else [(t, s) for s, t in pairs]


def load_text(name: str = "tinyshakespeare", split: str = "train", data_dir: str | Path | None = None, *,
              train_fraction: float = 0.9, download: bool = False) -> str:
    """A text corpus split as one string: the first ``train_fraction`` of the characters, or the rest."""
    info = get_corpus(name)
    if info.task != "text":
        raise ValueError(f"corpus {name!r} is a {info.task} corpus, not text")
    if info.layout != "text":
        raise ValueError(f"corpus {name!r} is {len(info.files)} gzip files of paragraphs, too big for one string; "
                         "read it with rosetta.data.paragraphs (task mlm or electra: data.corpus)")
    _check_split(info, split)
    text = read_text(locate(name, data_dir, download) / info.files[0].path)
    n = int(len(text) * train_fraction)
    return text[:n] if split == "train" else text[n:]


def load_classification(name: str = "sst2", split: str = "train", data_dir: str | Path | None = None, *,
                        variant: str = "glue", clean: Clean = None,
                        download: bool = False) -> list[tuple[str, int]]:
    """(text, label) pairs of a classification corpus; label names are the registry's ``labels``.

    SST-2: ``variant="glue"``: GLUE train (phrases and sentences) / dev; ``variant="stsa"``: Kim's sentence-level
    train / dev; GLUE's test split has no labels (an error). ``label-tsv`` corpora (ChnSentiCorp): a
    ``label<TAB>text`` file per split under a header line.
    """
    info = get_corpus(name)
    if info.task != "classification":
        raise ValueError(f"corpus {name!r} is a {info.task} corpus, not classification")
    _check_split(info, split)
    if info.layout == "sst2" and split == "test":
        raise ValueError("SST-2: the GLUE test split has no labels; evaluate on split='valid' (GLUE dev)")
    folder, stem = locate(name, data_dir, download), info.splits[split]
    if info.layout == "label-tsv":
        rows = [line.split("\t", 1)[::-1] for line in read_lines(folder / f"{stem}.tsv")[1:] if line.strip()]
    elif variant == "glue":
        rows = [line.rsplit("\t", 1) for line in read_lines(folder / "glue" / f"{stem}.tsv")[1:]]  # header
    elif variant == "stsa":
        rows = [line.split(" ", 1)[::-1] for line in read_lines(folder / "stsa_binary" / f"stsa.binary.{stem}")]
    else:
        raise ValueError(f"unknown SST-2 variant {variant!r}; known: glue, stsa")
    texts = apply_cleaning([text.strip() for text, _ in rows], _steps(info, clean, info.languages[0]))
    return [(text, int(label)) for text, (_, label) in zip(texts, rows)]


def corpus_stats(name: str, data_dir: str | Path | None = None) -> dict:
    """Where the corpus was found (``None`` if not) and each present file's bytes and lines."""
    info = get_corpus(name)
    folder = find_local(info, data_dir)
    files = {}
    for f in info.files if folder else ():
        path = folder / f.path
        archive = path.suffix in (".tgz", ".gz", ".zip", ".npz")
        files[f.path] = {"bytes": path.stat().st_size,
                         "lines": None if archive else path.read_bytes().count(b"\n")}
    return {"location": folder, "files": files}


def describe(name: str, data_dir: str | Path | None = None) -> dict[str, str]:
    """Strings for ``rosetta data list``: ``location`` and ``size``."""
    stats, info = corpus_stats(name, data_dir), get_corpus(name)
    if stats["location"] is None:
        where = "not found" + (" (downloadable)" if all(f.url for f in info.files) else "")
        return {"location": where, "size": f"{len(info.files)} file(s)"}
    size = sum(s["bytes"] for s in stats["files"].values())
    lines = sum(s["lines"] or 0 for s in stats["files"].values())
    text = f"{len(stats['files'])} files, {size / 1e6:.1f} MB" + (f", {lines:,} lines" if lines else "")
    return {"location": str(stats["location"]), "size": text}
