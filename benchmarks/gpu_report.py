"""One GPU readiness run, in parts, each in its own time-boxed process; a summary table and one JSON at the end.

    mfu     training tokens/s and MFU of the base and big presets, bf16, eager and torch.compile (benchmarks/mfu.py)
    decode  decoding sentences/s on the GPU: Rosetta (fp32, bf16) vs CTranslate2 (float32, bfloat16) and HF Marian
            (benchmarks/peers.py --only decode; the CT2 rows need ctranslate2 built with CUDA)
    bleu    the Multi30k GPU recipe (configs/multi30k-de-en.toml) trained for --minutes, then test2016 BLEU

    benchmarks/gpu.sh                       # the whole run, ≤ 8 min on one H100 / H200 (--budget-s)
    benchmarks/gpu.sh --dry-run             # the commands, nothing run
    benchmarks/gpu.sh --device cpu --preset tiny --only mfu --steps 2      # smoke test

Every part runs under ``timeout`` (its process group is killed when time is up); a part that fails or times out
is reported as such and the run goes on. The parts share one deadline (``--budget-s`` from the start): each gets
its own cap, less whatever the parts after it need. Stdlib only: ``--help`` and ``--dry-run`` need no torch.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("mfu", "decode", "bleu")
MIN_STEP_S = 20  # a step left less time than this is skipped, not started


@dataclass
class Step:
    """One command of a part: ``cap`` seconds at most; ``need`` seconds that earlier steps must leave it."""

    part: str
    name: str
    argv: list[str]
    cap: float
    need: float


def default_data_dir() -> Path:
    """$ROSETTA_DATA, else ../shared/data (the Makefile's), else shared/data in the checkout."""
    if os.environ.get("ROSETTA_DATA"):
        return Path(os.environ["ROSETTA_DATA"])
    for candidate in (ROOT.parent / "shared" / "data", ROOT / "shared" / "data"):
        if candidate.exists():
            return candidate
    return ROOT.parent / "shared" / "data"


def parse_only(text: str) -> list[str]:
    parts = [p.strip() for p in text.split(",") if p.strip()]
    unknown = [p for p in parts if p not in PARTS]
    if unknown or not parts:
        raise argparse.ArgumentTypeError(
            f"unknown part(s) {', '.join(map(repr, unknown)) or '(none given)'} in --only; choose from "
            f"{', '.join(PARTS)} (comma-separated)")
    return [p for p in PARTS if p in parts]  # always in the run order


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="benchmarks/gpu.sh", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--only", type=parse_only, default=list(PARTS), help="parts to run: mfu,decode,bleu (default all)")
    p.add_argument("--minutes", type=float, default=2.0, help="training minutes of the Multi30k recipe (default 2)")
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda", help="cpu: smoke tests only")
    p.add_argument("--preset", default=None, help="MFU presets, comma-separated (cuda: base,big; cpu: tiny)")
    p.add_argument("--steps", type=int, default=10, help="MFU: timed steps per preset and mode (default 10)")
    p.add_argument("--warmup", type=int, default=3, help="MFU: untimed steps first (default 3)")
    p.add_argument("--compile", choices=["auto", "both", "on", "off"], default="auto",
                   help="MFU: eager and/or torch.compile (auto: both on cuda, eager on cpu)")
    p.add_argument("--peak-tflops", type=float, help="peak dense bf16 TFLOP/s (default from the GPU's name: "
                   "H100 SXM / H200 989, H100 PCIe 756, A100 312)")
    p.add_argument("--recipe", type=Path, default=Path("configs/multi30k-de-en.toml"), help="BLEU recipe")
    p.add_argument("--data-dir", type=Path, default=None, help="corpora (default $ROSETTA_DATA or ../shared/data)")
    p.add_argument("--out", type=Path, default=None, help="results folder: 4 small files, the report's JSON among "
                   "them (default $OUT, else --work)")
    p.add_argument("--work", type=Path, default=None, help="scratch folder: the training run, the logs (default a new "
                   "folder in the temp dir)")
    p.add_argument("--budget-s", type=float, default=460,
                   help="seconds for all parts together (default 460: with gpu.sh's set-up, ≤ 8 min)")
    p.add_argument("--dry-run", action="store_true", help="print the commands; run nothing")
    args = p.parse_args(argv)
    if args.minutes <= 0 or args.steps < 1 or args.warmup < 0:
        p.error("--minutes must be > 0, --steps ≥ 1 and --warmup ≥ 0")
    args.preset = args.preset or ("base,big" if args.device == "cuda" else "tiny")
    args.data_dir = args.data_dir or default_data_dir()
    stamp = f"{datetime.datetime.now():%Y%m%d-%H%M%S}-{os.getpid()}"
    args.work = (args.work or Path(tempfile.gettempdir()) / f"rosetta-gpu-{stamp}").resolve()
    args.out = (args.out or (Path(os.environ["OUT"]) if os.environ.get("OUT") else args.work)).resolve()
    return args


def plan(args: argparse.Namespace) -> list[Step]:
    """The commands of the chosen parts, in order, with their caps (s) and what each must be left (s)."""
    py, dev, out = sys.executable, args.device, args.out
    steps = []
    if "mfu" in args.only:
        argv = [py, "benchmarks/mfu.py", "--device", dev, "--preset", args.preset, "--steps", str(args.steps),
                "--warmup", str(args.warmup), "--compile", args.compile, "--json", str(out / "mfu.json")]
        argv += ["--peak-tflops", str(args.peak_tflops)] if args.peak_tflops else []
        steps.append(Step("mfu", "mfu", argv, cap=200, need=60))
    if "decode" in args.only:
        argv = [py, "benchmarks/peers.py", "--only", "decode", "--device", dev,
                "--config", "base" if dev == "cuda" else "mini", "--json", str(out / "peers-decode.json")]
        steps.append(Step("decode", "decode", argv, cap=100, need=50))
    if "bleu" in args.only:
        run_dir = args.work / "multi30k"  # checkpoints: gigabytes, kept out of --out
        train = [py, "-m", "rosetta.cli", "train", str(args.recipe), "--out", str(run_dir),
                 "--set", f"train.max_minutes={args.minutes:g}", "--set", f"train.device={dev}",
                 "--data-dir", str(args.data_dir), "--quiet"]
        evaluate = [py, "-m", "rosetta.cli", "evaluate", "--model", str(run_dir / "model"), "--corpus", "multi30k",
                    "--split", "test", "--device", dev, "--json", "--data-dir", str(args.data_dir)]
        budget = 60 * args.minutes
        steps.append(Step("bleu", "train", train, cap=budget + 90, need=budget + 45))  # + data, final eval, saving
        steps.append(Step("bleu", "evaluate", evaluate, cap=60, need=30))
    return steps


def command_line(step: Step, timeout: float) -> list[str]:
    """``timeout`` runs the command in its own process group and kills the whole group when time is up."""
    return ["timeout", "--kill-after=10", f"{timeout:.0f}", *step.argv]


def run_step(step: Step, timeout: float, log: Path) -> dict[str, Any]:
    """Run one step, its output streamed to the console and to ``log``; status, exit code, seconds, output tail."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))}
    print(f"\n$ {shlex.join(command_line(step, timeout))}", flush=True)
    start, tail = time.perf_counter(), []
    with open(log, "w", encoding="utf-8") as f, subprocess.Popen(
            command_line(step, timeout), cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, errors="replace") as proc:
        for line in proc.stdout:
            print(f"  [{step.part}] {line}", end="", flush=True)
            f.write(line)
            tail = (tail + [line])[-40:]
    rc, seconds = proc.returncode, time.perf_counter() - start
    status = "ok" if rc == 0 else (f"timed out after {timeout:.0f} s" if rc in (124, 137) else f"failed (exit {rc})")
    return {"status": status, "exit_code": rc, "seconds": round(seconds, 1), "log": str(log), "tail": "".join(tail)}


def run_plan(steps: list[Step], args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Run the steps against one deadline; a failed step skips the later steps of its part only."""
    deadline = time.perf_counter() + args.budget_s
    results: dict[str, dict[str, Any]] = {}
    for i, step in enumerate(steps):
        part = results.setdefault(step.part, {"steps": {}})
        timeout = min(step.cap, deadline - time.perf_counter() - sum(s.need for s in steps[i + 1:]))
        if any(r["status"] != "ok" for r in part["steps"].values()):
            part["steps"][step.name] = {"status": "skipped (an earlier step of this part failed)"}
        elif timeout < MIN_STEP_S:
            part["steps"][step.name] = {"status": f"skipped (the {args.budget_s:.0f} s budget is spent)"}
        else:
            if step.name == "train" and (args.work / "multi30k").exists():
                shutil.rmtree(args.work / "multi30k")  # a fresh run, never a resumed one
            part["steps"][step.name] = run_step(step, timeout, args.work / f"{step.part}-{step.name}.log")
        part["status"] = next((r["status"] for r in part["steps"].values() if r["status"] != "ok"), "ok")
    return results


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def collect(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> None:
    """Add each part's numbers (from its JSON, metrics log or last output line) to ``results``, in place."""
    if "mfu" in results:
        results["mfu"]["result"] = read_json(args.out / "mfu.json")  # partial after a time-out: written per run
    if "decode" in results:
        results["decode"]["result"] = read_json(args.out / "peers-decode.json")
    if "bleu" in results:
        records = []
        metrics = args.work / "multi30k" / "metrics.jsonl"
        if metrics.exists():
            records = [json.loads(line) for line in metrics.read_text(encoding="utf-8").splitlines() if line.strip()]
        final = next((r for r in reversed(records) if r.get("kind") == "final"), None)
        speed = next((r["tokens_per_s"] for r in reversed(records) if "tokens_per_s" in r), None)
        test = None
        tail = results["bleu"]["steps"].get("evaluate", {}).get("tail", "")
        for line in reversed(tail.splitlines()):
            if line.startswith("{"):
                test = json.loads(line)
                break
        results["bleu"]["result"] = {"train": final, "tokens_per_s": speed, "test2016": test}


PROBE = """import json, sys
info = {"python": sys.version.split()[0]}
try:
    import torch
    info.update(torch=torch.__version__, cuda=torch.version.cuda, cuda_available=torch.cuda.is_available())
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
except ImportError as e:
    info["torch_error"] = str(e)
try:
    import ctranslate2, transformers
    info.update(ctranslate2=ctranslate2.__version__, transformers=transformers.__version__,
                ct2_cuda_devices=ctranslate2.get_cuda_device_count())
except Exception as e:
    info["ct2_error"] = f"{type(e).__name__}: {e}"
print(json.dumps(info))
"""


def probe_environment() -> dict[str, Any]:
    """torch, CUDA, the GPU, and whether CTranslate2 (and transformers, which converts the model) can use CUDA."""
    proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120)
    env = read_json_text(proc.stdout) or {"probe_error": proc.stderr[-500:]}
    env["date"] = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    return env


def read_json_text(text: str) -> Any:
    try:
        return json.loads(text.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None


def ct2_note(env: dict[str, Any], device: str) -> str:
    if "ct2_error" in env:
        return f"CTranslate2 / transformers not importable ({env['ct2_error']}): the ct2 rows are skipped"
    if device == "cuda" and not env.get("ct2_cuda_devices"):
        return f"CTranslate2 {env['ctranslate2']} sees no CUDA device: the ct2 rows fail to build and are skipped"
    return f"CTranslate2 {env['ctranslate2']}" + (f" on {env['ct2_cuda_devices']} CUDA device(s)"
                                                  if device == "cuda" else " on the CPU")


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def mfu_section(result: dict[str, Any] | None) -> str:
    if not result or not result.get("runs"):
        return "no MFU numbers (see the part's log)"
    s, env = result["settings"], result["environment"]
    rows = []
    for r in result["runs"]:
        mode = "compiled" if r["compiled"] else "eager"
        if "error" in r:
            rows.append([r["preset"], mode, f"failed: {r['error'][:80]}", "", "", "", ""])
            continue
        mfu = "–" if r["mfu"] is None else f"{100 * r['mfu']:.1f}%"
        rows.append([r["preset"], mode, f"{r['target_tokens_per_s']:,.0f}", f"{r['tokens_per_s']:,.0f}",
                     f"{r['step_ms']:.1f}", f"{r['tflops_per_s']:.3g}", mfu])
    precision = result["runs"][0].get("precision", s["precision"])
    head = (f"Training ({precision}, fused attention): {s['sentences']} sentences × {s['lengths'][0]}–"
            f"{s['lengths'][1]} words a batch (≈ {result['runs'][0].get('target_tokens_per_step', 0):,.0f} target "
            f"tokens), vocabulary {s['vocab']}, {s['steps']} timed steps after {s['warmup']}; peak "
            f"{env.get('peak_tflops') or '?'} TFLOP/s ({env.get('peak_source') or 'unknown'})")
    return head + "\n\n" + table(["preset", "mode", "target tok/s", "src+tgt tok/s", "step ms", "TFLOP/s", "MFU"],
                                 rows)


def decode_section(result: dict[str, Any] | None, note: str) -> str:
    if not result or "decoding_sentences_per_s" not in result:
        return f"no decoding numbers (see the part's log); {note}"
    sents, work = result["decoding_sentences_per_s"], result["workload"]
    refs = [name for name in sents if name.startswith("ct2")]
    rows = []
    for name, modes in sents.items():
        row = [name] + [f"{modes[m]['median']:,.1f}" if m in modes else "–" for m in ("greedy", "beam")]
        for ref in refs:
            row.append(" / ".join(f"{modes[m]['median'] / sents[ref][m]['median']:.2f}×"
                                  if m in modes and m in sents[ref] else "–" for m in ("greedy", "beam")))
        rows.append(row)
    head = (f"Decoding ({result['environment'].get('config')} model, random weights): {work['decode_sentences']} "
            f"sentences → exactly {work['out_len']} tokens, median of {work['decode_repeats']} rounds; {note}")
    header = ["system", "greedy sent/s", f"beam-{work['beam_size']} sent/s"] + [f"× {r} (greedy / beam)" for r in refs]
    return head + "\n\n" + table(header, rows)


def bleu_section(result: dict[str, Any] | None, args: argparse.Namespace) -> str:
    result = result or {}
    train, test = result.get("train") or {}, result.get("test2016") or {}
    valid, speed = train.get("final_metrics", {}), result.get("tokens_per_s")

    def num(value: Any, fmt: str) -> str:
        return "–" if value is None else format(value, fmt)

    rows = [[f"{args.recipe} for {args.minutes:g} min", num(train.get("steps"), "d"),
             num(train.get("train_seconds"), ".0f"), num(speed, ",.0f"), num(valid.get("bleu"), ".2f"),
             num(test.get("bleu"), ".2f"), num(test.get("chrf"), ".2f"), num(test.get("beam"), "d")]]
    return table(["recipe", "steps", "s (evals included)", "target tok/s (last log)", "valid BLEU (greedy)",
                  "test2016 BLEU", "test2016 chrF", "beam"], rows)


def summary(results: dict[str, dict[str, Any]], env: dict[str, Any], args: argparse.Namespace,
            elapsed: float) -> str:
    """The final markdown block: one status line per part, then each part's table."""
    gpu = env.get("gpu", args.device)
    lines = [f"## Rosetta GPU readiness — {gpu}, torch {env.get('torch')}, CUDA {env.get('cuda')}, {env['date']}",
             "", table(["part", "status", "seconds"], [
                 [part, r["status"], f"{sum(s.get('seconds', 0) for s in r['steps'].values()):.0f}"]
                 for part, r in results.items()]), ""]
    if "mfu" in results:
        lines += ["### Training throughput and MFU", "", mfu_section(results["mfu"].get("result")), ""]
    if "decode" in results:
        lines += ["### Decoding on the GPU vs CTranslate2", "",
                  decode_section(results["decode"].get("result"), ct2_note(env, args.device)), ""]
    if "bleu" in results:
        lines += ["### Multi30k de→en, test2016", "", bleu_section(results["bleu"].get("result"), args), ""]
    lines.append(f"(all parts: {elapsed:.0f} s)")
    return "\n".join(lines)


def print_plan(steps: list[Step], args: argparse.Namespace) -> None:
    print(f"# dry run: {len(steps)} command(s), device {args.device}, budget {args.budget_s:.0f} s, "
          f"out {args.out}, work {args.work}")
    for step in steps:
        print(f"\n[{step.part}] {step.name} (at most {step.cap:.0f} s)")
        print("  " + shlex.join(command_line(step, step.cap)))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    steps, out = plan(args), args.out
    if args.dry_run:
        print_plan(steps, args)
        return 0
    out.mkdir(parents=True, exist_ok=True)
    args.work.mkdir(parents=True, exist_ok=True)
    env = probe_environment()
    print(f"environment: {json.dumps(env)}", flush=True)
    if args.device == "cuda" and not env.get("cuda_available"):
        why = env.get("torch_error") or "torch.cuda.is_available() is False"
        print(f"gpu_report: no CUDA device for {sys.executable} ({why}); --device cpu runs the smoke test",
              file=sys.stderr)
        return 2
    start = time.perf_counter()
    results = run_plan(steps, args)
    collect(results, args)
    shutil.rmtree(args.work / "multi30k" / "checkpoints", ignore_errors=True)  # OUT/model stays
    elapsed = time.perf_counter() - start
    text = summary(results, env, args, elapsed)
    print("\n" + text)
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    report = {"environment": env, "settings": settings, "elapsed_s": round(elapsed, 1),
              "commands": {f"{s.part}/{s.name}": shlex.join(s.argv) for s in steps}, "parts": results,
              "summary_markdown": text}
    (out / "gpu-report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (out / "gpu-report.md").write_text(text + "\n", encoding="utf-8")
    print(f"\nwrote {out / 'gpu-report.json'} and gpu-report.md; logs and the trained model in {args.work}")
    return 0 if all(r["status"] == "ok" for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
