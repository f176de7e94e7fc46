"""rosetta.data.{registry,download,corpora,clean}: registry, local lookup, verified download, splits, clean-up.

Unit tests write their own tiny synthetic files under tmp_path; tests marked ``corpus`` read the real
corpora from $ROSETTA_DATA.
"""

import gzip
import hashlib
import http.server
import io
import json
import os
import subprocess
import sys
import tarfile
import threading
import zipfile
from functools import partial
from pathlib import Path

import pytest

from rosetta.data import clean, corpora, download, registry
from rosetta.data.corpora import ChecksumError, CorpusFile, CorpusInfo


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def real_data() -> Path:
    root = os.environ.get("ROSETTA_DATA")
    if not root:
        pytest.skip("ROSETTA_DATA is not set (point it at the shared corpora folder)")
    if not Path(root).is_dir():
        pytest.skip(f"ROSETTA_DATA={root} does not exist")
    return Path(root)


@pytest.fixture
def no_env(monkeypatch, tmp_path):
    """No $ROSETTA_DATA, and a home whose cache is empty."""
    monkeypatch.delenv("ROSETTA_DATA", raising=False)
    monkeypatch.setattr(download, "DEFAULT_DATA_DIR", tmp_path / "cache")  # download owns it; corpora has a copy


# ------------------------------------------------------------------------------------------------ registry
def test_registry_entries_are_complete():
    names = [c.name for c in corpora.list_corpora()]
    for name in ["multi30k", "tatoeba-en-zh", "tinyshakespeare", "sst2", "iwslt14-de-en", "wmt14-en-de", "mnist"]:
        assert name in names
    for info in corpora.list_corpora():
        assert info.task in ("translation", "text", "classification", "images", "qa", "summarisation")
        if info.task != "qa":  # a QA corpus may be parallel across languages (XQuAD: en, zh, de)
            assert len(info.languages) == {"translation": 2, "images": 0}.get(info.task, 1)
        for f in info.files:  # a file built from sources (zh-text, SOURCE.md) has no URL, but a known sha256
            assert f.url.startswith(("http://", "https://")) if f.url is not None else f.sha256
            assert f.sha256 is None or (len(f.sha256) == 64 and int(f.sha256, 16) >= 0)
            assert all(len(h) == 64 and int(h, 16) >= 0 for h in f.arrays.values())
        for steps in info.clean.values():
            clean.check_steps(steps)
    assert "to_simplified" in corpora.get_corpus("tatoeba-en-zh").clean["zh"]
    assert corpora.get_corpus("iwslt14-de-en").files[0].url.endswith("iwslt14/de-en.tgz")


def test_unknown_corpus_lists_known_names():
    with pytest.raises(ValueError) as e:
        corpora.get_corpus("multi31k")
    for name in ["multi30k", "tatoeba-en-zh", "tinyshakespeare", "sst2"]:
        assert name in str(e.value)


def test_corpora_re_exports_registry_and_download():
    """Callers keep using ``corpora.X``: the names are the owners' objects, and there is one registry dict."""
    import rosetta.data as data

    for name in ["REGISTRY", "CorpusFile", "CorpusInfo", "register_corpus", "list_corpora", "get_corpus"]:
        assert getattr(corpora, name) is getattr(registry, name)
    for name in ["ENV_VAR", "DEFAULT_DATA_DIR", "ChecksumError", "resolve_data_dir", "locate", "fetch",
                 "find_local"]:
        assert getattr(corpora, name) is getattr(download, name)
    assert data.get_corpus is registry.get_corpus and data.CorpusInfo is registry.CorpusInfo
    assert data.locate is download.locate and data.ChecksumError is download.ChecksumError
    assert set(corpora.__all__) <= set(dir(corpora))


def test_resolve_data_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("ROSETTA_DATA", str(tmp_path / "env"))
    assert corpora.resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert corpora.resolve_data_dir() == tmp_path / "env"
    monkeypatch.delenv("ROSETTA_DATA")
    assert corpora.resolve_data_dir() == Path("~/.cache/rosetta/data").expanduser()


def test_missing_files_message_lists_files_folders_and_fix(monkeypatch, tmp_path, no_env):
    monkeypatch.setenv("ROSETTA_DATA", str(tmp_path / "env"))
    (tmp_path / "env" / "multi30k").mkdir(parents=True)
    (tmp_path / "env" / "multi30k" / "train.de").write_text("x\n")
    with pytest.raises(FileNotFoundError) as e:
        corpora.locate("multi30k")
    msg = str(e.value)
    for f in ["train.de", "train.en", "val.de", "val.en", "test_2016_flickr.de", "test_2016_flickr.en"]:
        assert f in msg
    assert str(tmp_path / "env" / "multi30k") in msg and str(tmp_path / "cache" / "multi30k") in msg
    assert "missing train.en" in msg and "folder does not exist" in msg
    assert "ROSETTA_DATA" in msg and "--data-dir" in msg and "download" in msg


# ------------------------------------------------------------------------------------------------ download
@pytest.fixture
def server(tmp_path, monkeypatch):
    """A local HTTP server on 127.0.0.1 serving tmp_path/www; yields (that folder, its base URL)."""
    for var in ("no_proxy", "NO_PROXY"):  # never send 127.0.0.1 through a proxy set in the environment
        monkeypatch.setenv(var, "127.0.0.1,localhost")
    root = tmp_path / "www"
    root.mkdir()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


def synthetic_corpus(monkeypatch, base: str, root: Path, bad_sha: bool = False) -> CorpusInfo:
    """Register a corpus whose files come plain, gzipped and from one zip, served from ``root``."""
    plain, packed, a, b = b"one\ntwo\n", b"eins\nzwei\n", b"alpha\n", b"beta\n"
    (root / "plain.txt").write_bytes(plain)
    (root / "packed.gz").write_bytes(gzip.compress(packed))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("a.txt", a)
        z.writestr("b.txt", b)
    (root / "both.zip").write_bytes(buf.getvalue())
    info = CorpusInfo("toy", "translation", ("en", "de"), "toy", (
        CorpusFile("train.en", base + "plain.txt", sha(plain)),
        CorpusFile("train.de", base + "packed.gz", "0" * 64 if bad_sha else sha(packed), "gzip"),
        CorpusFile("sub/a.txt", base + "both.zip", sha(a), "zip:a.txt"),
        CorpusFile("sub/b.txt", base + "both.zip", sha(b), "zip:b.txt"),
    ), "aligned", splits={"train": "train"})
    monkeypatch.setitem(registry.REGISTRY, "toy", info)
    return info


def test_download_verifies_and_installs(monkeypatch, tmp_path, server):
    root, base = server
    synthetic_corpus(monkeypatch, base, root)
    data = tmp_path / "data"
    with pytest.raises(FileNotFoundError):
        corpora.locate("toy", data)
    folder = corpora.locate("toy", data, download=True)
    assert folder == data / "toy"
    assert (folder / "train.de").read_bytes() == b"eins\nzwei\n"
    assert (folder / "sub" / "b.txt").read_bytes() == b"beta\n"
    assert corpora.load_parallel("toy", "train", data) == [("one", "eins"), ("two", "zwei")]
    assert corpora.load_parallel("toy", "train", data, src_lang="de") == [("eins", "one"), ("zwei", "two")]
    assert not [p for p in data.rglob("*") if p.name.endswith(".part")]
    (root / "plain.txt").unlink()  # present files are not fetched again
    assert corpora.locate("toy", data, download=True) == folder


def test_bad_checksum_names_file_and_hashes_and_leaves_nothing(monkeypatch, tmp_path, server):
    root, base = server
    synthetic_corpus(monkeypatch, base, root, bad_sha=True)
    data = tmp_path / "data"
    with pytest.raises(ChecksumError) as e:
        corpora.locate("toy", data, download=True)
    msg = str(e.value)
    assert "train.de" in msg and "0" * 64 in msg and sha(b"eins\nzwei\n") in msg
    assert not (data / "toy" / "train.de").exists()
    assert not [p for p in data.rglob("*") if p.name.endswith(".part")]


def test_failed_download_leaves_no_partial_file(monkeypatch, tmp_path, server):
    root, base = server
    synthetic_corpus(monkeypatch, base, root)
    (root / "both.zip").unlink()  # 404
    data = tmp_path / "data"
    with pytest.raises(OSError, match="both.zip"):
        corpora.locate("toy", data, download=True)
    assert not (data / "toy" / "sub" / "a.txt").exists()
    assert sorted(p.name for p in (data / "toy").rglob("*") if p.is_file()) == ["train.de", "train.en"]


# ------------------------------------------------------------------------------------------------ reading
def test_parallel_files_checks_counts_and_utf8(tmp_path):
    src, tgt = tmp_path / "a.en", tmp_path / "a.de"
    src.write_bytes(b"Hello\r\nworld\n")
    tgt.write_bytes("Hallo\nWelt\u2028!\n".encode())  # a line separator inside a line is not a line break
    assert corpora.load_parallel_files(src, tgt) == [("Hello", "Hallo"), ("world", "Welt\u2028!")]
    tgt.write_text("Hallo\nWelt\nmehr\n")
    with pytest.raises(ValueError, match=r"a\.en has 2 lines.*a\.de has 3 lines"):
        corpora.load_parallel_files(src, tgt)
    tgt.write_bytes(b"Hallo\nW\xfcrze\n")
    with pytest.raises(ValueError, match=r"a\.de: not valid UTF-8 at byte offset 7 \(line 2\)"):
        corpora.load_parallel_files(src, tgt)


def test_split_by_key_is_disjoint_deterministic_and_sized():
    items = [(f"s{i % 37}", f"t{i}") for i in range(200)]
    key = corpora._english_key
    a = corpora.split_by_key(items, key, seed=3, valid_size=5, test_size=0.1)
    assert a == corpora.split_by_key(items, key, seed=3, valid_size=5, test_size=0.1)
    assert a != corpora.split_by_key(items, key, seed=4, valid_size=5, test_size=0.1)
    keys = {name: {key(x) for x in part} for name, part in a.items()}
    assert len(keys["valid"]) == 5 and len(keys["test"]) == 4 and len(keys["train"]) == 28
    assert not (keys["train"] & keys["valid"] or keys["train"] & keys["test"] or keys["valid"] & keys["test"])
    assert sorted(sum(a.values(), [])) == sorted(items)
    with pytest.raises(ValueError, match="no training data"):
        corpora.split_by_key(items, key, valid_size=20, test_size=17)


def test_tatoeba_layout_direction_and_default_cleaning(tmp_path):
    folder = tmp_path / "tatoeba_cmn_eng"
    folder.mkdir()
    lines = [f"Sentence {i}.\t這是第{i}個測試?\tCC-BY 2.0 (France) Attribution: tatoeba.org #{i}" for i in range(50)]
    (folder / "cmn.txt").write_text("\n".join(lines) + "\n")
    (folder / "_about.txt").write_text("synthetic\n")
    kw = {"valid_size": 5, "test_size": 5}
    train = corpora.load_parallel("tatoeba-en-zh", "train", tmp_path, **kw)
    assert len(train) == 40 and train[0][0].startswith("Sentence ")
    assert all(zh.startswith("这是第") and zh.endswith("个测试？") for _, zh in train)  # simplified, full-width ?
    zh_en = corpora.load_parallel("tatoeba-en-zh", "train", tmp_path, src_lang="zh", tgt_lang="en", **kw)
    assert zh_en == [(b, a) for a, b in train]
    raw = corpora.load_parallel("tatoeba-en-zh", "test", tmp_path, clean=[], **kw)
    assert all("個" in zh for _, zh in raw)
    with pytest.raises(ValueError, match="has languages en, zh"):
        corpora.load_parallel("tatoeba-en-zh", "train", tmp_path, src_lang="de", **kw)
    with pytest.raises(ValueError, match="no split 'dev'"):
        corpora.load_parallel("tatoeba-en-zh", "dev", tmp_path, **kw)


def test_iwslt_archive_reader(tmp_path):
    def add(tar, name, text):
        data = text.encode()
        member = tarfile.TarInfo(f"de-en/{name}")
        member.size = len(data)
        tar.addfile(member, io.BytesIO(data))

    folder = tmp_path / "iwslt14_de_en"
    folder.mkdir()
    de = ["<url>http://x</url>", "<title>Titel</title>"] + [f"Satz {i}" for i in range(46)]
    en = ["<url>http://x</url>", "<title>Title</title>"] + [f"Sentence {i}" for i in range(46)]
    with tarfile.open(folder / "de-en.tgz", "w:gz") as tar:
        add(tar, "train.tags.de-en.de", "\n".join(de) + "\n")
        add(tar, "train.tags.de-en.en", "\n".join(en) + "\n")
        for stem in corpora._IWSLT_TEST:
            for lang, word in [("de", "Test"), ("en", "Test &amp; more")]:
                add(tar, f"{stem}.de-en.{lang}.xml", f'<doc>\n<seg id="1"> {word} {stem} </seg>\n</doc>\n')
    train = corpora.load_parallel("iwslt14-de-en", "train", tmp_path)
    valid = corpora.load_parallel("iwslt14-de-en", "valid", tmp_path)
    assert train[0] == ("Titel", "Title") and len(train) == 45 and len(valid) == 2
    assert valid == [("Satz 21", "Sentence 21"), ("Satz 44", "Sentence 44")]
    test = corpora.load_parallel("iwslt14-de-en", "test", tmp_path, src_lang="en")
    assert test[0] == ("Test & more IWSLT14.TED.dev2010", "Test IWSLT14.TED.dev2010") and len(test) == 5
    with pytest.raises(ValueError, match="download only"):
        corpora.load_parallel("wmt14-en-de", "train", tmp_path)


def test_text_and_classification_layouts(tmp_path):
    (tmp_path / "tinyshakespeare").mkdir()
    (tmp_path / "tinyshakespeare" / "input.txt").write_text("abcdefghij" * 10)
    assert corpora.load_text("tinyshakespeare", "train", tmp_path) == "abcdefghij" * 9
    assert corpora.load_text("tinyshakespeare", "valid", tmp_path) == "abcdefghij"
    sst = tmp_path / "sst2"
    (sst / "glue").mkdir(parents=True)
    (sst / "stsa_binary").mkdir()
    (sst / "glue" / "train.tsv").write_text("sentence\tlabel\ngood  film \t1\nbad one \t0\n")
    (sst / "glue" / "dev.tsv").write_text("sentence\tlabel\nfine \t1\n")
    (sst / "glue" / "test.tsv").write_text("index\tsentence\n0\tunknown\n")
    (sst / "stsa_binary" / "stsa.binary.train").write_text("1 a -lrb- good -rrb- film\n")
    (sst / "stsa_binary" / "stsa.binary.dev").write_text("0 meh\n")
    assert corpora.load_classification("sst2", "train", tmp_path) == [("good film", 1), ("bad one", 0)]
    assert corpora.load_classification("sst2", "valid", tmp_path) == [("fine", 1)]
    assert corpora.load_classification("sst2", "train", tmp_path, variant="stsa",
                                       clean=["unescape_ptb"]) == [("a ( good ) film", 1)]
    with pytest.raises(ValueError, match="no labels"):
        corpora.load_classification("sst2", "test", tmp_path)
    senti = tmp_path / "chnsenticorp"
    senti.mkdir()
    (senti / "train.tsv").write_text("label\ttext_a\n1\t酒店  很好\t还行\n0\t太差了\n\n", encoding="utf-8")
    (senti / "dev.tsv").write_text("label\ttext_a\n0\t房间 小\n", encoding="utf-8")
    assert corpora.load_classification("chnsenticorp", "train", tmp_path) == [("酒店 很好 还行", 1), ("太差了", 0)]
    assert corpora.load_classification("chnsenticorp", "valid", tmp_path) == [("房间 小", 0)]
    with pytest.raises(ValueError, match="no split 'test'; its splits: train, valid"):
        corpora.load_classification("chnsenticorp", "test", tmp_path)
    assert corpora.get_corpus("chnsenticorp").labels == corpora.get_corpus("sst2").labels == ("negative", "positive")
    stats = corpora.corpus_stats("sst2", tmp_path)
    assert stats["files"]["glue/train.tsv"]["lines"] == 3
    assert corpora.describe("sst2", tmp_path)["location"] == str(sst)
    assert corpora.describe("multi30k", tmp_path)["location"].startswith("not found")


# ------------------------------------------------------------------------------------------------ clean-up
def test_clean_steps():
    assert clean.clean_text("這是一個測試", ["to_simplified"]) == "这是一个测试"
    assert clean.apply_cleaning([" a \t b\n", "ＡＢＣ１"], ["normalize_whitespace", "nfkc"]) == ["a b", "ABC1"]
    assert clean.zh_punctuation("你好, 世界!  OK, fine? 是吗 ?") == "你好，世界！  OK, fine? 是吗？"
    assert clean.clean_pair(" Hi ", "我沒事。", ["strip"], ["to_simplified"]) == ("Hi", "我没事。")
    assert clean.clean_pairs([("a  b", "c")], ["normalize_whitespace"], []) == [("a b", "c")]
    with pytest.raises(ValueError) as e:
        clean.apply_cleaning(["x"], ["normalise_whitespace"])
    assert "normalize_whitespace" in str(e.value) and "to_simplified" in str(e.value)


# ------------------------------------------------------------------------------------------------ real corpora
SPLIT_DIGEST = """
import hashlib, json, sys
from rosetta.data import corpora
out = {s: hashlib.sha256(json.dumps(corpora.load_parallel("tatoeba-en-zh", s, sys.argv[1])).encode()).hexdigest()
       for s in ("train", "valid", "test")}
print(json.dumps(out))
"""


@pytest.mark.corpus
def test_tatoeba_split_real(real_data):
    splits = {s: corpora.load_parallel("tatoeba-en-zh", s, real_data) for s in ("train", "valid", "test")}
    english = {s: {" ".join(en.split()) for en, _ in pairs} for s, pairs in splits.items()}
    assert len(english["valid"]) == 1000 and len(english["test"]) == 1000
    assert not english["train"] & english["valid"] and not english["train"] & english["test"]
    assert not english["valid"] & english["test"]
    assert sum(map(len, splits.values())) == 30975  # every pair of the shared copy, once
    assert splits["valid"] == corpora.load_parallel("tatoeba-en-zh", "valid", real_data)
    assert splits["valid"] != corpora.load_parallel("tatoeba-en-zh", "valid", real_data, seed=2)
    # the same split in a fresh interpreter with another string-hash seed
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", SPLIT_DIGEST, str(real_data)], env=env, capture_output=True,
                         text=True, check=True).stdout
    digest = json.loads(out)
    for s, pairs in splits.items():
        assert digest[s] == hashlib.sha256(json.dumps(pairs).encode()).hexdigest()


@pytest.mark.corpus
def test_real_corpora_sizes(real_data):
    assert [len(corpora.load_parallel("multi30k", s, real_data, src_lang="de")) for s in ("train", "valid", "test")] \
        == [29000, 1014, 1000]
    de, en = corpora.load_parallel("multi30k", "train", real_data)[0]
    assert (de, en) != corpora.load_parallel("multi30k", "train", real_data, src_lang="en")[0]
    assert [len(corpora.load_classification("sst2", s, real_data)) for s in ("train", "valid")] == [67349, 872]
    assert {label for _, label in corpora.load_classification("sst2", "valid", real_data)} == {0, 1}
    senti = [corpora.load_classification("chnsenticorp", s, real_data) for s in ("train", "valid")]
    assert [len(x) for x in senti] == [9600, 1200] and {label for _, label in senti[1]} == {0, 1}
    train, valid = (corpora.load_text("tinyshakespeare", s, real_data) for s in ("train", "valid"))
    assert len(train) + len(valid) == 1115394 and len(train) == int(1115394 * 0.9)
    for info in corpora.list_corpora():
        row = corpora.describe(info.name, real_data)
        assert row["location"] and row["size"]
