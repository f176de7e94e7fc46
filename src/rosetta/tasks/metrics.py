"""Evaluation metrics with the field's reference implementation (sacreBLEU), on detokenised text."""

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
