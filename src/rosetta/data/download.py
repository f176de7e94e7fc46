"""Finding a corpus on disk, local folder first, else downloading it.

Local first. A corpus lives in ``<data dir>/<folder>/``; the data dir is ``data_dir`` if given, else
``$ROSETTA_DATA``, else ``~/.cache/rosetta/data``. ``locate`` returns the folder when every registered file
is there; with ``download=True`` it fetches the missing ones (temp file → sha256 check → atomic rename).
Local files are not re-hashed: a local copy may legitimately differ from the public release (the shared
Tatoeba copy has pairs withheld for evaluation); ``sha256`` is checked on download only.

``DEFAULT_DATA_DIR`` is read at call time from this module: to redirect the cache (in tests), patch
``rosetta.data.download.DEFAULT_DATA_DIR``, not the copy re-exported by ``rosetta.data.corpora``.
"""

from __future__ import annotations

import gzip
import os
import shutil
import tempfile
import urllib.request
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path

from rosetta.data.registry import CorpusFile, CorpusInfo, get_corpus
from rosetta.io import sha256_file

ENV_VAR = "ROSETTA_DATA"
DEFAULT_DATA_DIR = Path("~/.cache/rosetta/data")


class ChecksumError(ValueError):
    """A downloaded file's sha256 differs from the registered one."""


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


def find_local(info: CorpusInfo, data_dir: str | Path | None = None) -> Path | None:
    """The first searched folder holding every file of ``info`` (see ``_search_dirs``), else ``None``."""
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
    found = find_local(info, data_dir)
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
    fix = (f"or allow downloading (--download / download=True) from {info.source}." if all(f.url for f in info.files)
           else f"(its files have no download URL; they were built from {info.source}).")
    lines.append(f"Fix: set {ENV_VAR} (or pass --data-dir / data_dir=) to the folder that contains "
                 f"'{info.folder}/' {fix}")
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

