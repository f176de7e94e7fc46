"""Training throughput and MFU of Rosetta's Transformer presets: bf16 autocast, fused attention, eager and compiled.

    python benchmarks/mfu.py --preset base,big --json mfu.json          # one GPU (defaults: 10 timed steps)
    python benchmarks/mfu.py --device cpu --preset tiny --steps 2       # smoke test

A step is the Trainer's (``rosetta.train.trainer``): forward under bf16 autocast — attention runs in
``F.scaled_dot_product_attention``, as it does whenever no attention weights are asked for — label-smoothed
NLL (``label_smoothed_nll``, ε = 0.1), backward, gradient clipping at 1.0, fused Adam. "compiled" wraps the
model in ``torch.compile`` as ``train.compile = true`` does. Batches are synthetic: random word ids, source and
target lengths drawn uniformly from ``--lengths`` (+ EOS), every batch padded to the same width so that the
compiled model sees one shape. A few warm-up steps (compilation happens there), then ``--steps`` timed steps
between two ``torch.cuda.synchronize``.

Model FLOPs (PaLM / Chinchilla style: matmuls only, 2 FLOPs per multiply–add, backward = 2 × forward, padding
not counted, no discount for the causal mask), per training step:

    6 · (P_src · Σ S + P_tgt · Σ T)  +  6 · H (d_k + d_v) · Σ_sentences [L_e S² + L_d (T² + T S)]

    P_src = L_e (4 d² + f d d_ff) + L_d · 2 d²             encoder layers; cross-attention W_K, W_V on the memory
    P_tgt = L_d (4 d² + 2 d² + f d d_ff) + d V             decoder self-attention, cross W_Q, W_O, FFN; output layer

with S, T the source and target lengths of each sentence (EOS / BOS included), f = 2 (3 for gated FFNs), V the
target vocabulary (the output projection is a matmul even when tied to the embeddings) and 4 d² written out as
d (2 H d_k + H d_v) + H d_v d. For S = T = n and L layers this is the familiar 6 N + 12 L d n per token.
MFU = model FLOPs per second ÷ the device's peak dense bf16 FLOP/s (``PEAK_BF16_TFLOPS``, or ``--peak-tflops``).
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import random
import sys
import time
from pathlib import Path
from typing import Any

import torch

try:  # benchmarks/ lives outside the package: make `rosetta` importable from a checkout
    import rosetta  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from rosetta import ModelConfig, Transformer  # noqa: E402
from rosetta.nn.config import GATED_ACTIVATIONS, PRESETS  # noqa: E402
from rosetta.special_tokens import BOS_ID, EOS_ID, PAD_ID  # noqa: E402
from rosetta.train.losses import label_smoothed_nll  # noqa: E402
from rosetta.train.precision import autocast_for, use_bf16  # noqa: E402

FIRST_WORD = 4  # random ids come from [FIRST_WORD, vocab): past <pad> <s> </s> <unk>

# Dense (no sparsity) bf16 tensor-core peaks, TFLOP/s, from the vendor's data sheets; first match of the name wins.
PEAK_BF16_TFLOPS = (("H100 PCIe", 756.0), ("H100", 989.0), ("H200", 989.0), ("A100", 312.0))

# Defaults per device: a GPU gets ≈ 12.7k target tokens a batch; the CPU a smoke-test size.
DEFAULTS = {"cuda": dict(sentences=384, lengths=(28, 36), vocab=32000),
            "cpu": dict(sentences=8, lengths=(6, 10), vocab=1000)}


def peak_tflops(device_name: str) -> float | None:
    """The peak dense bf16 TFLOP/s of a GPU named ``device_name`` (torch.cuda.get_device_name()), None if unknown."""
    return next((peak for key, peak in PEAK_BF16_TFLOPS if key.lower() in device_name.lower()), None)


def matmul_weights(cfg: ModelConfig) -> tuple[int, int]:
    """(P_src, P_tgt): weights every source token and every target token is multiplied by in one forward pass."""
    d, qk, v = cfg.d_model, cfg.n_heads * cfg.head_dim_k, cfg.n_heads * cfg.head_dim_v
    ffn = (3 if cfg.activation in GATED_ACTIVATIONS else 2) * d * cfg.d_ff
    self_attn = d * (2 * qk + v) + v * d  # W_Q, W_K, W_V, W_O
    p_src = cfg.n_encoder_layers * (self_attn + ffn) + cfg.n_decoder_layers * d * (qk + v)
    p_tgt = cfg.n_decoder_layers * (self_attn + d * qk + v * d + ffn) + d * cfg.tgt_vocab_size
    return p_src, p_tgt


def training_flops(cfg: ModelConfig, src_lengths: list[int], tgt_lengths: list[int]) -> float:
    """Model FLOPs of one training step (forward + backward) over sentences of these lengths (module docstring)."""
    p_src, p_tgt = matmul_weights(cfg)
    pair = cfg.n_heads * (cfg.head_dim_k + cfg.head_dim_v)  # multiply–adds per query–key pair: Q·K and A·V
    le, ld = cfg.n_encoder_layers, cfg.n_decoder_layers
    pairs = sum(le * s * s + ld * (t * t + t * s) for s, t in zip(src_lengths, tgt_lengths))
    return 6.0 * (p_src * sum(src_lengths) + p_tgt * sum(tgt_lengths)) + 6.0 * pair * pairs


def synthetic_batch(rng: random.Random, sentences: int, lengths: tuple[int, int], vocab: int
                    ) -> dict[str, Any]:
    """Random ids: src (B, W) = words + EOS, tgt_in (B, W) = BOS + words, tgt_out (B, W) = words + EOS, all padded
    to W = max length + 1; with the true lengths (EOS / BOS included) for the FLOP count."""
    width = lengths[1] + 1
    tensors = {name: torch.full((sentences, width), PAD_ID, dtype=torch.long) for name in ("src", "tgt_in", "tgt_out")}
    src_lengths, tgt_lengths = [], []
    for i in range(sentences):
        src = [rng.randrange(FIRST_WORD, vocab) for _ in range(rng.randint(*lengths))]
        tgt = [rng.randrange(FIRST_WORD, vocab) for _ in range(rng.randint(*lengths))]
        tensors["src"][i, : len(src) + 1] = torch.tensor(src + [EOS_ID])
        tensors["tgt_in"][i, : len(tgt) + 1] = torch.tensor([BOS_ID] + tgt)
        tensors["tgt_out"][i, : len(tgt) + 1] = torch.tensor(tgt + [EOS_ID])
        src_lengths.append(len(src) + 1)
        tgt_lengths.append(len(tgt) + 1)
    return {**tensors, "src_lengths": src_lengths, "tgt_lengths": tgt_lengths}


def make_step(model: torch.nn.Module, train_model: torch.nn.Module, device: torch.device, precision: str):
    """The Trainer's optimizer step (fused Adam, clipping at 1.0, loss divided by the batch's target tokens)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.9, 0.98), eps=1e-9, fused=True)

    def step(batch: dict[str, Any]) -> None:
        with autocast_for(device, precision):
            logits = train_model(batch["src"], batch["tgt_in"])  # (B, T, V)
            loss, _, _ = label_smoothed_nll(logits, batch["tgt_out"], PAD_ID, 0.1)
        (loss / batch["target_tokens"]).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(preset: str, compiled: bool, args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """Build the preset, run ``args.warmup`` then ``args.steps`` timed steps; tokens/s, TFLOP/s and MFU."""
    v = args.vocab
    cfg = ModelConfig.preset(preset, src_vocab_size=v, tgt_vocab_size=v, share_embeddings=True, tie_output=True)
    torch.manual_seed(0)
    model = Transformer(cfg).to(device).train()
    train_model = torch.compile(model) if compiled else model
    rng = random.Random(0)
    batches = [synthetic_batch(rng, args.sentences, args.lengths, v) for _ in range(args.batches)]
    for b in batches:
        b.update({k: b[k].to(device) for k in ("src", "tgt_in", "tgt_out")}, target_tokens=sum(b["tgt_lengths"]))
    step = make_step(model, train_model, device, args.precision)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for i in range(args.warmup):
        step(batches[i % len(batches)])
    sync(device)
    warmup_s = time.perf_counter() - start
    timed = [batches[(args.warmup + i) % len(batches)] for i in range(args.steps)]
    start = time.perf_counter()
    for b in timed:
        step(b)
    sync(device)
    seconds = time.perf_counter() - start
    flops = sum(training_flops(cfg, b["src_lengths"], b["tgt_lengths"]) for b in timed)
    tgt = sum(b["target_tokens"] for b in timed)
    src = sum(sum(b["src_lengths"]) for b in timed)
    padded = sum(b["tgt_out"].numel() for b in timed)
    result = {
        "preset": preset, "compiled": compiled, "steps": args.steps,
        "precision": "bf16" if use_bf16(device, args.precision) else "fp32",
        "warmup_steps": args.warmup, "warmup_s": warmup_s, "seconds": seconds, "step_ms": 1000 * seconds / args.steps,
        "target_tokens_per_step": tgt / args.steps, "target_tokens_per_s": tgt / seconds,
        "tokens_per_s": (src + tgt) / seconds, "target_padding": 1 - tgt / padded,
        "parameters": sum(p.numel() for p in model.parameters()), "flops_per_step": flops / args.steps,
        "tflops_per_s": flops / seconds / 1e12,
        "mfu": flops / seconds / (args.peak_tflops * 1e12) if args.peak_tflops else None,
    }
    if device.type == "cuda":
        result["peak_memory_gb"] = torch.cuda.max_memory_allocated(device) / 2**30
    del model, train_model, step, batches, timed
    gc.collect()
    if compiled:
        torch._dynamo.reset()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return result


def environment(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    env = {"python": platform.python_version(), "torch": torch.__version__, "device": device.type,
           "peak_tflops": args.peak_tflops, "peak_source": args.peak_source}
    if device.type == "cuda":
        env.update(gpu=torch.cuda.get_device_name(device), cuda=torch.version.cuda)
    return env


def table(runs: list[dict[str, Any]]) -> str:
    """Markdown: one row per (preset, eager | compiled)."""
    rows = ["| preset | mode | target tok/s | src+tgt tok/s | step ms | TFLOP/s | MFU | warm-up s |",
            "|---|---|---|---|---|---|---|---|"]
    for r in runs:
        if "error" in r:
            rows.append(f"| {r['preset']} | {'compiled' if r['compiled'] else 'eager'} | failed: {r['error']} |"
                        " | | | | |")
            continue
        mfu = "–" if r["mfu"] is None else f"{100 * r['mfu']:.1f}%"
        rows.append(f"| {r['preset']} | {'compiled' if r['compiled'] else 'eager'} | "
                    f"{r['target_tokens_per_s']:,.0f} | {r['tokens_per_s']:,.0f} | {r['step_ms']:.1f} | "
                    f"{r['tflops_per_s']:.3g} | {mfu} | {r['warmup_s']:.0f} |")
    return "\n".join(rows)


def parse_lengths(text: str) -> tuple[int, int]:
    low, high = (int(x) for x in text.split(","))
    if not 1 <= low <= high:
        raise argparse.ArgumentTypeError(f"--lengths wants LOW,HIGH with 1 ≤ LOW ≤ HIGH, got {text!r}")
    return low, high


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--preset", default="base,big", help=f"comma-separated presets ({', '.join(PRESETS)})")
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    p.add_argument("--steps", type=int, default=10, help="timed steps")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (compilation happens there)")
    p.add_argument("--compile", choices=["auto", "both", "on", "off"], default="auto",
                   help="eager and/or torch.compile (auto: both on cuda, eager on cpu)")
    p.add_argument("--sentences", type=int, help="sentences a batch (cuda 384, cpu 8)")
    p.add_argument("--lengths", type=parse_lengths, help="LOW,HIGH words a sentence (cuda 28,36; cpu 6,10)")
    p.add_argument("--vocab", type=int, help="shared vocabulary (cuda 32000, cpu 1000)")
    p.add_argument("--batches", type=int, default=3, help="distinct batches, cycled")
    p.add_argument("--precision", choices=["bf16", "fp32", "auto"], help="autocast (cuda bf16; cpu auto)")
    p.add_argument("--peak-tflops", type=float, help="peak dense bf16 TFLOP/s (default: from the GPU's name)")
    p.add_argument("--json", type=Path, help="write the results here (rewritten after each run)")
    args = p.parse_args(argv)
    unknown = [name for name in args.preset.split(",") if name not in PRESETS]
    if unknown:
        p.error(f"unknown preset(s) {', '.join(unknown)}; choose from {', '.join(PRESETS)}")
    if args.steps < 1 or args.warmup < 0:
        p.error("--steps must be ≥ 1 and --warmup ≥ 0")
    for key, value in DEFAULTS[args.device].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.precision = args.precision or ("bf16" if args.device == "cuda" else "auto")
    args.modes = {"both": [False, True], "on": [True], "off": [False],
                  "auto": [False, True] if args.device == "cuda" else [False]}[args.compile]
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("mfu.py: no CUDA device (use --device cpu for a smoke test)")
    args.peak_source = "--peak-tflops" if args.peak_tflops else None
    if args.peak_tflops is None and device.type == "cuda":
        args.peak_tflops = peak_tflops(torch.cuda.get_device_name(device))
        args.peak_source = "table" if args.peak_tflops else None
    if args.peak_tflops is None:
        print("mfu.py: peak FLOP/s of this device unknown; MFU left out (give --peak-tflops)", file=sys.stderr)
    settings = {k: getattr(args, k) for k in ("preset", "steps", "warmup", "sentences", "lengths", "vocab",
                                               "batches", "precision")}
    report: dict[str, Any] = {"environment": environment(args, device), "settings": settings, "runs": []}
    for compiled in args.modes:  # eager first: its numbers are in even if compilation runs out of time
        for preset in args.preset.split(","):
            try:
                run = measure(preset, compiled, args, device)
            except Exception as exc:  # e.g. out of memory, a compiler failure: report it, go on
                run = {"preset": preset, "compiled": compiled, "error": f"{type(exc).__name__}: {exc}"[:300]}
            report["runs"].append(run)
            print(f"run: {json.dumps(run)}", file=sys.stderr, flush=True)
            if args.json:
                args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(table(report["runs"]))
    return report


if __name__ == "__main__":
    main()
