"""Evaluation metrics with the field's reference implementations, on detokenised text: sacreBLEU (BLEU, chrF) for
translation, Google's rouge-score (ROUGE-1/2/L) for summarisation."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import sacrebleu

# sacreBLEU's tokenizer by target language: "zh" splits Chinese characters, "ja-mecab" needs MeCab,
# 13a is the WMT default for space-delimited languages.
BLEU_TOKENIZER = {"zh": "zh", "cmn": "zh", "ja": "char", "ko": "char"}


def bleu_tokenizer_for(lang: str | None) -> str:
    return BLEU_TOKENIZER.get((lang or "").split("-")[0].lower(), "13a")


@dataclass
class Scores:
    bleu: float
    chrf: float
    bleu_signature: str
    chrf_signature: str
    n_sentences: int

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return (f"BLEU = {self.bleu:.2f}  chrF = {self.chrf:.2f}  ({self.n_sentences} sentences)\n"
                f"  {self.bleu_signature}\n  {self.chrf_signature}")


def score(hypotheses: list[str], references: list[str], target_lang: str | None = None) -> Scores:
    """Corpus BLEU and chrF of detokenised hypotheses against one reference each."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references: they must pair up")
    bleu = sacrebleu.metrics.BLEU(tokenize=bleu_tokenizer_for(target_lang))
    chrf = sacrebleu.metrics.CHRF()
    b = bleu.corpus_score(hypotheses, [references])
    c = chrf.corpus_score(hypotheses, [references])
    return Scores(b.score, c.score, str(bleu.get_signature()), str(chrf.get_signature()), len(hypotheses))


# ------------------------------------------------------------------------------------------------ ROUGE
ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


@dataclass
class RougeScores:
    """ROUGE-1 / ROUGE-2 / ROUGE-L F1, ×100, averaged over documents."""

    rouge1: float
    rouge2: float
    rougeL: float  # noqa: N815 — rouge-score's own name
    n_documents: int

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return (f"ROUGE-1 = {self.rouge1:.2f}  ROUGE-2 = {self.rouge2:.2f}  ROUGE-L = {self.rougeL:.2f}  "
                f"({self.n_documents} documents; rouge-score F1, Porter stemming, best reference by ROUGE-1)")


def rouge_scorer():
    """Google's ``rouge-score`` scorer for ROUGE-1/2/L with Porter stemming (its tokenizer lower-cases and
    keeps only a–z and 0–9, so punctuation and case never count)."""
    from rouge_score import rouge_scorer as rs

    return rs.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)


def rouge_best(scorer, hypothesis: str, references: list[str]) -> dict[str, float]:
    """F1 of ``hypothesis`` against the reference it matches best by ROUGE-1 F1 (the first on a tie):
    {"rouge1", "rouge2", "rougeL"} of THAT reference (SciTLDR's scripts/cal-rouge.py "multi-max" rule: one
    reference is chosen, not the best of each metric separately)."""
    if not references:
        raise ValueError("every document needs at least one reference summary")
    best = None
    for reference in references:
        scores = scorer.score(reference, hypothesis)  # rouge-score's order: (target, prediction)
        if best is None or scores["rouge1"].fmeasure > best["rouge1"].fmeasure:
            best = scores
    return {name: best[name].fmeasure for name in ROUGE_TYPES}


def rouge(hypotheses: list[str], references: list[list[str]]) -> RougeScores:
    """ROUGE-1/2/L F1 ×100 of each hypothesis against its references (one or more per document, see
    ``rouge_best``), averaged over documents (the summarisation papers' "average F1")."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} reference lists: one list per document")
    if not hypotheses:
        raise ValueError("no documents to score")
    scorer, totals = rouge_scorer(), dict.fromkeys(ROUGE_TYPES, 0.0)
    for hypothesis, refs in zip(hypotheses, references):
        if isinstance(refs, str):
            raise ValueError("references must be a list of reference summaries per document, not a string")
        for name, value in rouge_best(scorer, hypothesis, list(refs)).items():
            totals[name] += value
    n = len(hypotheses)
    return RougeScores(*(100 * totals[name] / n for name in ROUGE_TYPES), n_documents=n)
