"""Translation as a training task: parallel text → tokenizers → token batches → label-smoothed loss → BLEU."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rosetta import decode
from rosetta.data import batching, corpora
from rosetta.data.tokenizer import BOS_ID, EOS_ID, PAD_ID, load_tokenizers, save_tokenizers, train_tokenizers
from rosetta.decode.defaults import DecodeOptions
from rosetta.hub.runs import start_from
from rosetta.models.transformer import Transformer
from rosetta.nn.config import ModelConfig
from rosetta.tasks.metrics import score
from rosetta.train import label_smoothed_nll, linear_label_smoothed_nll
from rosetta.train.recipe import Recipe

TOKENIZER_DIR = "tokenizer"


def load_pairs(recipe: Recipe, split: str, data_dir: Path | None) -> list[tuple[str, str]]:
    """Sentence pairs of a split, from a known corpus or from the recipe's own files."""
    d = recipe.data
    if d.corpus:
        return corpora.load_parallel(d.corpus, split, data_dir, src_lang=d.src_lang, tgt_lang=d.tgt_lang,
                                     seed=d.seed, clean=d.clean)
    files = {"train": (d.train_src, d.train_tgt), "valid": (d.valid_src, d.valid_tgt)}.get(split)
    if not files or not all(files):
        raise ValueError(f"no {split} data: set data.corpus, or data.{split}_src and data.{split}_tgt files")
    pairs = corpora.load_parallel_files(*files)
    return corpora.clean_pairs(pairs, d.clean or [], d.clean or []) if d.clean else pairs


class TranslationTask:
    """Everything the Trainer needs for translation (see rosetta.train.Task)."""

    metric = "bleu"
    higher_is_better = True

    def __init__(self, recipe: Recipe, data_dir: Path | None = None, run_dir: Path | None = None,
                 resume: bool = False):
        self.recipe = recipe
        d = recipe.data
        self.start = self._huggingface_start()
        # a checkpoint whose generation forces a first token (BART's <s> after its start token </s>) learns its
        # targets with that token in front, as it was pretrained and as it will decode
        forced = self.start.generation.get("force_bos") if self.start is not None else None
        self.target_prefix = [forced] if forced is not None else []
        train_pairs, self.valid_pairs = self._load_data(data_dir)
        self.src_tok, self.tgt_tok = self._tokenizers(train_pairs, run_dir, resume)
        self.train_ids = self._encode(train_pairs, d.max_length)
        self.valid_ids = self._encode(self.valid_pairs, None)
        torch.manual_seed(recipe.train.seed)
        self.model = self._build_model()
        self.config = self.model.config
        self.device = torch.device("cpu")

    def _huggingface_start(self):
        """[model] pretrained = a Hugging Face encoder–decoder directory (Marian, BART, T5): its model and
        tokenizers (``rosetta.hub.runs.Start``); None without one."""
        m = self.recipe.model
        if not m.pretrained:
            return None
        return start_from(m.pretrained, "translation", self.recipe.data.task, m.overrides, m.load_weights)

    def _build_model(self) -> Transformer:
        """The recipe's preset with its [model] overrides, sized to the tokenizers' vocabularies (or the
        pretrained checkpoint's model)."""
        if self.start is not None:
            return self.start.model
        config = ModelConfig.preset(
            self.recipe.model.preset, src_vocab_size=self.src_tok.vocab_size,
            tgt_vocab_size=self.tgt_tok.vocab_size, pad_id=PAD_ID, bos_id=BOS_ID, eos_id=EOS_ID,
            **self.recipe.model.overrides)
        return Transformer(config)

    def _tokenizers(self, train_pairs: list[tuple[str, str]], run_dir: Path | None, resume: bool):
        """(source, target) tokenizers: the run's saved ones when resuming, else learned from the training pairs
        as the recipe's [tokenizer] says (and saved in the run, so that a resume reads the same ones)."""
        if self.start is not None:  # the checkpoint's own (copied into the model folder by write_tokenizers)
            return self.start.tokenizer, self.start.target_tokenizer or self.start.tokenizer
        tcfg = self.recipe.tokenizer
        saved = Path(run_dir) / TOKENIZER_DIR if run_dir else None
        if resume and saved and saved.exists():
            return load_tokenizers(saved)
        src_tok, tgt_tok = train_tokenizers([s for s, _ in train_pairs], [t for _, t in train_pairs],
                                            tcfg.vocab_size, joint=tcfg.joint, min_frequency=tcfg.min_frequency)
        if saved:
            saved.mkdir(parents=True, exist_ok=True)
            save_tokenizers(saved, src_tok, tgt_tok)
        return src_tok, tgt_tok

    def _load_data(self, data_dir: Path | None) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """(training pairs, validation pairs without empty sides), cut to the recipe's sizes."""
        d = self.recipe.data
        train_pairs = load_pairs(self.recipe, "train", data_dir)
        if d.max_train_examples:
            train_pairs = train_pairs[: d.max_train_examples]
        valid_pairs = [(s, t) for s, t in load_pairs(self.recipe, "valid", data_dir) if s.strip() and t.strip()]
        return train_pairs, valid_pairs[: d.valid_size] if d.valid_size else valid_pairs

    def _encode(self, pairs: list[tuple[str, str]], max_length: int | None) -> list[tuple[list[int], list[int]]]:
        """Token ids of each pair. Training (``max_length`` given) drops pairs with an empty side or a side
        longer than ``max_length``; validation (None) keeps every pair, so its ids stay aligned with the pairs."""
        src = self.src_tok.encode_batch([s for s, _ in pairs])
        tgt = self.tgt_tok.encode_batch([t for _, t in pairs])
        out = []
        for s, t in zip(src, tgt):
            if max_length is not None and (not s or not t or max(len(s), len(t)) + 1 > max_length):
                continue
            out.append((self.src_tok.frame_source(s), self.target_prefix + t))  # s + </s>; BOS/EOS in collate
        return out

    def to(self, device: torch.device) -> None:
        self.device = device
        self.model.to(device)

    def batches(self, rank: int, world_size: int) -> batching.BatchStream:
        return batching.BatchStream(
            self.train_ids, max_tokens=self.recipe.train.max_tokens, seed=self.recipe.train.seed,
            rank=rank, world_size=world_size, collate=self._collate)

    def _collate(self, examples):
        c = self.config
        return batching.collate_translation(examples, c.pad_id, c.bos_id, c.eos_id)

    def count_tokens(self, batch) -> int:
        return int(batch.n_tgt_tokens)

    def loss(self, model: nn.Module, batch, label_smoothing: float):
        """Summed label-smoothed NLL over the batch's target tokens: the output layer fused with the loss
        (``linear_label_smoothed_nll``: no (tokens × vocabulary) logits held), unless that layer has a bias."""
        src, tgt_in, tgt_out = (t.to(self.device) for t in (batch.src, batch.tgt_in, batch.tgt_out))
        inner = getattr(model, "module", model)  # DDP wraps the model; its forward must still run
        output = inner.output
        if output.bias is not None or inner.config.copy_attention:  # a copy model returns log-probabilities
            return label_smoothed_nll(model(src, tgt_in), tgt_out, self.config.pad_id, label_smoothing)
        features = model(src, tgt_in, features_only=True)
        return linear_label_smoothed_nll(features, output.weight, tgt_out, self.config.pad_id, label_smoothing)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, full: bool) -> dict[str, float]:
        """Validation loss (per target token, no smoothing); with ``full`` also greedy BLEU/chrF on the first
        ``bleu_sentences`` validation pairs."""
        nll_sum, count = 0.0, 0
        for index_batch in batching.make_batches([len(s) for s, _ in self.valid_ids],
                                                 [len(t) + 1 for _, t in self.valid_ids],
                                                 self.recipe.train.max_tokens, shuffle=False, seed=0, epoch=0):
            batch = self._collate([self.valid_ids[i] for i in index_batch])
            _, nll, n = self.loss(model, batch, 0.0)
            nll_sum, count = nll_sum + float(nll), count + n
        metrics = {"valid_loss": nll_sum / max(count, 1)}
        if full:
            n = self.recipe.train.bleu_sentences
            # valid_ids and valid_pairs align (nothing is dropped from the validation pairs)
            result = self.greedy_scores(model, self.valid_ids[:n], self.valid_pairs[:n], self.recipe.data.tgt_lang)
            metrics.update(bleu=result.bleu, chrf=result.chrf)
        return metrics

    def greedy_scores(self, model: nn.Module, ids: list[tuple[list[int], list[int]]],
                      pairs: list[tuple[str, str]], tgt_lang: str):
        """Greedy-decode the sources of ``ids`` and score them against the references of ``pairs`` (sacreBLEU)."""
        return score(self.greedy_outputs(model, [s for s, _ in ids]), [t for _, t in pairs], tgt_lang)

    def greedy_outputs(self, model: nn.Module, sources: list[list[int]]) -> list[str]:
        """Greedy decoding (the recipe's [decode] output limits and no-repeat size) of source ids → texts."""
        hyps, dec = [], self.recipe.decode
        for start in range(0, len(sources), 100):
            src = batching.pad(sources[start : start + 100], self.config.pad_id)
            out = decode.greedy_search(model, src.to(self.device), max_len_ratio=dec.max_len_ratio,
                                       max_len_offset=dec.max_len_offset,
                                       no_repeat_ngram_size=dec.no_repeat_ngram_size)
            hyps.extend(self.tgt_tok.decode(ids) for ids in out)
        return hyps

    def model_config(self) -> dict[str, Any]:
        d = self.recipe.data
        decode, start = asdict(self.recipe.decode), {}
        if self.start is not None:  # the checkpoint's generation conventions, unless the recipe changed them
            decode = self.start.decode_options(decode, asdict(DecodeOptions()))
            start = self.start.entry
        return {"family": "translation", "model": self.config.to_dict(), "src_lang": d.src_lang,
                "tgt_lang": d.tgt_lang, "corpus": d.corpus, "data_seed": d.seed, "clean": d.clean,
                "decode": decode, **start}

    def write_tokenizers(self, directory: Path) -> None:
        if self.start is not None:
            self.start.write_tokenizers(directory)
        else:
            save_tokenizers(directory, self.src_tok, self.tgt_tok)
