"""Extractive question answering as a training task (``[data] task = "qa"``): XQuAD-en, CMRC 2018, SQuAD files.

    question + context ─ windows [CLS] q [SEP] context slice [SEP] (``rosetta.data.qa.make_windows``)
        ─ EncoderModel ─ hidden (B, T, D) ─ span head ─ start / end logits (B, T)
        ─ loss = ½ (CE(start logits, gold start) + CE(end logits, gold end)), [CLS] = "not in this window"
    evaluation: answers by ``rosetta.decode.qa.QuestionAnswerer`` over all windows, EM / F1 in % (SQuAD v1.1's
    for English, CMRC 2018's for Chinese) on the held-out articles.

Data: ``data.corpus`` = "xquad-en" | "xquad-zh" | "xquad-de" | "cmrc2018" (split by article, ``data.seed``;
train on "train", evaluate on "test"), or SQuAD-format files ``data.train_src`` / ``data.valid_src``.
``data.max_length`` (tokens per window) and ``data.stride`` (tokens shared by neighbouring windows).

Model, three starting points, one architecture:

* ``[model] pretrained = "all-MiniLM-L6-v2"`` (any Hugging Face BERT directory): its WordPiece tokenizer and
  weights, plus a new span head;
* ``[model] pretrained = "runs/zh-bert-mlm"`` (a Rosetta encoder run, e.g. our own MLM pretraining): its
  tokenizer and encoder weights; its MLM (or classification) head is left behind;
* ``load_weights = false`` with either: the same architecture and tokenizer from random weights (what
  pretraining buys); no ``pretrained``: a Rosetta tokenizer learned on the training text, a preset's size.

Model selection on test articles would be selection on the test set: the recipes evaluate only at the end
(``eval_every = 0``), so the final model is the last step's and its metrics are the held-out articles'.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rosetta.checkpoint import has_final_model, resolve_model_dir
from rosetta.data.batching import BatchStream
from rosetta.data.qa import (
    Question,
    collate_windows,
    load_qa,
    make_windows,
    qa_language,
    questions_of,
    read_squad,
    specials_of,
)
from rosetta.data.tokenizer import Tokenizer
from rosetta.decode.loading import LoadedModel, load_any
from rosetta.decode.qa import QuestionAnswerer
from rosetta.hub.reader import read_hf
from rosetta.models.encoder import EncoderModel, bert_config
from rosetta.models.pretrained import (
    MINILM_NAMES,
    is_huggingface_dir,
)
from rosetta.tasks import preset_sizes
from rosetta.tasks.qa_metrics import metric_for, qa_scores
from rosetta.train.recipe import Recipe

# left behind when a pretrained encoder is reused
HEADS = ("pooler.", "pre_classifier.", "classifier.", "mlm.", "qa_outputs.")
MAX_QUERY_LENGTH = 64


def load_questions(recipe: Recipe, data_dir: Path | None) -> tuple[list[Question], list[Question], str]:
    """(train questions, evaluation questions, language) of the recipe's corpus or SQuAD files."""
    d = recipe.data
    if d.corpus:
        splits = load_qa(d.corpus, data_dir, d.seed)
        if "test" not in splits:
            raise ValueError(f"QA corpus {d.corpus!r} is training data only: join it after one with a test split, "
                             f'e.g. corpus = "cmrc2018+{d.corpus}"')
        train, test, lang = questions_of(splits["train"]), questions_of(splits["test"]), qa_language(d.corpus)
    elif d.train_src and d.valid_src:
        train, test, lang = questions_of(read_squad(d.train_src)), questions_of(read_squad(d.valid_src)), d.src_lang
    else:
        raise ValueError('no QA data: set data.corpus ("xquad-en", "cmrc2018", …) or data.train_src and '
                         "data.valid_src (SQuAD-format JSON files)")
    return train[: d.max_train_examples], test[: d.valid_size], lang


def load_base(pretrained: str) -> tuple[EncoderModel, Any, dict[str, Any]]:
    """(encoder, tokenizer, facts for config.json) of a Hugging Face encoder directory (BERT, RoBERTa,
    DistilBERT, all-MiniLM-L6-v2: read through ``rosetta.hub``'s registry) or a Rosetta encoder run."""
    if str(pretrained).lower() in MINILM_NAMES or is_huggingface_dir(pretrained):
        loaded = read_hf(pretrained)
        if loaded.family != "encoder":
            raise ValueError(f"{pretrained} holds a {loaded.info['model_type']} model (Rosetta family "
                             f"{loaded.family!r}); QA and classification fine-tune encoders: BERT, RoBERTa, DistilBERT")
        return loaded.model.float(), loaded.tokenizer, {"tokenizer": "pretrained"}
    directory = Path(pretrained)
    if not (directory.is_dir() and (has_final_model(directory) or (directory / "config.json").is_file()
                                    or (directory / "checkpoints").is_dir())):
        raise FileNotFoundError(f"pretrained model {pretrained!r} not found: give a Hugging Face BERT directory, "
                                "all-MiniLM-L6-v2, or a Rosetta encoder run (e.g. runs/zh-bert-mlm)")
    loaded = load_any(resolve_model_dir(directory))
    if loaded.family != "encoder":
        raise ValueError(f"{pretrained} holds a {loaded.family} model; QA fine-tuning needs an encoder "
                         "(an MLM or classification run, or a Hugging Face BERT)")
    return loaded.model, loaded.tokenizer, {"tokenizer": loaded.info.get("tokenizer", "bpe")}


class QATask:
    """Everything the Trainer needs to train an extractive QA model (see rosetta.train.Task)."""

    metric = "f1"
    higher_is_better = True

    def __init__(self, recipe: Recipe, data_dir: Path | None = None, run_dir: Path | None = None,
                 resume: bool = False):
        self.recipe = recipe
        d, m = recipe.data, recipe.model
        train, self.eval_questions, self.language = load_questions(recipe, data_dir)
        torch.manual_seed(recipe.train.seed)
        self.facts: dict[str, Any] = {"tokenizer": recipe.tokenizer.kind}
        if m.pretrained:
            base, self.tokenizer, self.facts = load_base(m.pretrained)
            self.model = self._span_model(base, m.load_weights)
        else:
            self.tokenizer = self._own_tokenizer(train, run_dir, resume)
            sizes = preset_sizes(m.preset, "n_encoder_layers")
            config = bert_config(self.tokenizer.vocab_size, **{"max_len": d.max_length, **sizes, **m.overrides})
            self.model = EncoderModel(config, span_head=True)
        self.config = self.model.config
        if d.max_length > self.config.max_len:
            raise ValueError(f"data.max_length {d.max_length} is longer than the model's {self.config.max_len} "
                             "positions; lower data.max_length")
        self.pad_id = specials_of(self.tokenizer).pad
        self.windows = make_windows(train, self.tokenizer, d.max_length, d.stride, MAX_QUERY_LENGTH)
        if not self.windows:
            raise ValueError("no training windows: no training question has an answer span in its context")
        self.device = torch.device("cpu")

    def _span_model(self, base: EncoderModel, load_weights: bool) -> EncoderModel:
        """The base encoder's architecture (and, with ``load_weights``, its weights) with a new span head."""
        model = EncoderModel(base.config.replace(**self.recipe.model.overrides), span_head=True)
        if load_weights:
            encoder = {k: v for k, v in base.state_dict().items() if not k.startswith(HEADS)}
            missing, unexpected = model.load_state_dict(encoder, strict=False)
            if unexpected or set(missing) != {"qa_outputs.weight", "qa_outputs.bias"}:
                raise RuntimeError(f"pretrained weights do not fit: missing {missing}, unexpected {unexpected}")
        return model

    def _own_tokenizer(self, train: list[Question], run_dir: Path | None, resume: bool) -> Tokenizer:
        saved = Path(run_dir) / "tokenizer" / "tokenizer.json" if run_dir else None
        if resume and saved and saved.exists():
            return Tokenizer.load(saved)
        texts = list(dict.fromkeys([q.context for q in train] + [q.question for q in train]))
        t = self.recipe.tokenizer
        if t.kind == "bpe":
            tokenizer = Tokenizer.train(texts, t.vocab_size, t.min_frequency)
        elif t.kind == "char":
            tokenizer = Tokenizer.train_chars(texts)
        else:
            raise ValueError(f"tokenizer.kind {t.kind!r} is not for QA from scratch; use bpe or char, or set "
                             "model.pretrained")
        if saved:
            tokenizer.save(saved)
        return tokenizer

    def to(self, device: torch.device) -> None:
        self.device = device
        self.model.to(device)

    def batches(self, rank: int, world_size: int) -> BatchStream:
        tr = self.recipe.train
        return BatchStream(self.windows, max_tokens=tr.max_tokens, max_sentences=tr.batch_size, seed=tr.seed,
                           rank=rank, world_size=world_size, lengths=lambda w: len(w.ids),
                           collate=lambda ws: collate_windows(ws, self.pad_id))

    def count_tokens(self, batch) -> int:
        return len(batch.starts)  # the loss is a mean over windows

    def loss(self, model: nn.Module, batch, label_smoothing: float):
        """Summed ½(CE_start + CE_end) over the batch's windows; padding can be neither start nor end."""
        ids, mask, types = (x.to(self.device) for x in (batch.ids, batch.mask, batch.type_ids))
        hidden = model(ids, mask, types)  # through the Trainer's wrapper (DDP), if any
        core = getattr(model, "module", model)
        pad = mask == 0
        total = nll = 0.0
        for logits, gold in zip(core.span_logits(hidden), (batch.starts, batch.ends)):
            logits = logits.float().masked_fill(pad, -1e9)  # (B, T)
            gold = gold.to(self.device)
            total = total + F.cross_entropy(logits, gold, label_smoothing=label_smoothing, reduction="sum") / 2
            with torch.no_grad():
                nll = nll + F.cross_entropy(logits, gold, reduction="sum") / 2
        return total, nll, len(batch.starts)

    def answerer(self, model: nn.Module) -> QuestionAnswerer:
        """A ``QuestionAnswerer`` over ``model`` as it is now (same windows as training)."""
        info = {**self.model_config(), "path": "(training)"}
        return QuestionAnswerer(LoadedModel("encoder", model, self.tokenizer, info))

    @torch.no_grad()
    def evaluate(self, model: nn.Module, full: bool) -> dict[str, float]:
        """EM and F1 (%) on the evaluation questions, with the language's official metric."""
        qs = self.eval_questions
        answers = self.answerer(model).answer([q.question for q in qs], [q.context for q in qs])
        predictions = {q.id: a.text for q, a in zip(qs, answers)}
        scores = qa_scores(predictions, {q.id: q.answer_texts for q in qs}, metric_for(self.language))
        return {"em": scores["em"], "f1": scores["f1"], "questions": len(qs)}

    def model_config(self) -> dict[str, Any]:
        d, m = self.recipe.data, self.recipe.model
        return {"family": "encoder", "task": "qa", "model": self.config.to_dict(), "num_labels": 0,
                "pooler": False, "tokenizer": self.facts["tokenizer"],
                "pretrained": str(m.pretrained) if m.pretrained else None,
                "pretrained_weights": bool(m.pretrained and m.load_weights), "corpus": d.corpus,
                "language": self.language, "data_seed": d.seed, "max_length": d.max_length, "stride": d.stride,
                "max_query_length": MAX_QUERY_LENGTH}

    def write_tokenizers(self, directory: Path) -> None:
        path = Path(directory) / "tokenizer.json"
        if isinstance(self.tokenizer, Tokenizer):
            self.tokenizer.save(path)
        else:  # a Hugging Face tokenizers.Tokenizer (WordPiece)
            self.tokenizer.save(str(path))
