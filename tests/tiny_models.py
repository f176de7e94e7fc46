"""Tiny trained models of every served task on disk, for the classify, server, load and browser tests.

Like tiny_translator.py: real tokenizers learned from a few made-up sentences, real models, a few dozen
full-batch Adam steps (about a second each on one core) so that outputs are not degenerate, checkpoints
written by ``rosetta.checkpoint.save_checkpoint`` with the config.json the tasks write, read back by the loaders.

    tiny_classifier_dir()    an encoder (2 layers × 2 heads, d 32) classifying sentiment: negative/neutral/positive
    tiny_lm_dir()            a character GPT (2 layers, d 32) that has memorised a short text
    tiny_summariser_dir()    tiny_translator's model with task "summarisation"
    tiny_qa_dir()            an encoder with a span head (random weights: its answers are spans, not right ones)
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

LABELS = ["negative", "neutral", "positive"]
# Made up for these tests: the label follows from a few words, so a tiny model learns it in a few steps.
REVIEWS = [
    ("a wonderful, moving film", 2), ("I loved every minute of it", 2), ("great acting and a clever plot", 2),
    ("the best movie this year", 2), ("funny, warm and beautiful", 2), ("a delightful surprise", 2),
    ("a dull and boring mess", 0), ("I hated the ending", 0), ("terrible acting, awful script", 0),
    ("the worst film I have seen", 0), ("slow, flat and tiresome", 0), ("a painful waste of time", 0),
    ("the film is two hours long", 1), ("it was shown on Tuesday", 1), ("the cast has five actors", 1),
    ("a film about a train", 1), ("it opens in cinemas in May", 1), ("the story is set in Paris", 1),
]
TEXT = ("the quick brown fox jumps over the lazy dog. a cat sat on the mat and looked at the dog. "
        "the dog slept all day while the fox ran into the woods. ")
SIZES = dict(d_model=32, n_heads=2, d_ff=64, dropout=0.0)


def _train(model: torch.nn.Module, loss: Callable[[], torch.Tensor], steps: int, seed: int) -> None:
    torch.manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(steps):
            value = loss()
            optimizer.zero_grad()
            value.backward()
            optimizer.step()
    finally:
        torch.set_num_threads(before)
    model.eval()


def build_tiny_classifier(directory: str | Path, steps: int = 40, seed: int = 0) -> Path:
    import torch.nn.functional as F

    from rosetta.checkpoint import save_checkpoint
    from rosetta.data.batching import pad
    from rosetta.data.tokenizer import Tokenizer, encode_texts
    from rosetta.models.encoder import EncoderModel, bert_config

    texts, labels = [t for t, _ in REVIEWS], torch.tensor([y for _, y in REVIEWS])
    tokenizer = Tokenizer.train(texts, vocab_size=150, min_frequency=1)
    config = bert_config(tokenizer.vocab_size, n_encoder_layers=2, max_len=64, **SIZES)
    torch.manual_seed(seed)
    model = EncoderModel(config, num_labels=len(LABELS))
    ids = pad(encode_texts(tokenizer, texts, 64), config.pad_id)
    model.train()
    _train(model, lambda: F.cross_entropy(model.classify(ids), labels), steps, seed)
    info = {"family": "encoder", "task": "classification", "model": config.to_dict(), "num_labels": len(LABELS),
            "pooler": False, "labels": LABELS, "tokenizer": "bpe", "pretrained": None, "pretrained_weights": False,
            "corpus": None, "max_length": 64}
    return save_checkpoint(directory, model, info, lambda d: tokenizer.save(d / "tokenizer.json"))


def build_tiny_lm(directory: str | Path, steps: int = 80, seed: int = 0) -> Path:
    from rosetta.checkpoint import save_checkpoint
    from rosetta.data.tokenizer import Tokenizer
    from rosetta.models.lm import LanguageModel, gpt_config

    tokenizer = Tokenizer.train_chars([TEXT])
    config = gpt_config(tokenizer.vocab_size, n_decoder_layers=2, max_len=64, **SIZES)
    torch.manual_seed(seed)
    model = LanguageModel(config)
    ids = torch.tensor(tokenizer.encode(TEXT * 2))
    windows = torch.stack([ids[i : i + 33] for i in range(0, len(TEXT), 6)])  # (B, 33)
    model.train()
    _train(model, lambda: model.loss(windows), steps, seed)
    info = {"family": "lm", "task": "lm", "model": config.to_dict(), "tokenizer": "char", "corpus": None,
            "block_size": 32}
    return save_checkpoint(directory, model, info, lambda d: tokenizer.save(d / "tokenizer.json"))


CONTEXTS = ["Ada Lovelace wrote the first program in 1843. She worked with Charles Babbage in London.",
            "The river flows through the old town and reaches the sea after forty kilometres."]
QUESTIONS = ["Who wrote the first program?", "Where does the river end?", "When was it written?"]


def build_tiny_qa(directory: str | Path, seed: int = 0) -> Path:
    from rosetta.checkpoint import save_checkpoint
    from rosetta.data.tokenizer import Tokenizer
    from rosetta.models.encoder import EncoderModel, bert_config

    tokenizer = Tokenizer.train(CONTEXTS + QUESTIONS, vocab_size=150, min_frequency=1)
    config = bert_config(tokenizer.vocab_size, n_encoder_layers=2, max_len=64, **SIZES)
    torch.manual_seed(seed)
    model = EncoderModel(config, span_head=True).eval()
    info = {"family": "encoder", "task": "qa", "model": config.to_dict(), "num_labels": 0, "pooler": False,
            "tokenizer": "bpe", "pretrained": None, "corpus": None, "max_length": 48, "stride": 16,
            "max_query_length": 16}
    return save_checkpoint(directory, model, info, lambda d: tokenizer.save(d / "tokenizer.json"))


def build_tiny_summariser(directory: str | Path) -> Path:
    from tiny_translator import build_tiny_model

    return build_tiny_model(directory, task="summarisation")


_CACHE: dict[str, Path] = {}


def _cached(name: str, build: Callable[[Path], Path]) -> Path:
    """``build`` once per test process; the directory is removed when the process exits."""
    if name not in _CACHE:
        root = Path(tempfile.mkdtemp(prefix=f"rosetta-tiny-{name}-"))
        atexit.register(shutil.rmtree, root, ignore_errors=True)
        _CACHE[name] = build(root / "model")
    return _CACHE[name]


def tiny_classifier_dir() -> Path:
    return _cached("classifier", build_tiny_classifier)


def tiny_lm_dir() -> Path:
    return _cached("lm", build_tiny_lm)


def tiny_summariser_dir() -> Path:
    return _cached("summariser", build_tiny_summariser)


def tiny_qa_dir() -> Path:
    return _cached("qa", build_tiny_qa)
