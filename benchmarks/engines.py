"""One trained translation model on every engine, side by side: size on disk, test BLEU (beam 4, greedy) and
sentences/s (batch 64 and batch 1) for PyTorch fp32 / bf16 / int8, ONNX Runtime fp32 / int8 and CTranslate2
fp32 / int8, all with the same thread count.

    flock /tmp/rosetta-timed.lock .venv/bin/python benchmarks/engines.py --model runs/tatoeba-en-zh \\
        --corpus tatoeba-en-zh --json benchmarks/results/engines-tatoeba.json

What is measured (each engine loaded once, warmed up on a few sentences first):
* BLEU beam 4 and greedy on the whole test split (``--limit`` to cut it), decoded at batch 64; the time of those
  two passes gives sentences/s at batch 64 (beam 4 and greedy).
* sentences/s at batch 1: greedy, one sentence per call, on the first ``--batch1`` test sentences.
* size on disk: the model directory (weights + tokenizers) or the export directory; PyTorch int8 is quantised
  when loaded (``rosetta.load(..., int8=True)``), so its row gives the bytes of the quantised weights in memory.
* PyTorch bf16: ``rosetta.load(..., precision="bf16")`` (bf16 weights, packed for oneDNN), only where the CPU
  computes bf16 natively (AVX-512 BF16 / AMX), else skipped.

Other models of the same task — the distilled and the pruned students — join the same table as PyTorch fp32
rows with ``--extra LABEL=RUN`` (repeatable), measured in the same run on the same sentences:

    ... --extra "distilled small=runs/distill-small" --extra "pruned 25 %=runs/teacher-pruned"

Exports are written under ``--exports`` (default: runs/engines/<model name>) and reused by later runs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

import rosetta
from rosetta import checkpoint as ckpt
from rosetta.compress.export import directory_size, export_model
from rosetta.hardware import cpu_has_native_bf16
from rosetta.tasks import load_eval_pairs
from rosetta.tasks.metrics import score

ENGINES = ("pytorch fp32", "pytorch bf16", "pytorch int8", "onnx fp32", "onnx int8", "ct2 fp32", "ct2 int8")
EXPORTS = {"onnx fp32": ("onnx", None), "onnx int8": ("onnx", "int8"), "ct2 fp32": ("ctranslate2", None),
           "ct2 int8": ("ctranslate2", "int8")}


@dataclass
class Row:
    engine: str
    megabytes: float
    parameters_m: float
    bleu_beam4: float
    bleu_greedy: float
    sent_per_s_b64_beam4: float
    sent_per_s_b64_greedy: float
    sent_per_s_b1_greedy: float


def quantised_bytes(model: torch.nn.Module) -> int:
    """Bytes of a dynamically quantised model's weights in memory (packed int8 Linear weights included)."""
    total = 0
    for value in model.state_dict().values():
        tensors = value if isinstance(value, tuple) else (value,)
        total += sum(t.numel() * t.element_size() for t in tensors if torch.is_tensor(t))
    return total


def parameter_count(model_dir: Path) -> int:
    """Parameters of the PyTorch model in ``model_dir`` (its safetensors file; a tied table counted once)."""
    from safetensors import safe_open

    with safe_open(str(model_dir / ckpt.MODEL_FILE), "pt") as f:
        return sum(torch.Size(f.get_slice(k).get_shape()).numel() for k in f.keys())


def load_engine(name: str, model_dir: Path, exports: Path, threads: int):
    """(translator, bytes on disk or in memory, context manager to translate in)."""
    if name in EXPORTS:
        fmt, quantization = EXPORTS[name]
        out = exports / name.replace(" ", "-")
        if not (out / ckpt.CONFIG_FILE).exists():
            export_model(model_dir, out, fmt, quantization)
        return rosetta.load(out, threads=threads), directory_size(out), contextlib.nullcontext()
    if name == "pytorch int8":
        translator = rosetta.load(model_dir, int8=True)
        return translator, quantised_bytes(translator.model), contextlib.nullcontext()
    size = directory_size(model_dir)
    if name == "pytorch bf16":  # a bf16 copy with packed weights (rosetta.decode.for_inference)
        return rosetta.load(model_dir, precision="bf16"), size, contextlib.nullcontext()
    return rosetta.load(model_dir), size, contextlib.nullcontext()


def timed(fn) -> tuple[object, float]:
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def measure(name: str, model_dir: Path, exports: Path, sources: list[str], refs: list[str], tgt_lang: str,
            threads: int, batch1: int, label: str | None = None) -> Row:
    """One row: engine ``name`` on ``model_dir`` (shown as ``label`` when given)."""
    translator, size, context = load_engine(name, model_dir, exports, threads)
    parameters = parameter_count(model_dir)
    with context:
        translator.translate(sources[:8], beam=4)  # warm-up: first-call allocations, graph initialisation
        beam4, t_beam = timed(lambda: translator.translate(sources, beam=4, batch_size=64))
        greedy, t_greedy = timed(lambda: translator.translate(sources, beam=1, batch_size=64))
        _, t_one = timed(lambda: [translator.translate([s], beam=1) for s in sources[:batch1]])
    return Row(label or name, size / 1e6, parameters / 1e6, score(beam4, refs, tgt_lang).bleu,
               score(greedy, refs, tgt_lang).bleu,
               len(sources) / t_beam, len(sources) / t_greedy, batch1 / t_one)


def table(rows: list[Row], reference: str = "pytorch fp32") -> str:
    base = {r.engine: r for r in rows}.get(reference)
    lines = ["| engine | parameters M | size MB | BLEU beam 4 | BLEU greedy | sent/s b64 beam 4 | sent/s b64 greedy | "
             "sent/s b1 greedy |", "|---|---|---|---|---|---|---|---|"]
    speeds = ("sent_per_s_b64_beam4", "sent_per_s_b64_greedy", "sent_per_s_b1_greedy")
    for r in rows:
        cells = [f"{getattr(r, a):.1f}" + (f" ({getattr(r, a) / getattr(base, a):.2f}×)" if base and r is not base
                                           else "") for a in speeds]
        lines.append(f"| {r.engine} | {r.parameters_m:.2f} | {r.megabytes:.1f} | {r.bleu_beam4:.1f} | "
                     f"{r.bleu_greedy:.1f} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in ("torch", "onnxruntime", "ctranslate2", "sacrebleu"):
        with contextlib.suppress(PackageNotFoundError):
            found[package] = version(package)
    return found


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=Path("runs/tatoeba-en-zh"))
    parser.add_argument("--corpus", default="tatoeba-en-zh")
    parser.add_argument("--split", default="test")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--limit", type=int, default=None, help="only the first N test sentences")
    parser.add_argument("--batch1", type=int, default=100, help="sentences decoded one at a time")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument("--exports", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--extra", action="append", default=[], metavar="LABEL=RUN",
                        help="another model of the same task (a student), measured as a PyTorch fp32 row")
    args = parser.parse_args(argv)
    extras = []
    for item in args.extra:
        label, sep, run = item.partition("=")
        if not sep or not label.strip() or not run.strip():
            parser.error(f"--extra {item!r}: expected LABEL=RUN, e.g. 'distilled small=runs/distill-small'")
        extras.append((label.strip(), ckpt.resolve_model_dir(Path(run.strip()))))

    torch.set_num_threads(args.threads)
    model_dir = ckpt.resolve_model_dir(args.model)
    exports = args.exports or Path("runs/engines") / args.model.name
    pairs, tgt_lang = load_eval_pairs(args.corpus, args.split, ckpt.read_config(model_dir), args.data_dir)
    pairs = pairs[: args.limit] if args.limit else pairs
    sources, refs = [s for s, _ in pairs], [t for _, t in pairs]
    rows = []
    for name in [e.strip() for e in args.engines.split(",") if e.strip()]:
        if name not in ENGINES:
            parser.error(f"unknown engine {name!r}; known: {', '.join(ENGINES)}")
        if name == "pytorch bf16" and not cpu_has_native_bf16():
            print("pytorch bf16: skipped (this CPU has no native bf16: it would be emulated, ~30× slower)")
            continue
        rows.append(measure(name, model_dir, exports, sources, refs, tgt_lang, args.threads, args.batch1))
        print(f"{name}: {rows[-1]}", flush=True)
    for label, extra_dir in extras:
        rows.append(measure("pytorch fp32", extra_dir, exports, sources, refs, tgt_lang, args.threads, args.batch1,
                            label=label))
        print(f"{label}: {rows[-1]}", flush=True)
    report = {"model": str(model_dir), "extra": {label: str(d) for label, d in extras}, "corpus": args.corpus,
              "split": args.split, "sentences": len(sources),
              "batch1_sentences": min(args.batch1, len(sources)), "threads": args.threads,
              "versions": versions(), "bleu_signature": score(["a"], ["a"], tgt_lang).bleu_signature,
              "rows": [asdict(r) for r in rows]}
    print(f"\n{args.corpus} {args.split}: {len(sources)} sentences, {args.threads} threads\n")
    print(table(rows))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


if __name__ == "__main__":
    main()
