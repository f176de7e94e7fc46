"""Sequence classification as a training task (``[data] task = "classification"``), e.g. SST-2 sentiment.

    sentence ─ tokenizer ─ [CLS] … [SEP] (or <s> … </s>) ids (B, T) ─ EncoderModel ─ hidden (B, T, D)
             ─ mean over real tokens (B, D) ─ Linear ─ logits (B, labels) ─ cross-entropy;  metric: accuracy

``[model] pooler = true`` reads tanh(W h_[CLS]) instead of the mean (BERT's pooler, the checkpoint's own when it
has one): BertForSequenceClassification's head, so ``rosetta export --format huggingface`` can write the model
as one (a mean-pooled classifier has no Hugging Face head).

Two starting points, one architecture:

* ``[model] pretrained = "all-MiniLM-L6-v2"`` (or any Hugging Face BERT directory), or a Rosetta encoder run
  (``"runs/zh-bert-mlm"``, ``"runs/zh-electra"``: MLM or ELECTRA pretraining): its tokenizer and its encoder
  weights, plus a new classification head — fine-tuning. With ``load_weights = false`` the same architecture
  and tokenizer start from random weights, to show what pretraining buys.
* no ``pretrained``: a Rosetta BPE (or character) tokenizer learned on the training sentences and a BERT-layout
  encoder of the preset's size, from scratch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rosetta.data import corpora
from rosetta.data.batching import BatchStream, ClassificationBatch, collate_classification, make_batches
from rosetta.data.tokenizer import Tokenizer, encode_texts
from rosetta.models.encoder import EncoderModel, bert_config
from rosetta.tasks import preset_sizes
from rosetta.train.recipe import Recipe

TOKENIZER_DIR = "tokenizer"
EVAL_BATCH = 128


def load_examples(recipe: Recipe, split: str, data_dir: Path | None) -> list[tuple[str, int]]:
    """(sentence, label) pairs: a known classification corpus, or a file of ``sentence<TAB>label`` lines
    (``data.train_src`` / ``data.valid_src``; a first line whose label is not a number is a header)."""
    d = recipe.data
    if d.corpus:
        return corpora.load_classification(d.corpus, split, data_dir)
    path = {"train": d.train_src, "valid": d.valid_src}.get(split)
    if not path:
        raise ValueError(f"no {split} data: set data.corpus (e.g. sst2) or data.{split}_src (sentence<TAB>label)")
    examples = []
    for number, line in enumerate(corpora.read_lines(path), 1):
        text, _, label = line.rpartition("\t")
        if not label.strip().lstrip("-").isdigit():
            if number == 1:
                continue  # header
            raise ValueError(f"{path}: line {number} does not end with a tab and an integer label")
        examples.append((text, int(label)))
    return examples


class ClassificationTask:
    """Everything the Trainer needs to train an encoder classifier (see rosetta.train.Task)."""

    metric = "accuracy"
    higher_is_better = True

    def __init__(self, recipe: Recipe, data_dir: Path | None = None, run_dir: Path | None = None,
                 resume: bool = False):
        self.recipe = recipe
        d, m = recipe.data, recipe.model
        train = load_examples(recipe, "train", data_dir)[: d.max_train_examples]
        valid = load_examples(recipe, "valid", data_dir)[: d.valid_size]
        labels = sorted({label for _, label in train})
        if labels[0] < 0:
            raise ValueError(f"labels must be 0 … n-1, found {labels[0]}")
        self.num_labels = max(2, labels[-1] + 1)
        torch.manual_seed(recipe.train.seed)
        if m.pretrained:
            self.pretrained = m.pretrained
            self.model = self._from_pretrained(m.load_weights)
        else:
            if recipe.tokenizer.kind == "pretrained":
                raise ValueError('tokenizer.kind = "pretrained" needs model.pretrained (e.g. "all-MiniLM-L6-v2")')
            self.pretrained, self.tokenizer_kind = None, recipe.tokenizer.kind
            self.tokenizer = self._own_tokenizer([s for s, _ in train], run_dir, resume)
            sizes = preset_sizes(m.preset, "n_encoder_layers")
            config = bert_config(self.tokenizer.vocab_size, **{"max_len": d.max_length, **sizes, **m.overrides})
            self.model = EncoderModel(config, num_labels=self.num_labels, pooler=m.pooler)
        self.config = self.model.config
        self.train_examples = self._encode(train)
        self.valid_examples = self._encode(valid)
        self.device = torch.device("cpu")

    def _from_pretrained(self, load_weights: bool) -> EncoderModel:
        """The pretrained encoder's architecture (and weights) with a fresh head reading the mean of the tokens
        (all-MiniLM-L6-v2 was trained with mean pooling), or with ``[model] pooler`` BERT's [CLS] pooler (the
        checkpoint's weights when it has one, e.g. RoBERTa's classifier.dense). A Hugging Face directory or a
        Rosetta encoder run, read as the QA task reads them (``rosetta.tasks.qa.load_base``)."""
        from rosetta.tasks.qa import HEADS, load_base

        base, self.tokenizer, facts = load_base(self.pretrained)
        self.tokenizer_kind = facts["tokenizer"]
        if self.tokenizer_kind == "pretrained":  # Hugging Face: truncate at data.max_length
            self.tokenizer.enable_truncation(self.recipe.data.max_length)
        config = base.config.replace(**self.recipe.model.overrides)  # e.g. dropout
        pooler = self.recipe.model.pooler
        model = EncoderModel(config, num_labels=self.num_labels, pooler=pooler)
        if load_weights:
            keep = ("pooler.",) if pooler else ()
            encoder = {k: v for k, v in base.state_dict().items() if k.startswith(keep) or not k.startswith(HEADS)}
            missing, unexpected = model.load_state_dict(encoder, strict=False)
            fresh = {f"{m}.{p}" for m in ("classifier", "pooler") for p in ("weight", "bias")}
            if unexpected or not {"classifier.weight", "classifier.bias"} <= set(missing) <= fresh:
                raise RuntimeError(f"pretrained weights do not fit: missing {missing}, unexpected {unexpected}")
        return model

    def _own_tokenizer(self, texts: list[str], run_dir: Path | None, resume: bool) -> Tokenizer:
        saved = Path(run_dir) / TOKENIZER_DIR if run_dir else None
        if resume and saved and saved.exists():
            return Tokenizer.load(saved)
        t = self.recipe.tokenizer
        if t.kind == "bpe":
            tokenizer = Tokenizer.train(texts, t.vocab_size, t.min_frequency)
        elif t.kind == "char":
            tokenizer = Tokenizer.train_chars(texts)
        else:
            raise ValueError(f"tokenizer.kind {t.kind!r} is not for classification; use bpe, char or pretrained")
        if saved:
            tokenizer.save(saved / "tokenizer.json")
        return tokenizer

    def _encode(self, examples: list[tuple[str, int]]) -> list[tuple[list[int], int]]:
        ids = encode_texts(self.tokenizer, [s for s, _ in examples], self.recipe.data.max_length)
        return [(i, label) for i, (_, label) in zip(ids, examples)]

    def to(self, device: torch.device) -> None:
        self.device = device
        self.model.to(device)

    def _collate(self, examples) -> ClassificationBatch:
        return collate_classification(examples, self.config.pad_id)

    def batches(self, rank: int, world_size: int) -> BatchStream:
        tr = self.recipe.train
        return BatchStream(self.train_examples, max_tokens=tr.max_tokens, max_sentences=tr.batch_size, seed=tr.seed,
                           rank=rank, world_size=world_size, collate=self._collate)

    def count_tokens(self, batch: ClassificationBatch) -> int:
        return len(batch.labels)  # the loss is a mean over sentences

    def loss(self, model: nn.Module, batch: ClassificationBatch, label_smoothing: float):
        ids, labels = batch.ids.to(self.device), batch.labels.to(self.device)
        hidden = model(ids)  # through the Trainer's wrapper (DDP), if any: (B, T, D)
        core = getattr(model, "module", model)  # the EncoderModel inside a DDP wrapper
        logits = core.head(hidden, ids != self.config.pad_id).float()  # (B, labels)
        loss = F.cross_entropy(logits, labels, label_smoothing=label_smoothing, reduction="sum")
        with torch.no_grad():
            nll = F.cross_entropy(logits, labels, reduction="sum")
        return loss, nll, len(labels)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, full: bool) -> dict[str, float]:
        """Accuracy and mean cross-entropy on the validation sentences (e.g. SST-2 dev, 872 sentences)."""
        correct, nll_sum = 0, 0.0
        order = make_batches([len(ids) for ids, _ in self.valid_examples], None, None, shuffle=False,
                             max_sentences=EVAL_BATCH)
        for indices in order:
            batch = self._collate([self.valid_examples[i] for i in indices])
            ids, labels = batch.ids.to(self.device), batch.labels.to(self.device)
            logits = model.classify(ids).float()
            correct += int((logits.argmax(-1) == labels).sum())
            nll_sum += float(F.cross_entropy(logits, labels, reduction="sum"))
        n = max(len(self.valid_examples), 1)
        return {"accuracy": correct / n, "valid_loss": nll_sum / n}

    def model_config(self) -> dict[str, Any]:
        d = self.recipe.data
        names = list(corpora.get_corpus(d.corpus).labels) if d.corpus else []
        names = names or [str(i) for i in range(self.num_labels)]
        return {"family": "encoder", "task": "classification", "model": self.config.to_dict(),
                "num_labels": self.num_labels,
                "pooler": self.model.pooler is not None, "labels": names, "tokenizer": self.tokenizer_kind,
                "pretrained": str(self.recipe.model.pretrained) if self.pretrained else None,
                "pretrained_weights": bool(self.pretrained and self.recipe.model.load_weights),
                "corpus": d.corpus, "max_length": d.max_length}

    def write_tokenizers(self, directory: Path) -> None:
        path = Path(directory) / "tokenizer.json"
        if isinstance(self.tokenizer, Tokenizer):
            self.tokenizer.save(path)
        else:  # a Hugging Face tokenizers.Tokenizer (WordPiece)
            self.tokenizer.save(str(path))
