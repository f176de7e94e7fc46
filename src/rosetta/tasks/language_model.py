"""Language modelling as a training task (``[data] task = "lm"``): next-token prediction on one long text.

    text ─ tokenizer (characters, or byte-level BPE) ─ one stream of ids (N,)
         ─ windows of block_size + 1 ids ─ x = w[:-1], y = w[1:] (B, T) ─ LanguageModel ─ cross-entropy

Batches: ``windows = "random"`` draws ``batch_size`` windows at random offsets (nanoGPT's ``get_batch``);
``"chunks"`` cuts the stream into non-overlapping windows and shuffles them each epoch.

Validation: the validation text cut into non-overlapping windows, every target scored once. ``valid_loss`` is
nats per token; ``valid_nats_per_char`` divides the same total by the characters those tokens spell, so a
character model and a BPE model (≈ 2.4 characters a token on Shakespeare) compare on one scale. The periodic
evaluations during training score ``data.valid_size`` windows spread evenly over the text (cheap, the same
ones every time); the full evaluations (``bleu_every`` and the final one in OUT/model) score all of them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rosetta.data import corpora
from rosetta.data.batching import BatchStream, LMBatch, chunk_tokens, collate_lm
from rosetta.data.tokenizer import Tokenizer
from rosetta.hub.runs import start_from
from rosetta.models.lm import LanguageModel, gpt_config
from rosetta.tasks import preset_sizes
from rosetta.train import label_smoothed_nll
from rosetta.train.recipe import Recipe

TOKENIZER_DIR = "tokenizer"
EVAL_BATCH = 64  # validation windows per forward pass


def load_texts(recipe: Recipe, data_dir: Path | None) -> tuple[str, str]:
    """(train, valid) text: a known text corpus (its own split), or ``data.train_src`` / ``data.valid_src``
    files (without a validation file, the last 10% of the training file)."""
    d = recipe.data
    if d.corpus:
        return corpora.load_text(d.corpus, "train", data_dir), corpora.load_text(d.corpus, "valid", data_dir)
    if not d.train_src:
        raise ValueError("no text to learn from: set data.corpus (e.g. tinyshakespeare) or data.train_src")
    text = corpora.read_text(d.train_src)
    if d.valid_src:
        return text, corpora.read_text(d.valid_src)
    cut = int(len(text) * 0.9)
    return text[:cut], text[cut:]


def build_tokenizer(kind: str, text: str, vocab_size: int, min_frequency: int) -> Tokenizer:
    """``char``: one token per character; ``bpe``: byte-level BPE (GPT-2's: whitespace and newlines kept)."""
    if kind == "char":
        return Tokenizer.train_chars([text])
    if kind == "bpe":
        return Tokenizer.train_byte_level(text.splitlines(keepends=True), vocab_size, min_frequency)
    raise ValueError(f"tokenizer.kind {kind!r} is not for language models; use char or bpe")


class RandomWindows:
    """nanoGPT's batches as a resumable stream: ``batch_size`` windows of ``block_size + 1`` ids at random
    offsets of ``data`` (N,), collated to an ``LMBatch`` x, y (B, T).

    Batch number i of rank r comes from a generator seeded by (seed, i, r) alone, so the state is one
    counter and ``--resume`` continues with exactly the next batch."""

    def __init__(self, data: torch.Tensor, block_size: int, batch_size: int, seed: int, rank: int = 0,
                 world_size: int = 1):
        if len(data) <= block_size:
            raise ValueError(f"the training text has {len(data)} tokens, not more than block_size={block_size}")
        self.data, self.block_size, self.batch_size = data, block_size, batch_size
        self.seed, self.rank, self.world_size, self.index = seed, rank, world_size, 0

    def __iter__(self) -> Iterator[LMBatch]:
        while True:
            draw = self.index * self.world_size + self.rank  # ranks draw disjoint streams
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + draw)
            starts = torch.randint(len(self.data) - self.block_size, (self.batch_size,), generator=generator)
            windows = torch.stack([self.data[s : s + self.block_size + 1] for s in starts.tolist()])  # (B, T+1)
            self.index += 1
            yield LMBatch(windows[:, :-1], windows[:, 1:], windows[:, 1:].numel())

    def state_dict(self) -> dict[str, int]:
        return {"index": self.index}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.index = int(state["index"])


class LanguageModelTask:
    """Everything the Trainer needs to train a decoder-only LM (see rosetta.train.Task)."""

    metric = "valid_loss"
    higher_is_better = False

    def __init__(self, recipe: Recipe, data_dir: Path | None = None, run_dir: Path | None = None,
                 resume: bool = False):
        self.recipe = recipe
        d = recipe.data
        if d.windows not in ("random", "chunks"):
            raise ValueError(f"data.windows must be random or chunks, got {d.windows!r}")
        train_text, valid_text = load_texts(recipe, data_dir)
        m = recipe.model  # [model] pretrained = a Hugging Face GPT-2 directory: its model and tokenizer
        self.start = start_from(m.pretrained, "lm", d.task, m.overrides, m.load_weights) if m.pretrained else None
        self.tokenizer = self.start.tokenizer if self.start else self._own_tokenizer(train_text, run_dir, resume)
        self.block_size = d.block_size
        self.train_ids = torch.tensor(self.tokenizer.encode(train_text), dtype=torch.long)  # (N,)
        valid_ids = self.tokenizer.encode(valid_text)
        self.valid_windows = chunk_tokens(valid_ids, self.block_size)  # every target once
        if not self.valid_windows:
            raise ValueError(f"the validation text has {len(valid_ids)} tokens, fewer than block_size + 1")
        n, total = min(d.valid_size or len(self.valid_windows), len(self.valid_windows)), len(self.valid_windows)
        self.quick_windows = [self.valid_windows[i * total // n] for i in range(n)]  # evenly over the whole text
        if self.start:
            self.model, self.config = self.start.model, self.start.model.config
        else:
            sizes = preset_sizes(recipe.model.preset, "n_decoder_layers")
            self.config = gpt_config(self.tokenizer.vocab_size, **{"max_len": self.block_size, **sizes,
                                                                    **recipe.model.overrides})
        if self.config.max_len < self.block_size:
            raise ValueError(f"model.max_len={self.config.max_len} is shorter than data.block_size={self.block_size}")
        if not self.start:
            torch.manual_seed(recipe.train.seed)
            self.model = LanguageModel(self.config)
        self.device = torch.device("cpu")

    def _own_tokenizer(self, train_text: str, run_dir: Path | None, resume: bool) -> Tokenizer:
        """The run's saved tokenizer when resuming, else one learned from the training text as [tokenizer] says."""
        t = self.recipe.tokenizer
        saved = Path(run_dir) / TOKENIZER_DIR if run_dir else None
        if resume and saved and saved.exists():
            return Tokenizer.load(saved)
        tokenizer = build_tokenizer(t.kind, train_text, t.vocab_size, t.min_frequency)
        if saved:
            tokenizer.save(saved / "tokenizer.json")
        return tokenizer

    def to(self, device: torch.device) -> None:
        self.device = device
        self.model.to(device)

    def batches(self, rank: int, world_size: int):
        tr = self.recipe.train
        if self.recipe.data.windows == "random":
            return RandomWindows(self.train_ids, self.block_size, tr.batch_size, tr.seed, rank, world_size)
        return BatchStream(chunk_tokens(self.train_ids.tolist(), self.block_size), max_tokens=None,
                           max_sentences=tr.batch_size, seed=tr.seed, rank=rank, world_size=world_size,
                           collate=collate_lm)

    def count_tokens(self, batch: LMBatch) -> int:
        return int(batch.n_tokens)

    def loss(self, model: nn.Module, batch: LMBatch, label_smoothing: float):
        logits = model(batch.x.to(self.device))  # (B, T, V); no padding in a window, so nothing is ignored
        return label_smoothed_nll(logits, batch.y.to(self.device), None, label_smoothing)

    def characters(self, windows: list[list[int]]) -> int:
        """How many characters the targets of ``windows`` spell (each window's ids after the first)."""
        return max(1, sum(len(self.tokenizer.decode(w[1:])) for w in windows))

    @torch.no_grad()
    def evaluate(self, model: nn.Module, full: bool) -> dict[str, float]:
        """Validation loss in nats per token and per character, no smoothing: every validation window if
        ``full``, else the ``valid_size`` evenly spaced ones."""
        windows = self.valid_windows if full else self.quick_windows
        nll_sum, count = 0.0, 0
        for start in range(0, len(windows), EVAL_BATCH):
            batch = collate_lm(windows[start : start + EVAL_BATCH])
            _, nll, n = self.loss(model, batch, 0.0)
            nll_sum, count = nll_sum + float(nll), count + n
        return {"valid_loss": nll_sum / max(count, 1), "valid_nats_per_char": nll_sum / self.characters(windows)}

    def model_config(self) -> dict[str, Any]:
        d = self.recipe.data
        start = {"tokenizer": "pretrained", **self.start.entry} if self.start else {}
        return {"family": "lm", "task": "lm", "model": self.config.to_dict(), "tokenizer": self.recipe.tokenizer.kind,
                "corpus": d.corpus, "block_size": self.block_size, **start}

    def write_tokenizers(self, directory: Path) -> None:
        if self.start:
            self.start.write_tokenizers(directory)
        else:
            self.tokenizer.save(Path(directory) / "tokenizer.json")
