"""Masked-language-model pretraining (``[data] task = "mlm"``): BERT's objective, whole-word masking.

    text ─ sentences ─ WordPiece ids (every CJK character one token) ─ packed segments <s> … </s> (B, T)
         ─ mask_tokens: 15 % of the words chosen; their tokens → 80 % <mask> / 10 % random / 10 % unchanged
         ─ EncoderModel ─ hidden (B, T, D) ─ hidden at the chosen positions only (N, D)
         ─ MLM head (dense, GELU, LayerNorm, · Eᵀ + b) ─ logits (N, V) ─ cross-entropy against the originals

Whole-word masking: a word is a token without "##" plus the "##" tokens after it (``Tokenizer.word_continuations``);
a CJK character is a word by itself, so masking a Chinese character hides exactly that character (Cui et al.'s
"whole word masking" for Chinese masks segmenter words instead; without a segmenter, the character is the word).
Each word is chosen with probability 15 % (so 15 % of the tokens in expectation; BERT picks exactly
round(15 %) per sequence), and one draw per word decides the fate of all its tokens: 80 % <mask>, 10 % a random
non-special token, 10 % left as is — the model cannot trust the input at chosen positions, yet must predict them.
Special tokens and padding are never chosen. The loss is taken at the chosen positions only.

Masks are drawn per batch from a generator seeded by (seed, epoch, batch, rank): ``--resume`` sees the same
masks. Validation masks are drawn once (seed 0) and kept, so every evaluation scores the same positions:
``mlm_accuracy`` (the argmax equals the original token) and ``valid_loss`` (nats per chosen token).

Text: ``data.train_src`` (documents separated by blank lines), the assembled ``"zh-pretraining"`` (held-out
segments drawn by a seeded shuffle, ``data.valid_size`` of them), or a paragraph corpus such as ``"zh-text"``
(``rosetta.data.paragraphs``: streamed, deduplicated, 1 % of the paragraphs held out by hash, packed into a flat
array; ``data.valid_size`` caps the held-out segments scored).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rosetta.data import corpora, paragraphs, pretraining
from rosetta.data.batching import BatchStream, pad
from rosetta.data.tokenizer import Tokenizer
from rosetta.models.encoder import EncoderModel, bert_config
from rosetta.special_tokens import BOS_ID, EOS_ID, MASK, MASK_ID, PAD_ID
from rosetta.tasks import preset_sizes
from rosetta.train import label_smoothed_nll
from rosetta.train.recipe import Recipe

TOKENIZER_DIR = "tokenizer"
MASK_RATE, MASK_SHARE, RANDOM_SHARE = 0.15, 0.8, 0.1  # chosen words; of those: <mask>, random, (rest) unchanged
N_SPECIAL = MASK_ID + 1  # ids 0 … 4 (<pad> <s> </s> <unk> <mask>) are never chosen nor drawn as random tokens
IGNORE = -100  # target of the positions not chosen
EVAL_BATCH = 64


@dataclass
class MaskedBatch:
    """``inputs`` (B, T) ids after masking; ``targets`` (B, T) the original id at chosen positions, else IGNORE."""

    inputs: torch.Tensor
    targets: torch.Tensor

    @property
    def n_targets(self) -> int:
        return int((self.targets != IGNORE).sum())


def mask_tokens(ids: torch.Tensor, continues: torch.Tensor, vocab_size: int, generator: torch.Generator | None = None,
                rate: float = MASK_RATE) -> MaskedBatch:
    """BERT's masking of ids (B, T), whole words at a time (module docstring).

    continues (V,) bool: True for tokens that continue the previous token's word ("##" pieces)."""
    B, T = ids.shape
    candidate = ids >= N_SPECIAL  # (B, T): never padding or a special token
    starts = ~continues.to(ids.device)[ids] | ~candidate  # a special token is a word of its own
    positions = torch.arange(T, device=ids.device).expand(B, T)
    head = torch.cummax(torch.where(starts, positions, 0), dim=1).values  # (B, T): where each token's word starts
    choose = torch.rand(B, T, generator=generator).to(ids.device).gather(1, head)  # one draw per word
    fate = torch.rand(B, T, generator=generator).to(ids.device).gather(1, head)
    random_ids = torch.randint(N_SPECIAL, vocab_size, (B, T), generator=generator).to(ids.device)
    chosen = candidate & (choose < rate)
    inputs = torch.where(chosen & (fate < MASK_SHARE), MASK_ID, ids)
    swap = chosen & (fate >= MASK_SHARE) & (fate < MASK_SHARE + RANDOM_SHARE)
    inputs = torch.where(swap, random_ids, inputs)
    return MaskedBatch(inputs, torch.where(chosen, ids, IGNORE))


class MaskedBatches:
    """A ``BatchStream`` of segments, padded and masked; the masks of batch i of epoch e on rank r come from a
    generator seeded by (seed, e, i, r) alone, so the stream's state is the inner stream's."""

    def __init__(self, stream: BatchStream, continues: torch.Tensor, vocab_size: int, seed: int):
        self.stream, self.continues, self.vocab_size, self.seed = stream, continues, vocab_size, seed

    def __iter__(self) -> Iterator[MaskedBatch]:
        for segments in self.stream:  # the stream's (epoch, index) already points past this batch
            draw = ((self.seed * 1_000_003 + self.stream.epoch) * 1_000_003 + self.stream.index) * 64
            generator = torch.Generator().manual_seed(draw + self.stream.rank)
            yield mask_tokens(pad(segments, PAD_ID), self.continues, self.vocab_size, generator)

    def state_dict(self) -> dict[str, int]:
        return self.stream.state_dict()

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.stream.load_state_dict(state)


def load_documents(recipe: Recipe, data_dir: Path | None) -> list[list[str]]:
    """Documents (lists of sentences): the assembled Chinese corpus (``data.corpus = "zh-pretraining"``), or
    ``data.train_src``, a UTF-8 text file whose blank lines separate documents."""
    d = recipe.data
    if d.corpus == pretraining.CORPUS_NAME:
        return [doc for docs in pretraining.chinese_documents(data_dir, d.seed).values() for doc in docs]
    if d.corpus:
        raise ValueError(f"data.corpus {d.corpus!r} is not an MLM corpus; use {pretraining.CORPUS_NAME!r}, 'zh-text' "
                         "(+-joined: 'zh-text+zh-pretraining') or data.train_src (a text file, documents separated "
                         "by blank lines)")
    if not d.train_src:
        raise ValueError(f"no text to learn from: set data.corpus = {pretraining.CORPUS_NAME!r} or data.train_src")
    paragraphs = corpora.read_text(d.train_src).split("\n\n")
    return [s for s in (pretraining.split_sentences(p) for p in paragraphs) if s]


class MLMTask:
    """Everything the Trainer needs to pretrain an encoder with the MLM objective (see rosetta.train.Task)."""

    metric = "mlm_accuracy"
    higher_is_better = True

    def __init__(self, recipe: Recipe, data_dir: Path | None = None, run_dir: Path | None = None,
                 resume: bool = False):
        self.recipe = recipe
        d, m = recipe.data, recipe.model
        if m.pretrained:
            raise ValueError(f"task {d.task} pretrains from scratch: remove model.pretrained")
        if paragraphs.is_paragraph_corpus(d.corpus):
            self.train_examples, valid = self._paragraph_segments(data_dir, run_dir, resume)
        else:
            self.train_examples, valid = self._document_segments(data_dir, run_dir, resume)
        self.continues = torch.tensor(self.tokenizer.word_continuations())
        vocab = self.tokenizer.vocab_size
        fixed = torch.Generator().manual_seed(0)
        self.valid_batches = [mask_tokens(pad(valid[i : i + EVAL_BATCH], PAD_ID), self.continues, vocab, fixed)
                              for i in range(0, len(valid), EVAL_BATCH)]
        sizes = preset_sizes(m.preset, "n_encoder_layers")
        self.config = bert_config(vocab, **{"max_len": d.max_length, **sizes, **m.overrides})
        if self.config.max_len < d.max_length:
            raise ValueError(f"model.max_len={self.config.max_len} is shorter than data.max_length={d.max_length}")
        torch.manual_seed(recipe.train.seed)
        self.model = self.build_model()
        self.device = torch.device("cpu")

    def build_model(self) -> nn.Module:
        """The model this task trains (ELECTRA's task overrides it)."""
        return EncoderModel(self.config, mlm_head=True)

    def _document_segments(self, data_dir: Path | None, run_dir: Path | None, resume: bool
                           ) -> tuple[list[list[int]], list[list[int]]]:
        """(train, valid) framed segments of ``data.train_src`` or "zh-pretraining": all in memory (< 1 M chars)."""
        d = self.recipe.data
        documents = load_documents(self.recipe, data_dir)
        self.tokenizer = self._own_tokenizer(lambda: (s for doc in documents for s in doc), run_dir, resume)
        ids = iter(self.tokenizer.encode_batch([s for doc in documents for s in doc]))
        encoded = [[next(ids) for _ in doc] for doc in documents]
        segments = pretraining.pack_segments(encoded, d.max_length - 2)  # room for <s> and </s>
        train, valid = pretraining.split_segments(segments, d.valid_size or max(1, len(segments) // 50), d.seed)
        framed = [[BOS_ID, *s, EOS_ID] for s in train]
        self.stats = {"documents": len(documents), "sentences": sum(map(len, documents)),
                      "characters": sum(len(s) for doc in documents for s in doc), "train_segments": len(train),
                      "valid_segments": len(valid), "train_tokens": sum(map(len, framed))}
        return framed, [[BOS_ID, *s, EOS_ID] for s in valid]

    def _paragraph_segments(self, data_dir: Path | None, run_dir: Path | None, resume: bool
                            ) -> tuple[Sequence[list[int]], list[list[int]]]:
        """(train, valid) framed segments of a paragraph corpus, streamed twice: once for the tokenizer (unless
        resuming), once to tokenise and pack (``rosetta.data.paragraphs``)."""
        d = self.recipe.data
        sources = paragraphs.corpus_sources(d.corpus, data_dir, d.seed)
        self.tokenizer = self._own_tokenizer(lambda: paragraphs.training_text(sources), run_dir, resume)
        train, held, self.stats = paragraphs.pack_corpus(sources, self.tokenizer, d.max_length - 2)
        if not len(held) or not len(train):
            raise ValueError(f"data.corpus {d.corpus!r} gave {len(train)} training and {len(held)} held-out "
                             f"segments; it needs both (1 % of the paragraphs are held out): use more text")
        return train, [held[i] for i in range(min(len(held), d.valid_size or len(held)))]

    def _own_tokenizer(self, sentences: Callable[[], Iterable[str]], run_dir: Path | None, resume: bool
                       ) -> Tokenizer:
        saved = Path(run_dir) / TOKENIZER_DIR if run_dir else None
        if resume and saved and saved.exists():
            return Tokenizer.load(saved)
        t = self.recipe.tokenizer
        if t.kind != "wordpiece":
            raise ValueError(f'task {self.recipe.data.task} needs tokenizer.kind = "wordpiece" (whole-word masking '
                             f'reads its "##" pieces), not {t.kind!r}')
        tokenizer = Tokenizer.train_wordpiece(sentences(), t.vocab_size, t.min_frequency)
        if tokenizer.token_to_id(MASK) != MASK_ID:
            raise RuntimeError(f"{MASK} must have id {MASK_ID}, got {tokenizer.token_to_id(MASK)}")
        if saved:
            tokenizer.save(saved / "tokenizer.json")
        return tokenizer

    def to(self, device: torch.device) -> None:
        self.device = device
        self.model.to(device)

    def batches(self, rank: int, world_size: int) -> MaskedBatches:
        tr = self.recipe.train
        stream = BatchStream(self.train_examples, max_tokens=tr.max_tokens, max_sentences=tr.batch_size, seed=tr.seed,
                             rank=rank, world_size=world_size)
        return MaskedBatches(stream, self.continues, self.tokenizer.vocab_size, tr.seed)

    def count_tokens(self, batch: MaskedBatch) -> int:
        return batch.n_targets  # the loss is a mean over the chosen positions

    def loss(self, model: nn.Module, batch: MaskedBatch, label_smoothing: float):
        inputs, targets = batch.inputs.to(self.device), batch.targets.to(self.device)
        hidden = model(inputs)  # through the Trainer's wrapper (DDP), if any: (B, T, D)
        core = getattr(model, "module", model)
        chosen = targets != IGNORE  # (B, T)
        logits = core.mlm_logits(hidden[chosen])  # (N, V): the vocabulary projection only where it is needed
        return label_smoothed_nll(logits, targets[chosen], None, label_smoothing)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, full: bool) -> dict[str, float]:
        """Masked-token accuracy and loss (nats per chosen token) on the held-out segments, fixed masks."""
        correct, nll_sum, count = 0, 0.0, 0
        for batch in self.valid_batches:
            inputs, targets = batch.inputs.to(self.device), batch.targets.to(self.device)
            chosen = targets != IGNORE
            logits = model.mlm_logits(model(inputs)[chosen]).float()  # (N, V)
            _, nll, n = label_smoothed_nll(logits, targets[chosen], None, 0.0)
            correct += int((logits.argmax(-1) == targets[chosen]).sum())
            nll_sum, count = nll_sum + float(nll), count + n
        return {"mlm_accuracy": correct / max(count, 1), "valid_loss": nll_sum / max(count, 1)}

    def model_config(self) -> dict[str, Any]:
        d = self.recipe.data
        return {"family": "encoder", "task": "mlm", "model": self.config.to_dict(), "num_labels": 0,
                "pooler": False, "mlm_head": True, "tokenizer": "wordpiece", "corpus": d.corpus or d.train_src,
                "max_length": d.max_length, "data_seed": d.seed, "mask_rate": MASK_RATE, "corpus_stats": self.stats}

    def write_tokenizers(self, directory: Path) -> None:
        self.tokenizer.save(Path(directory) / "tokenizer.json")
