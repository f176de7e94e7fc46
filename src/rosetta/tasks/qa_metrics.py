"""Extractive QA metrics, as the official scripts define them: SQuAD v1.1 EM / F1 and CMRC 2018 EM / F1.

Each score is the maximum over a question's gold answers, averaged over questions, in %; a question without
a prediction scores 0 (both official scripts count it in the total).

SQuAD v1.1 (``evaluate-v1.1.py``), for English:
    normalise  lower-case → drop ASCII punctuation (``string.punctuation``) → drop the words a / an / the →
               collapse whitespace
    EM         normalise(prediction) == normalise(gold)
    F1         over whitespace tokens of the normalised strings: common = |bag(pred) ∩ bag(gold)|,
               P = common / |pred|, R = common / |gold|, F1 = 2PR / (P + R) (0 when nothing is common)

CMRC 2018 (``cmrc2018_evaluate.py``), for Chinese:
    segment    lower-case, strip; each Chinese character (U+4E00–U+9FA5) and each listed punctuation mark is
               one token; runs of other characters (English words, numbers) are cut by NLTK's word tokenizer
    EM         the two strings equal after deleting the listed punctuation (nothing else: spaces stay)
    F1         with the punctuation dropped from both segmentations, L = the LONGEST COMMON SUBSTRING (a
               contiguous run of tokens, not a subsequence), P = L / |pred|, R = L / |gold|, F1 = 2PR / (P + R)

One difference from the official CMRC script, stated: ``nltk.word_tokenize`` needs the downloadable Punkt
model (``punkt_tab``); here its sentence splitting is Punkt with default parameters (no model), followed by the
same Treebank word tokenizer. The two agree except where a trained Punkt model would split sentences
differently inside a run of non-Chinese text — a rare case in short answer spans.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Mapping, Sequence
from functools import lru_cache

# ------------------------------------------------------------------------------------------------ SQuAD v1.1
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_ASCII_PUNCT = set(string.punctuation)


def squad_normalize(text: str) -> str:
    """SQuAD v1.1's normalisation: lower-case, no ASCII punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _ASCII_PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def squad_em(prediction: str, gold: str) -> float:
    """1.0 when the normalised strings are equal, else 0.0."""
    return float(squad_normalize(prediction) == squad_normalize(gold))


def squad_f1(prediction: str, gold: str) -> float:
    """Bag-of-words F1 between the normalised strings (see the module docstring)."""
    pred, ref = squad_normalize(prediction).split(), squad_normalize(gold).split()
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


# ------------------------------------------------------------------------------------------------ CMRC 2018
# The official list. "……" is two characters, so a character never equals it: "…" is NOT removed (as there).
CMRC_PUNCT = ["-", ":", "_", "*", "^", "/", "\\", "~", "`", "+", "=",
              "，", "。", "：", "？", "！", "“", "”", "；", "’", "《", "》", "……", "·", "、",
              "「", "」", "（", "）", "－", "～", "『", "』"]
_CJK = re.compile(r"[\u4e00-\u9fa5]")


@lru_cache(maxsize=1)
def _word_tokenizers():
    from nltk.tokenize import NLTKWordTokenizer
    from nltk.tokenize.punkt import PunktSentenceTokenizer

    return PunktSentenceTokenizer(), NLTKWordTokenizer()


def _english_tokens(text: str) -> list[str]:
    """``nltk.word_tokenize`` without its downloadable model: sentences (default Punkt), then Treebank words."""
    sentences, words = _word_tokenizers()
    return [w for s in sentences.tokenize(text) for w in words.tokenize(s)]


def cmrc_segment(text: str, remove_punctuation: bool = False) -> list[str]:
    """CMRC 2018's mixed segmentation: Chinese characters and punctuation one token each, other runs by NLTK."""
    out, run = [], ""
    for ch in str(text).lower().strip():
        if remove_punctuation and ch in CMRC_PUNCT:
            continue
        if _CJK.search(ch) or ch in CMRC_PUNCT:
            if run:
                out.extend(_english_tokens(run))
                run = ""
            out.append(ch)
        else:
            run += ch
    if run:
        out.extend(_english_tokens(run))
    return out


def cmrc_strip_punctuation(text: str) -> str:
    """Lower-cased, stripped, the listed punctuation deleted (what CMRC's EM compares)."""
    return "".join(ch for ch in str(text).lower().strip() if ch not in CMRC_PUNCT)


def longest_common_substring(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest contiguous run shared by ``a`` and ``b`` (dynamic programming, O(|a|·|b|))."""
    best, prev = 0, [0] * (len(b) + 1)
    for x in a:
        cur = [0] * (len(b) + 1)
        for j, y in enumerate(b):
            if x == y:
                cur[j + 1] = prev[j] + 1
                best = max(best, cur[j + 1])
        prev = cur
    return best


def cmrc_em(prediction: str, gold: str) -> float:
    """1.0 when the strings are equal once the listed punctuation is deleted, else 0.0."""
    return float(cmrc_strip_punctuation(prediction) == cmrc_strip_punctuation(gold))


def cmrc_f1(prediction: str, gold: str) -> float:
    """Longest-common-substring F1 over the mixed segmentation without punctuation (module docstring)."""
    pred, ref = cmrc_segment(prediction, True), cmrc_segment(gold, True)
    common = longest_common_substring(ref, pred)
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


# ------------------------------------------------------------------------------------------------ both
METRICS = {"squad": (squad_em, squad_f1), "cmrc": (cmrc_em, cmrc_f1)}


def metric_for(language: str) -> str:
    """The metric the field reports for a language: "cmrc" for Chinese, "squad" otherwise (XQuAD's advice)."""
    return "cmrc" if language.startswith("zh") else "squad"


def qa_scores(predictions: Mapping[str, str], golds: Mapping[str, Sequence[str]], metric: str = "squad"
              ) -> dict[str, float]:
    """{"em", "f1"} in % over every question of ``golds`` (id → gold answer texts); a question missing from
    ``predictions`` scores 0, as in both official scripts. ``metric``: "squad" or "cmrc"."""
    if metric not in METRICS:
        raise ValueError(f"unknown QA metric {metric!r}; choose one of {', '.join(METRICS)}")
    if not golds:
        raise ValueError("no gold answers to score against")
    em_fn, f1_fn = METRICS[metric]
    em = f1 = 0.0
    for qid, answers in golds.items():
        if qid not in predictions or not answers:
            continue
        pred = str(predictions[qid])
        em += max(em_fn(pred, a) for a in answers)
        f1 += max(f1_fn(pred, a) for a in answers)
    return {"em": 100.0 * em / len(golds), "f1": 100.0 * f1 / len(golds)}
