"""Text clean-up: small named steps, applied in order to each side of a corpus.

A corpus entry in the registry names its default steps per language (e.g. Tatoeba's Chinese side is
converted to Simplified characters); a recipe may replace them with its own list::

    apply_cleaning(["這是一個測試 "], ["normalize_whitespace", "to_simplified"])  # ['这是一个测试']

Steps (see ``STEPS``):

    strip                 remove leading/trailing whitespace
    normalize_whitespace  every run of whitespace becomes one space; strip both ends
    nfkc                  Unicode NFKC (full-width letters/digits → ASCII, ligatures split, …)
    lowercase             str.lower
    to_simplified         Chinese Traditional → Simplified (OpenCC "t2s")
    zh_punctuation        ASCII , ! ? : ; after a CJK character → full-width ，！？：；
                          (spaces around it dropped when CJK follows)
    unescape_ptb          PTB escapes of SST's sentence files: -lrb- → (, -rrb- → ), \\/ → /
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence

_WHITESPACE = re.compile(r"\s+")
# Han ideographs, kana and CJK symbols/punctuation: what a Chinese/Japanese sentence is made of.
_CJK = "\u3000-\u303f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef"
_ZH_PUNCT = re.compile(rf"(?<=[{_CJK}])\s*([,!?:;])(?:\s+(?=[{_CJK}]))?")
_ZH_FULLWIDTH = {",": "，", "!": "！", "?": "？", ":": "：", ";": "；"}
_PTB = {"-lrb-": "(", "-rrb-": ")", "-lsb-": "[", "-rsb-": "]", "-lcb-": "{", "-rcb-": "}", "\\/": "/"}
_PTB_RE = re.compile("|".join(re.escape(k) for k in _PTB), re.IGNORECASE)


def strip(text: str) -> str:
    return text.strip()


def normalize_whitespace(text: str) -> str:
    return _WHITESPACE.sub(" ", text).strip()


def nfkc(text: str) -> str:
    return unicodedata.normalize("NFKC", text)


def lowercase(text: str) -> str:
    return text.lower()


@functools.lru_cache(maxsize=1)
def _opencc_t2s():
    """The OpenCC Traditional→Simplified converter (created once; the config name differs by package)."""
    try:
        import opencc
    except ImportError as e:  # pragma: no cover - opencc is a dependency
        raise ImportError("to_simplified needs OpenCC: pip install opencc") from e
    last: Exception | None = None
    for config in ("t2s", "t2s.json"):
        try:
            return opencc.OpenCC(config)
        except Exception as e:  # different packages raise different errors
            last = e
    raise RuntimeError(f"OpenCC could not load its 't2s' configuration: {last}")


def to_simplified(text: str) -> str:
    return _opencc_t2s().convert(text)


def zh_punctuation(text: str) -> str:
    return _ZH_PUNCT.sub(lambda m: _ZH_FULLWIDTH[m.group(1)], text)


def unescape_ptb(text: str) -> str:
    return _PTB_RE.sub(lambda m: _PTB[m.group(0).lower()], text)


STEPS: dict[str, Callable[[str], str]] = {
    "strip": strip,
    "normalize_whitespace": normalize_whitespace,
    "nfkc": nfkc,
    "lowercase": lowercase,
    "to_simplified": to_simplified,
    "zh_punctuation": zh_punctuation,
    "unescape_ptb": unescape_ptb,
}


def check_steps(steps: Iterable[str]) -> list[str]:
    """The step names as a list; an unknown name raises ``ValueError`` listing the known ones."""
    if isinstance(steps, str):
        steps = [steps]
    steps = list(steps)
    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        raise ValueError(f"unknown clean-up step(s) {unknown}; known steps: {', '.join(STEPS)}")
    return steps


def clean_text(text: str, steps: Sequence[str]) -> str:
    """Apply ``steps`` (names from ``STEPS``) to one string, in order."""
    for name in check_steps(steps):
        text = STEPS[name](text)
    return text


def apply_cleaning(texts: Iterable[str], steps: Sequence[str]) -> list[str]:
    """Apply ``steps`` to every string of ``texts``."""
    funcs = [STEPS[name] for name in check_steps(steps)]
    out = []
    for text in texts:
        for f in funcs:
            text = f(text)
        out.append(text)
    return out


def clean_pair(src: str, tgt: str, src_steps: Sequence[str], tgt_steps: Sequence[str]) -> tuple[str, str]:
    """Clean one sentence pair, each side with its own steps."""
    return clean_text(src, src_steps), clean_text(tgt, tgt_steps)


def clean_pairs(pairs: Sequence[tuple[str, str]], src_steps: Sequence[str],
                tgt_steps: Sequence[str]) -> list[tuple[str, str]]:
    """Clean sentence pairs, each side with its own steps (validated once, before any work)."""
    src = apply_cleaning((s for s, _ in pairs), src_steps)
    tgt = apply_cleaning((t for _, t in pairs), tgt_steps)
    return list(zip(src, tgt))
