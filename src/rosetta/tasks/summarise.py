"""Summarisation as a training task (``[data] task = "summarisation"``): a paper's abstract → its one-sentence
TLDR (SciTLDR-A), trained and decoded as translation is: the same encoder–decoder, loop, loss and search.

    abstract ─ [CLS] … [SEP] (≤ max_length tokens; longer ones are cut, not dropped) ─ Transformer ─ TLDR
    metric: ROUGE-1/2/L F1 (rouge-score, stemming) against every reference, best by ROUGE-1 (``tasks.metrics``)

Two starting points, one architecture:

* ``[model] pretrained = "all-MiniLM-L6-v2"``: BERT2BERT (``rosetta.models.bert2bert``): encoder and decoder
  warm-started from the BERT, its WordPiece vocabulary on both sides (``PretrainedTokenizer``), new
  cross-attention. ``load_weights = false``: the same architecture and vocabulary from random weights.
* no ``pretrained``: a Rosetta BPE vocabulary and the recipe's preset, as for translation.

Baselines computed here, from the abstract's sentences (``rosetta.data.summaries.split_sentences``):
Lead-1 (the first sentence) and the extractive oracle (the one sentence with the best ROUGE-L F1 against the
references — it reads the references, so it is a ceiling for one-sentence extraction, not a method).
A trained summariser is a translation-family model with "task": "summarisation" in its config.json:
``rosetta.load(run).translate([abstract])`` summarises.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from rosetta.data.summaries import Document, load_summaries, split_sentences
from rosetta.data.tokenizer import PretrainedTokenizer
from rosetta.decode.pipelines import model_family_of
from rosetta.models.bert2bert import bert2bert
from rosetta.models.pretrained import resolve_pretrained
from rosetta.models.transformer import Transformer
from rosetta.tasks.metrics import RougeScores, rouge, rouge_scorer
from rosetta.tasks.translation import TranslationTask
from rosetta.train.recipe import Recipe

TASK = "summarisation"
BASELINES = ("lead-1", "oracle")


class SummarisationTask(TranslationTask):
    """Abstract → TLDR with ``TranslationTask``'s machinery; data, vocabulary, model and metric differ."""

    metric = "rougeL"

    def __init__(self, recipe: Recipe, data_dir: Path | None = None, run_dir: Path | None = None,
                 resume: bool = False):
        m = recipe.model
        if not recipe.data.corpus:
            raise ValueError('task "summarisation" reads a known corpus: set data.corpus = "scitldr"')
        if m.pretrained is None and recipe.tokenizer.kind == "pretrained":
            raise ValueError('tokenizer.kind = "pretrained" needs model.pretrained (e.g. "all-MiniLM-L6-v2")')
        self.pretrained = resolve_pretrained(m.pretrained) if m.pretrained else None
        super().__init__(recipe, data_dir, run_dir, resume)

    def _huggingface_start(self):
        """An encoder checkpoint (BERT, MiniLM) warm-starts bert2bert (``self.pretrained``); an encoder–decoder
        one (BART, T5, Marian) starts as itself, as in translation."""
        if self.pretrained is None or model_family_of(self.pretrained) != "translation":
            return None
        self.pretrained = None
        return super()._huggingface_start()

    def _load_data(self, data_dir: Path | None) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """(abstract, first reference) pairs; the validation documents (repeats of train dropped) are kept in
        ``self.valid_docs`` with all their references, for ROUGE."""
        d = self.recipe.data
        train = load_summaries(d.corpus, "train", data_dir)[: d.max_train_examples]
        self.valid_docs = load_summaries(d.corpus, "valid", data_dir)[: d.valid_size]
        return [(doc.text, doc.references[0]) for doc in train], [(doc.text, doc.references[0])
                                                                   for doc in self.valid_docs]

    def _tokenizers(self, train_pairs: list[tuple[str, str]], run_dir: Path | None, resume: bool):
        if self.pretrained is None:
            return super()._tokenizers(train_pairs, run_dir, resume)
        tokenizer = PretrainedTokenizer.load(self.pretrained)  # one vocabulary for abstracts and TLDRs
        return tokenizer, tokenizer

    def _build_model(self) -> Transformer:
        if self.pretrained is None:
            return super()._build_model()
        m = self.recipe.model
        return bert2bert(self.pretrained, m.load_weights, self.tgt_tok.bos_id, self.tgt_tok.eos_id,
                         m.cross_init, **m.overrides)

    def _encode(self, pairs: list[tuple[str, str]], max_length: int | None) -> list[tuple[list[int], list[int]]]:
        """Token ids of each (abstract, TLDR): an abstract longer than ``data.max_length`` tokens (framing
        included) is cut to fit, a TLDR to ``max_length`` tokens; training drops pairs with an empty side."""
        limit = self.recipe.data.max_length
        src = self.src_tok.encode_batch([s for s, _ in pairs])
        tgt = self.tgt_tok.encode_batch([t for _, t in pairs])
        framing = len(self.src_tok.frame_source([]))
        return [(self.src_tok.frame_source(s[: limit - framing]), self.target_prefix + t[:limit])
                for s, t in zip(src, tgt) if max_length is None or (s and t)]

    def evaluate(self, model: nn.Module, full: bool) -> dict[str, float]:
        """Validation loss against the first reference; with ``full`` also greedy ROUGE-1/2/L on the first
        ``bleu_sentences`` validation documents against all their references."""
        metrics = super().evaluate(model, full=False)
        if full:
            n = self.recipe.train.bleu_sentences
            hyps = self.greedy_outputs(model, [s for s, _ in self.valid_ids[:n]])
            metrics.update(rouge(hyps, [list(doc.references) for doc in self.valid_docs[:n]]).to_dict())
            metrics.pop("n_documents")
        return metrics

    def model_config(self) -> dict[str, Any]:
        m = self.recipe.model
        return {**super().model_config(), "task": TASK, "src_lang": "en", "tgt_lang": "en",
                "tokenizer": "pretrained" if self.pretrained else self.recipe.tokenizer.kind,
                "pretrained": str(m.pretrained) if self.pretrained else None,
                "pretrained_weights": bool(self.pretrained and m.load_weights),
                "cross_init": m.cross_init if self.pretrained and m.load_weights else None,
                "max_length": self.recipe.data.max_length}


# ------------------------------------------------------------------------------------------ baselines
def lead(sentences: list[str], n: int = 1) -> str:
    """Lead-n: the first ``n`` sentences."""
    return " ".join(sentences[:n])


def extractive_oracle(sentences: list[str], references: list[str], scorer=None) -> str:
    """The single sentence with the highest ROUGE-L F1 against the references (the best over them); the
    first such sentence on a tie, "" for no sentences."""
    scorer = scorer or rouge_scorer()
    best, best_score = "", -1.0
    for sentence in sentences:
        value = max(scorer.score(ref, sentence)["rougeL"].fmeasure for ref in references)
        if value > best_score:
            best, best_score = sentence, value
    return best


def baseline_summaries(docs: list[Document], kind: str) -> list[str]:
    """One summary per document by a baseline: "lead-1" or "oracle", over ``split_sentences`` of the abstract."""
    if kind not in BASELINES:
        raise ValueError(f"unknown baseline {kind!r}; baselines: {', '.join(BASELINES)}")
    if kind == "lead-1":
        return [lead(split_sentences(doc.text)) for doc in docs]
    scorer = rouge_scorer()
    return [extractive_oracle(split_sentences(doc.text), list(doc.references), scorer) for doc in docs]


def score_summaries(summaries: list[str], docs: list[Document]) -> RougeScores:
    """ROUGE of one summary per document against the document's references."""
    return rouge(summaries, [list(doc.references) for doc in docs])
