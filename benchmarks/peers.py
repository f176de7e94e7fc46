"""Rosetta against its peers, measured side by side in one run.

The same encoder–decoder architecture (post-LN, ReLU, sinusoidal positions, embeddings ×√d, one shared
vocabulary of 8,000 with tied embeddings, pad 0 / bos 1 / eos 2) is built in

    rosetta        rosetta.Transformer
    torch.nn       torch.nn.Transformer (batch_first, post-LN) + embeddings ×√d + sinusoidal PE + tied output
    hf-marian      transformers.MarianMTModel from a MarianConfig (random weights, nothing downloaded)
    ct2            CTranslate2, the Marian model converted (float32 and int8), inference only

and measured for

    training    target tokens/s of one optimizer step (forward, label-smoothed CE, backward, AdamW)
    decoding    greedy and beam-4 search, every system forced to emit exactly ``out_len`` tokens
    memory      peak RSS of a fresh subprocess per system (peak CUDA memory on a GPU)
    bf16        Rosetta's loss curve with bf16 autocast next to fp32 on a copy task

Timings are noisy on a shared machine, so every measurement interleaves the systems (one repeat of each,
then the next round, in a rotating order) and reports median [min–max] over the rounds; ratios are
medians divided by medians of the same run.

    python benchmarks/peers.py --quick                      # < 2 min on 2 CPU cores
    python benchmarks/peers.py --json bench.json            # full run, < 10 min
    python benchmarks/peers.py --config base --device cuda
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import gc
import json
import math
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

try:  # peers.py lives in benchmarks/, outside the package: make `rosetta` importable from a checkout
    import rosetta  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/workers.py, also in spawned workers
from rosetta.decode import for_inference  # noqa: E402
from rosetta.decode.allocator import keep_freed_memory  # noqa: E402
from rosetta.train.losses import linear_label_smoothed_nll  # noqa: E402

PAD, BOS, EOS, UNK = 0, 1, 2, 3
FIRST_WORD = 4  # random ids are drawn from [FIRST_WORD, vocab - 1): CT2's Marian vocabulary drops the last id


# ---------------------------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class Arch:
    """Sizes of the shared architecture."""

    d_model: int
    n_heads: int
    d_ff: int
    n_layers: int  # encoder layers = decoder layers
    vocab: int = 8000
    dropout: float = 0.1
    max_positions: int = 256


ARCHS = {
    "small": Arch(d_model=256, n_heads=4, d_ff=1024, n_layers=3),
    "base": Arch(d_model=512, n_heads=8, d_ff=2048, n_layers=6),
    "mini": Arch(d_model=32, n_heads=2, d_ff=64, n_layers=1, vocab=64),  # the smoke test's
}


@dataclass(frozen=True)
class Workload:
    """What is measured and how often."""

    train_sentences: int = 160  # ≈ 4,100 target tokens a batch (lengths 15–35, + EOS)
    train_lengths: tuple[int, int] = (15, 35)
    train_batches: int = 3  # distinct batches, cycled identically for every system
    decode_sentences: int = 64
    src_lengths: tuple[int, int] = (15, 25)  # + EOS: about 20 source tokens, padded
    out_len: int = 30  # every system emits exactly this many tokens
    beam_size: int = 4
    latency_sentences: int = 16  # batch-1 modes: the first ones of the sources, one call each
    curve_steps: int = 50
    curve_sentences: int = 64
    curve_lengths: tuple[int, int] = (6, 14)
    curve_words: int = 60  # copy-task tokens come from a small slice of the vocabulary
    warmup: int = 1
    train_repeats: int = 5
    decode_repeats: int = 5
    memory: bool = True


WORKLOADS = {
    "full": Workload(),
    "quick": Workload(train_repeats=2, decode_repeats=2, curve_steps=20, train_batches=2, memory=False),
    "mini": Workload(train_sentences=4, train_lengths=(3, 6), train_batches=1, decode_sentences=3,
                     src_lengths=(3, 6), out_len=5, beam_size=2, latency_sentences=2, curve_steps=3, curve_sentences=4,
                     curve_lengths=(2, 4), curve_words=10, warmup=1, train_repeats=1, decode_repeats=1,
                     memory=False),
}


# ---------------------------------------------------------------------------------------------- data
@dataclass
class Batch:
    src: torch.Tensor  # (B, S) ids, EOS-terminated, PAD-padded
    tgt_in: torch.Tensor  # (B, T) BOS + target
    tgt_out: torch.Tensor  # (B, T) target + EOS

    @property
    def target_tokens(self) -> int:
        return int((self.tgt_out != PAD).sum())

    def to(self, device: torch.device) -> Batch:
        return Batch(self.src.to(device), self.tgt_in.to(device), self.tgt_out.to(device))


def pad(rows: list[list[int]]) -> torch.Tensor:
    out = torch.full((len(rows), max(map(len, rows))), PAD, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.tensor(row)
    return out


def random_sentences(rng: random.Random, n: int, lengths: tuple[int, int], high: int) -> list[list[int]]:
    return [[rng.randrange(FIRST_WORD, high) for _ in range(rng.randint(*lengths))] for _ in range(n)]


def make_batch(src: list[list[int]], tgt: list[list[int]]) -> Batch:
    return Batch(pad([s + [EOS] for s in src]), pad([[BOS] + t for t in tgt]), pad([t + [EOS] for t in tgt]))


def train_batches(arch: Arch, work: Workload, seed: int = 0) -> list[Batch]:
    rng = random.Random(seed)
    n, lengths, high = work.train_sentences, work.train_lengths, arch.vocab - 1
    return [make_batch(random_sentences(rng, n, lengths, high), random_sentences(rng, n, lengths, high))
            for _ in range(work.train_batches)]


def copy_batches(work: Workload, seed: int = 1) -> list[Batch]:
    rng = random.Random(seed)
    high = FIRST_WORD + work.curve_words
    batches = []
    for _ in range(work.curve_steps):
        seqs = random_sentences(rng, work.curve_sentences, work.curve_lengths, high)
        batches.append(make_batch(seqs, seqs))
    return batches


def decode_sources(arch: Arch, work: Workload, seed: int = 2) -> list[list[int]]:
    """EOS-terminated source sentences (unpadded)."""
    rng = random.Random(seed)
    return [s + [EOS] for s in random_sentences(rng, work.decode_sentences, work.src_lengths, arch.vocab - 1)]


# ---------------------------------------------------------------------------------------------- systems
def available(module: str) -> bool:
    """Whether an optional peer (transformers, ctranslate2) is installed: missing ones are skipped."""
    import importlib.util

    return importlib.util.find_spec(module) is not None


def build_rosetta(arch: Arch, seed: int = 0) -> nn.Module:
    from rosetta import ModelConfig, Transformer

    torch.manual_seed(seed)
    config = ModelConfig(
        src_vocab_size=arch.vocab, tgt_vocab_size=arch.vocab, d_model=arch.d_model, n_heads=arch.n_heads,
        d_ff=arch.d_ff, n_encoder_layers=arch.n_layers, n_decoder_layers=arch.n_layers, dropout=arch.dropout,
        pad_id=PAD, bos_id=BOS, eos_id=EOS, max_len=arch.max_positions, positional="sinusoidal",
        norm_first=False, activation="relu", share_embeddings=True, tie_output=True,
    )
    return Transformer(config)


class TorchSeq2Seq(nn.Module):
    """torch.nn.Transformer with what it lacks around it: shared embeddings ×√d, sinusoidal PE, tied output.

    (nn.Transformer also adds a final LayerNorm after each stack and applies its dropout to the attention
    weights and FFN activations as well — slightly more work than the others.)"""

    def __init__(self, arch: Arch):
        super().__init__()
        from rosetta.nn.positional import sinusoidal_encoding

        self.scale = math.sqrt(arch.d_model)
        self.embed = nn.Embedding(arch.vocab, arch.d_model)
        nn.init.normal_(self.embed.weight, std=arch.d_model**-0.5)
        self.register_buffer("pe", sinusoidal_encoding(arch.max_positions, arch.d_model), persistent=False)
        self.dropout = nn.Dropout(arch.dropout)
        self.transformer = nn.Transformer(
            d_model=arch.d_model, nhead=arch.n_heads, num_encoder_layers=arch.n_layers,
            num_decoder_layers=arch.n_layers, dim_feedforward=arch.d_ff, dropout=arch.dropout,
            activation="relu", batch_first=True, norm_first=False,
        )

    def _embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.embed(ids) * self.scale + self.pe[: ids.shape[1]])

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        t = tgt_in.shape[1]
        causal = torch.ones(t, t, dtype=torch.bool, device=src.device).triu(1)  # True = may NOT attend
        h = self.transformer(
            self._embed(src), self._embed(tgt_in), tgt_mask=causal, tgt_is_causal=True,
            src_key_padding_mask=src == PAD, tgt_key_padding_mask=tgt_in == PAD,
            memory_key_padding_mask=src == PAD,
        )
        return F.linear(h, self.embed.weight)


def build_torch_nn(arch: Arch, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "enable_nested_tensor is True, but ..." — irrelevant here
        return TorchSeq2Seq(arch)


def marian_config(arch: Arch):
    from transformers import MarianConfig

    return MarianConfig(
        vocab_size=arch.vocab, d_model=arch.d_model, encoder_layers=arch.n_layers, decoder_layers=arch.n_layers,
        encoder_attention_heads=arch.n_heads, decoder_attention_heads=arch.n_heads, encoder_ffn_dim=arch.d_ff,
        decoder_ffn_dim=arch.d_ff, activation_function="relu", scale_embedding=True,
        dropout=arch.dropout, attention_dropout=0.0, activation_dropout=0.0,
        pad_token_id=PAD, eos_token_id=EOS, bos_token_id=BOS, decoder_start_token_id=BOS,
        forced_eos_token_id=None, max_position_embeddings=arch.max_positions,
        share_encoder_decoder_embeddings=True, tie_word_embeddings=True,
    )


def build_marian(arch: Arch, seed: int = 0) -> nn.Module:
    from transformers import MarianMTModel
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    torch.manual_seed(seed)
    return MarianMTModel(marian_config(arch))


def ct2_vocabulary(arch: Arch) -> list[str]:
    """Token names for CT2, which works on strings. The converter's Marian loader drops the last row of the
    embeddings (HF appends Marian's <pad> there), so the last name is "<pad>"; the real pad (id 0) is unused
    by CT2, which pads internally. CT2 thus sees vocab − 1 tokens, and no benchmark id reaches the last one."""
    names = ["<blank>", "<s>", "</s>", "<unk>"] + [f"w{i}" for i in range(FIRST_WORD, arch.vocab - 1)]
    return names + ["<pad>"]


class _VocabOnlyTokenizer:
    """All the CTranslate2 Marian converter reads from a tokenizer (ids are the model's own)."""

    eos_token, unk_token, pad_token = "</s>", "<unk>", "<pad>"

    def __init__(self, names: list[str]):
        self.names = names

    def get_vocab(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.names)}


def convert_to_ct2(marian: nn.Module, arch: Arch, out_dir: Path, quantization: str | None) -> Path:
    """save_pretrained + TransformersConverter, with a vocabulary-only tokenizer (no download)."""
    from ctranslate2.converters import TransformersConverter

    class Converter(TransformersConverter):
        def load_tokenizer(self, tokenizer_class, model_name_or_path, **kwargs):
            return _VocabOnlyTokenizer(ct2_vocabulary(arch))

    hf_dir = out_dir / "hf"
    if not (hf_dir / "config.json").exists():
        marian.save_pretrained(hf_dir)
    ct2_dir = out_dir / f"ct2-{quantization or 'float32'}"
    Converter(str(hf_dir)).convert(str(ct2_dir), quantization=quantization, force=True)
    return ct2_dir


def load_ct2(ct2_dir: Path, device: str, compute_type: str, threads: int):
    import ctranslate2

    return ctranslate2.Translator(str(ct2_dir), device=device, compute_type=compute_type,
                                  intra_threads=threads, inter_threads=1)


def quantize_int8(model: nn.Module) -> nn.Module:
    """Dynamic int8 quantization of every nn.Linear (torch.ao; deprecated in favour of torchao, still works)."""
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return quantize_dynamic(copy.deepcopy(model), {nn.Linear}, dtype=torch.qint8)


# ---------------------------------------------------------------------------------------------- training
def forward_fn(kind: str, model: nn.Module) -> Callable[[Batch], torch.Tensor]:
    """Teacher-forced logits (B, T, V) for a batch, per system."""
    if kind == "hf-marian":
        return lambda b: model(input_ids=b.src, attention_mask=(b.src != PAD).long(), decoder_input_ids=b.tgt_in,
                               decoder_attention_mask=(b.tgt_in != PAD).long()).logits
    return lambda b: model(b.src, b.tgt_in)


def autocast(device: torch.device, bf16: bool):
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def make_train_step(kind: str, model: nn.Module, device: torch.device, bf16: bool,
                    lr: float = 1e-4) -> Callable[[Batch], float]:
    """One optimizer step: forward, label-smoothed (0.1) CE ignoring pad, backward, AdamW. Returns the loss.
    Peers compute the loss with ``F.cross_entropy`` on their logits; Rosetta as its trainer does, fused with
    the output layer (``rosetta.train.losses.linear_label_smoothed_nll``)."""
    model.to(device).train()
    forward = forward_fn(kind, model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.98), eps=1e-9, weight_decay=0.0)

    def step(batch: Batch) -> float:
        with autocast(device, bf16):
            if kind == "rosetta":  # Rosetta's training loss: the output layer fused with it (TranslationTask)
                features = model(batch.src, batch.tgt_in, features_only=True)
                loss, _, count = linear_label_smoothed_nll(features, model.output.weight, batch.tgt_out, PAD, 0.1)
                loss = loss / count
            else:
                logits = forward(batch)
        if kind != "rosetta":
            loss = F.cross_entropy(logits.float().flatten(0, 1), batch.tgt_out.flatten(), ignore_index=PAD,
                                   label_smoothing=0.1)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.item()  # also waits for the device

    return step


def training_systems(arch: Arch, device: torch.device, cpu_bf16: bool = True
                     ) -> dict[str, tuple[str, nn.Module, bool]]:
    """name → (kind, model, bf16). On CUDA every system runs under bf16 autocast; on a CPU Rosetta also
    runs under bf16 autocast when ``cpu_bf16`` (a CPU without AVX-512 BF16/AMX emulates it, ~30x slower)."""
    cuda = device.type == "cuda"
    systems = {
        "rosetta": ("rosetta", build_rosetta(arch), cuda),
        "torch.nn": ("torch.nn", build_torch_nn(arch), cuda),
    }
    if available("transformers"):
        systems["hf-marian"] = ("hf-marian", build_marian(arch), cuda)
    if not cuda and cpu_bf16:
        systems["rosetta bf16"] = ("rosetta", build_rosetta(arch), True)
    return systems


def loss_curves(arch: Arch, work: Workload, device: torch.device, lr: float = 5e-4) -> dict[str, list[float]]:
    """Rosetta fp32 vs bf16 autocast from the same initial weights on the same copy-task batches."""
    batches = [b.to(device) for b in copy_batches(work)]
    steps = {name: make_train_step("rosetta", build_rosetta(arch, seed=3), device, bf16, lr=lr)
             for name, bf16 in (("fp32", False), ("bf16", True))}
    curves: dict[str, list[float]] = {name: [] for name in steps}
    for batch in batches:
        for name, step in steps.items():
            curves[name].append(step(batch))
    return curves


# ---------------------------------------------------------------------------------------------- decoding
def greedy_no_cache(model: nn.Module, src: torch.Tensor, out_len: int) -> torch.Tensor:
    """The baseline without key/value caches: every step re-runs the decoder over the whole prefix
    (the encoder runs once, so the difference to the cached search is the cache alone)."""
    memory, memory_mask, _ = model.encode(src)
    ys = torch.full((src.shape[0], 1), BOS, dtype=torch.long, device=src.device)
    for _ in range(out_len):
        t = ys.shape[1]
        causal = torch.ones(t, t, dtype=torch.bool, device=src.device).tril()[None, None]
        logits, _ = model.decode(ys, memory, memory_mask, tgt_mask=causal)
        scores = logits[:, -1].float()
        scores[:, [PAD, BOS, EOS]] = -math.inf  # as rosetta.decode: PAD/BOS never, EOS held back (min length)
        ys = torch.cat([ys, scores.argmax(-1, keepdim=True)], dim=1)
    return ys[:, 1:]


def rosetta_decoder(model: nn.Module, src: torch.Tensor, out_len: int, beam: int, device: torch.device,
                    cache: bool = True) -> Callable[[], list[int]]:
    """A call that decodes the batch and returns the output lengths."""
    from rosetta import decode

    model.to(device).eval()

    def run() -> list[int]:
        with torch.inference_mode():  # bf16 / int8: the model comes converted (rosetta.decode.for_inference)
            if not cache:
                out = greedy_no_cache(model, src, out_len)
            elif beam == 1:
                out = decode.greedy_search(model, src, max_len=out_len, min_len=out_len)
            else:
                out = decode.beam_search(model, src, beam_size=beam, max_len=out_len, min_len=out_len)
        return output_lengths(out)

    return run


def output_lengths(out: Any) -> list[int]:
    """Number of emitted tokens (BOS, EOS and padding excluded) per sentence, whatever the container."""
    if isinstance(out, dict):
        out = out.get("tokens", out.get("sequences", out))
    if isinstance(out, tuple):
        out = out[0]
    if isinstance(out, torch.Tensor):
        out = out.tolist()
    lengths = []
    for row in out:
        if isinstance(row, dict):
            row = row.get("tokens", row)
        elif hasattr(row, "tokens"):
            row = row.tokens
        if isinstance(row, torch.Tensor):
            row = row.tolist()
        if row and isinstance(row[0], list):  # n-best list: the best hypothesis
            row = row[0]
        lengths.append(sum(1 for t in row if t not in (PAD, BOS, EOS)))
    return lengths


def hf_decoder(model: nn.Module, src: torch.Tensor, out_len: int, beam: int, device: torch.device,
               bf16: bool = False) -> Callable[[], list[int]]:
    model.to(device).eval()
    mask = (src != PAD).long()

    def run() -> list[int]:
        with torch.inference_mode(), autocast(device, bf16):
            out = model.generate(input_ids=src, attention_mask=mask, num_beams=beam, do_sample=False,
                                 min_new_tokens=out_len, max_new_tokens=out_len, length_penalty=1.0)
        return [int(n) for n in (out[:, 1:] != PAD).sum(1)]  # out[:, 0] is the decoder start token

    return run


def ct2_decoder(translator, sources: list[list[str]], out_len: int, beam: int) -> Callable[[], list[int]]:
    def run() -> list[int]:
        results = translator.translate_batch(sources, beam_size=beam, min_decoding_length=out_len,
                                             max_decoding_length=out_len)
        return [len(r.hypotheses[0]) for r in results]

    return run


DECODE_SYSTEMS = ("rosetta", "rosetta no-cache", "rosetta bf16", "rosetta int8", "hf-marian", "ct2 float32",
                  "ct2 int8", "ct2 bfloat16")


def decode_system_names(device: torch.device, cpu_bf16: bool) -> list[str]:
    """The decoding systems measured on ``device``: bf16 where it is native (GPU, or a CPU with AVX-512 BF16 /
    AMX), int8 (dynamic quantisation) on the CPU; peers only where installed."""
    cuda = device.type == "cuda"
    names = ["rosetta", "rosetta no-cache"]
    names += ["rosetta bf16"] if cuda or cpu_bf16 else []
    names += [] if cuda else ["rosetta int8"]
    if available("transformers"):
        names.append("hf-marian")
        if available("ctranslate2"):
            names += ["ct2 float32", "ct2 bfloat16" if cuda else "ct2 int8"]
    return names


def prepare_ct2(arch: Arch, tmp: Path, names: list[str]) -> None:
    """Convert the Marian model to CTranslate2 once per run, for every ct2 system in ``names`` (the workers
    and the memory probes only load the converted folders)."""
    marian = None
    for name in names:
        if name.startswith("ct2") and not (tmp / f"ct2-{name.split()[1]}").exists():
            marian = marian or build_marian(arch)
            quantization = name.split()[1]
            convert_to_ct2(marian, arch, tmp, None if quantization == "float32" else quantization)


DECODE_MODES = ("greedy", "beam", "greedy b1", "beam b1")  # b1: the latency sentences one at a time


def one_by_one(runs: list[Callable[[], list[int]]]) -> Callable[[], list[int]]:
    """A call that runs single-sentence decodes in turn (batch 1: what a server answering one request sees)."""
    return lambda: [length for run in runs for length in run()]


def decoding_system(name: str, arch: Arch, work: Workload, device: torch.device, threads: int,
                    tmp: Path) -> dict[str, Callable[[], list[int]]]:
    """One decoding system, built in this process: mode (``DECODE_MODES``) → a call that decodes the
    workload's sources and returns the output lengths. ct2 systems need ``prepare_ct2`` first."""
    sources = decode_sources(arch, work)
    singles = sources[: work.latency_sentences]
    src, single_srcs = pad(sources).to(device), [pad([s]).to(device) for s in singles]
    n, k = work.out_len, work.beam_size
    if name == "rosetta no-cache":
        return {"greedy": rosetta_decoder(build_rosetta(arch), src, n, 1, device, cache=False)}
    if name.startswith("rosetta"):
        keep_freed_memory()  # as rosetta.load does in a process that decodes
        model = build_rosetta(arch).to(device).eval()
        model = for_inference(model, {"rosetta": "fp32", "rosetta bf16": "bf16", "rosetta int8": "int8"}[name])
        def make(batch, beam):
            return rosetta_decoder(model, batch, n, beam, device)
    elif name == "hf-marian":
        marian = build_marian(arch)
        def make(batch, beam):
            return hf_decoder(marian, batch, n, beam, device)
    else:
        compute_type = name.split()[1]
        translator = load_ct2(tmp / f"ct2-{compute_type}", device.type, compute_type, threads)
        names = ct2_vocabulary(arch)
        def make(batch, beam):
            return ct2_decoder(translator, [[names[i] for i in row if i != PAD] for row in batch.tolist()], n, beam)
    return {"greedy": make(src, 1), "beam": make(src, k),
            "greedy b1": one_by_one([make(s, 1) for s in single_srcs]),
            "beam b1": one_by_one([make(s, k) for s in single_srcs])}


# ---------------------------------------------------------------------------------------------- timing
@dataclass
class Stat:
    """A throughput over repeats: median [min–max]."""

    values: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")

    def fmt(self, digits: int = 0) -> str:
        if not self.values:
            return "–"
        return f"{self.median:,.{digits}f} [{min(self.values):,.{digits}f}–{max(self.values):,.{digits}f}]"

    def as_dict(self) -> dict[str, Any]:
        return {"median": self.median, "min": min(self.values, default=None),
                "max": max(self.values, default=None), "values": self.values}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# CTranslate2's OpenMP threads spin for KMP_BLOCKTIME (200 ms) after each call, and PyTorch's for a while
# too: a system timed right after another would share the cores with its spinning threads. Timed calls
# start after this pause (not counted), so each system runs alone.
PAUSE_S = 0.3


def interleaved(cases: dict[str, Callable[[], Any]], repeats: int, warmup: int,
                device: torch.device, pause: float = PAUSE_S) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """Run every case ``warmup`` times, then ``repeats`` rounds of one call each, the order rotating each
    round so that no system always runs first (or right after a heavy one), each call after ``pause``
    seconds of idle (see ``PAUSE_S``). Returns seconds per call per case and each case's last result."""
    names = list(cases)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    results: dict[str, Any] = {}
    for name in names:
        for _ in range(warmup):
            results[name] = cases[name]()
    sync(device)
    for r in range(repeats):
        for name in names[r % len(names):] + names[: r % len(names)]:
            time.sleep(pause)
            start = time.perf_counter()
            results[name] = cases[name]()
            sync(device)
            seconds[name].append(time.perf_counter() - start)
    return seconds, results


def bench_training(arch: Arch, work: Workload, device: torch.device, log=print, cpu_bf16: bool = True
                   ) -> dict[str, Stat]:
    batches = [b.to(device) for b in train_batches(arch, work)]
    systems = training_systems(arch, device, cpu_bf16)
    log(f"training: {len(systems)} systems, batches of {[b.target_tokens for b in batches]} target tokens, "
        f"{work.train_repeats} rounds")
    cases, cursor = {}, {}
    for name, (kind, model, bf16) in systems.items():
        step = make_train_step(kind, model, device, bf16)
        cursor[name] = 0

        def case(name=name, step=step) -> int:  # every system walks through the same batches in order
            batch = batches[cursor[name] % len(batches)]
            cursor[name] += 1
            step(batch)
            return batch.target_tokens

        cases[name] = case
    seconds, _ = interleaved(cases, work.train_repeats, work.warmup, device)
    stats = {}
    for name, secs in seconds.items():  # the batch of round r is the same for every system
        tokens = [batches[(work.warmup + i) % len(batches)].target_tokens for i in range(len(secs))]
        stats[name] = Stat([t / s for t, s in zip(tokens, secs)])
    del systems, cases
    gc.collect()
    return stats


def bench_decoding(arch: Arch, work: Workload, device: torch.device, threads: int, tmp: Path, log=print,
                   cpu_bf16: bool = True) -> tuple[dict[str, dict[str, Stat]], dict[str, dict[str, Stat]],
                                                   dict[str, bool]]:
    """Sentences/s and tokens/s per system and mode; and whether every output had exactly out_len tokens.
    Every system runs in its own process (``workers.IsolatedSystems``), one at a time."""
    from workers import IsolatedSystems

    names = decode_system_names(device, cpu_bf16)
    prepare_ct2(arch, tmp, names)
    builders = {name: (decoding_system, (name, arch, work, device, threads, tmp)) for name in names}
    with IsolatedSystems(builders, threads) as systems:
        for name, error in systems.errors.items():
            log(f"decoding: {name} failed to build, left out: {error}")
        log(f"decoding: {len(systems.modes)} systems (one process each) × greedy/beam-{work.beam_size}, "
            f"{work.decode_sentences} sentences → {work.out_len} tokens, {work.decode_repeats} rounds")
        cases = {f"{name}|{mode}": systems.case(name, mode) for name, modes in systems.modes.items()
                 for mode in modes}
        seconds, results = interleaved(cases, work.decode_repeats, work.warmup, device)
    sentences, tokens, exact = {}, {}, {}
    for case, secs in seconds.items():
        name, mode = case.split("|")
        n = work.latency_sentences if mode.endswith("b1") else work.decode_sentences
        sentences.setdefault(name, {})[mode] = Stat([n / s for s in secs])
        tokens.setdefault(name, {})[mode] = Stat([n * work.out_len / s for s in secs])
        exact.setdefault(name, True)
        exact[name] &= all(length == work.out_len for length in results[case])
    return sentences, tokens, exact


# ---------------------------------------------------------------------------------------------- memory
def rss_mb() -> tuple[float, float]:
    """(current RSS, RSS high-water) in MB from /proc/self/status (Linux); ru_maxrss elsewhere.

    VmHWM rather than ru_maxrss: Linux carries ru_maxrss over fork + exec, so a probe started by a big
    parent would report the parent's peak."""
    try:
        status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
        return int(status["VmRSS"].split()[0]) / 1024, int(status["VmHWM"].split()[0]) / 1024
    except (OSError, KeyError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return peak, peak


def reset_peak_rss() -> bool:
    """Reset the RSS high-water mark (Linux ``clear_refs`` 5); False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


MEMORY_PROBES = {  # probe name → (what, system); run in a fresh subprocess each
    "train rosetta": ("train", "rosetta"),
    "train rosetta bf16": ("train", "rosetta bf16"),
    "train torch.nn": ("train", "torch.nn"),
    "train hf-marian": ("train", "hf-marian"),
    "decode rosetta": ("decode", "rosetta"),
    "decode rosetta int8": ("decode", "rosetta int8"),
    "decode hf-marian": ("decode", "hf-marian"),
    "decode ct2 float32": ("decode", "ct2 float32"),
    "decode ct2 int8": ("decode", "ct2 int8"),
}


def memory_probe(probe: str, arch: Arch, work: Workload, device: torch.device, threads: int,
                 tmp: Path) -> dict[str, Any]:
    """In this (fresh) process: build one system, then run one training step, or one beam search, twice.
    Reports the peak RSS of the whole process (imports and model building included), the RSS before the
    workload and the peak during it (and the peak CUDA memory allocated by torch on a GPU)."""
    what, system = MEMORY_PROBES[probe]
    if what == "train":
        if system == "rosetta bf16":
            kind, model, bf16 = "rosetta", build_rosetta(arch), True
        else:
            kind, model, bf16 = system, {"rosetta": build_rosetta, "torch.nn": build_torch_nn,
                                         "hf-marian": build_marian}[system](arch), device.type == "cuda"
        step, batch = make_train_step(kind, model, device, bf16), train_batches(arch, work)[0].to(device)
        def run():
            return (step(batch))
    else:
        run = decoding_system(system, arch, work, device, threads, tmp)["beam"]
    gc.collect()
    before, build_peak = rss_mb()
    reset = reset_peak_rss()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(2):
        run()
    sync(device)
    _, hwm = rss_mb()
    out = {"peak_rss_mb": max(build_peak, hwm), "before_mb": before,
           "workload_peak_mb": hwm if reset else None}
    if device.type == "cuda":
        out["cuda_peak_mb"] = None if system.startswith("ct2") else torch.cuda.max_memory_allocated(device) / 2**20
    return out


def bench_memory(args: argparse.Namespace, tmp: Path, log=print, cpu_bf16: bool = True) -> dict[str, dict[str, Any]]:
    results = {}
    for probe in MEMORY_PROBES:
        system = MEMORY_PROBES[probe][1]
        if args.device == "cuda" and probe.endswith(("bf16", "int8")) or probe.endswith("bf16") and not cpu_bf16:
            continue
        if system.startswith("hf") and not available("transformers") or system.startswith("ct2") and not (
                available("ctranslate2") and available("transformers")):
            continue
        cmd = [sys.executable, __file__, "--config", args.config, "--device", args.device, "--threads",
               str(args.threads), "--workload", args.workload_name, "--memory-probe", probe, "--tmp", str(tmp)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:
            log(f"memory probe {probe!r} failed:\n{proc.stderr[-2000:]}")
            continue
        results[probe] = json.loads(proc.stdout.strip().splitlines()[-1])
        log(f"  memory {probe}: peak RSS {results[probe]['peak_rss_mb']:.0f} MB")
    return results


# ---------------------------------------------------------------------------------------------- report
def environment(args: argparse.Namespace) -> dict[str, Any]:
    def version(module: str) -> str | None:
        try:
            return __import__(module).__version__
        except ImportError:
            return None

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() \
        else platform.processor()
    env = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "python": platform.python_version(), "torch": torch.__version__, "transformers": version("transformers"),
        "ctranslate2": version("ctranslate2"), "cpu": cpu, "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(), "device": args.device, "config": args.config,
        "workload": args.workload_name,
    }
    if args.device == "cuda":
        env["gpu"] = torch.cuda.get_device_name()
    try:
        env["load_average"] = os.getloadavg()
    except OSError:
        pass
    return env


def ratio(a: Stat | None, b: Stat | None) -> str:
    if a is None or b is None or not a.values or not b.values:
        return "–"
    return f"{a.median / b.median:.2f}×"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def training_table(stats: dict[str, Stat]) -> str:
    peers = {name: s for name, s in stats.items() if not name.startswith("rosetta")}
    fastest = max(peers.values(), key=lambda s: s.median) if peers else None
    rows = [[name, s.fmt(), ratio(s, stats.get("hf-marian")), ratio(s, stats.get("torch.nn")), ratio(s, fastest)]
            for name, s in stats.items()]
    return markdown_table(["system", "target tok/s", "× hf-marian", "× torch.nn", "× fastest peer"], rows)


def decoding_table(sentences: dict[str, dict[str, Stat]], exact: dict[str, bool], beam: int) -> str:
    """Sentences/s per mode (batch 1: ms per sentence) and each mode's ratio to every peer, "×" = faster."""
    refs = ["hf-marian"] + [name for name in sentences if name.startswith("ct2")]
    rows = []
    for name, modes in sentences.items():
        row = [name + ("" if exact[name] else " (length ≠ target!)")]
        for mode in DECODE_MODES:
            stat = modes.get(mode)
            if stat is None:
                row.append("–")
            elif mode.endswith("b1"):
                row.append(f"{1000 / stat.median:.1f}")
            else:
                row.append(stat.fmt())
        for ref in refs:
            row.append(" / ".join(ratio(modes.get(m), sentences[ref].get(m)) for m in DECODE_MODES))
        rows.append(row)
    header = ["system", "greedy sent/s", f"beam-{beam} sent/s", "greedy b1 ms/sent", f"beam-{beam} b1 ms/sent"]
    return markdown_table(header + [f"× {ref} (greedy / beam / b1 greedy / b1 beam)" for ref in refs], rows)


def memory_table(memory: dict[str, dict[str, Any]]) -> str:
    rows = []
    for probe, m in memory.items():
        def fmt(v):
            return ("–" if v is None else f"{v:,.0f}")
        during = m.get("workload_peak_mb")
        rows.append([probe, fmt(m["peak_rss_mb"]), fmt(m["before_mb"]), fmt(during),
                     fmt(None if during is None else during - m["before_mb"]), fmt(m.get("cuda_peak_mb"))])
    return markdown_table(["system", "peak RSS MB (process)", "RSS before workload MB", "peak during workload MB",
                           "workload Δ MB", "peak CUDA MB"], rows)


# ---------------------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--config", choices=["small", "base", "mini"], default="small")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--quick", action="store_true", help="fewer rounds, short loss curve, no memory probes")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads and CT2 intra_threads")
    p.add_argument("--json", type=Path, help="write every measurement here")
    p.add_argument("--only", default="train,curve,decode,memory",
                   help="comma-separated parts to run: train,curve,decode,memory")
    p.add_argument("--cpu-bf16", choices=["auto", "on", "off"], default="auto",
                   help="bf16 autocast runs on the CPU (auto: only with AVX-512 BF16 / AMX, else it is emulated)")
    p.add_argument("--repeats", type=int, help="rounds per measurement (overrides the workload's)")
    p.add_argument("--memory", action="store_true", help="run the memory probes also with --quick")
    p.add_argument("--workload", dest="workload_name", default=None, help=argparse.SUPPRESS)
    p.add_argument("--memory-probe", help=argparse.SUPPRESS)  # internal: one probe in this process
    p.add_argument("--tmp", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.workload_name is None:
        args.workload_name = "mini" if args.config == "mini" else ("quick" if args.quick else "full")
    return args


def workload_for(args: argparse.Namespace) -> Workload:
    work = WORKLOADS[args.workload_name]
    if args.repeats:
        work = Workload(**{**asdict(work), "train_repeats": args.repeats, "decode_repeats": args.repeats})
    if args.memory:
        work = Workload(**{**asdict(work), "memory": True})
    return work


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    arch, work = ARCHS[args.config], workload_for(args)
    if args.memory_probe:
        print(json.dumps(memory_probe(args.memory_probe, arch, work, device, args.threads, args.tmp)))
        return {}
    parts = set(args.only.split(","))

    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    from rosetta.train import cpu_has_native_bf16

    cpu_bf16 = args.cpu_bf16 == "on" or (args.cpu_bf16 == "auto" and cpu_has_native_bf16())
    if args.device == "cpu" and not cpu_bf16:
        parts.discard("curve")
        log("bf16 on the CPU skipped: this CPU has no AVX-512 BF16 / AMX (emulated bf16 is ~30x slower); "
            "--cpu-bf16 on forces it")

    started = time.perf_counter()
    report: dict[str, Any] = {"environment": environment(args), "arch": asdict(arch), "workload": asdict(work)}
    log(f"{args.config} on {args.device}, {args.threads} threads, workload {args.workload_name}")
    tables = []
    with tempfile.TemporaryDirectory(prefix="rosetta-peers-") as tmp_name:
        tmp = Path(tmp_name)
        if "train" in parts:
            stats = bench_training(arch, work, device, log, cpu_bf16)
            report["training_tokens_per_s"] = {name: s.as_dict() for name, s in stats.items()}
            tables.append("### Training: target tokens/s per optimizer step\n\n" + training_table(stats))
        if "curve" in parts:
            log(f"loss curves: rosetta fp32 vs bf16 autocast, {work.curve_steps} steps of a copy task")
            curves = loss_curves(arch, work, device)
            report["loss_curves"] = curves
            final = {name: statistics.mean(c[-5:]) for name, c in curves.items()}
            tables.append(f"### bf16 vs fp32 loss (copy task, {work.curve_steps} steps)\n\n" + markdown_table(
                ["", "first loss", "final loss (mean of last 5)", "max abs(bf16 − fp32) over the curve"],
                [[name, f"{c[0]:.4f}", f"{final[name]:.4f}",
                  f"{max(abs(a - b) for a, b in zip(curves['bf16'], curves['fp32'])):.4f}"]
                 for name, c in curves.items()]))
        if "decode" in parts:
            sentences, tokens, exact = bench_decoding(arch, work, device, args.threads, tmp, log, cpu_bf16)
            report["decoding_sentences_per_s"] = {n: {m: s.as_dict() for m, s in v.items()}
                                                  for n, v in sentences.items()}
            report["decoding_tokens_per_s"] = {n: {m: s.as_dict() for m, s in v.items()} for n, v in tokens.items()}
            report["decoding_exact_length"] = exact
            tables.append(f"### Decoding: {work.decode_sentences} sentences → exactly {work.out_len} tokens in one "
                          f"batch; b1: {work.latency_sentences} of them one at a time\n\n"
                          + decoding_table(sentences, exact, work.beam_size))
        if "memory" in parts and work.memory:
            log("memory: one subprocess per system")
            prepare_ct2(arch, tmp, ["ct2 float32", "ct2 int8"])  # the probes reuse converted models
            memory = bench_memory(args, tmp, log, cpu_bf16)
            report["memory"] = memory
            tables.append("### Peak memory (training step / beam search, fresh process each)\n\n"
                          + memory_table(memory))
    report["elapsed_s"] = time.perf_counter() - started
    env = report["environment"]
    print(f"## Rosetta vs peers — {args.config}, {args.device}, {args.threads} threads, {env['date']}\n")
    print(f"torch {env['torch']}, transformers {env['transformers']}, ctranslate2 {env['ctranslate2']}, "
          f"CPU {env['cpu']} ({env['cpu_count']} cores); median [min–max] of interleaved rounds\n")
    print("\n\n".join(tables))
    print(f"\n({report['elapsed_s']:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        log(f"wrote {args.json}")
    return report


if __name__ == "__main__":
    main()
