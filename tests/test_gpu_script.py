"""benchmarks/gpu.sh and its helpers, on the CPU: arguments, the dry-run plan, time-boxing, a tiny MFU run, and
the MFU formula against PyTorch's own FLOP counter (a few seconds in all)."""

import importlib.util
import json
import random
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
GPU_SH = ROOT / "benchmarks" / "gpu.sh"


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"rosetta_bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def report():
    return load("gpu_report")


@pytest.fixture(scope="module")
def mfu():
    return load("mfu")


def gpu_sh(*args: str) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "PYTHON": sys.executable, "HOME": str(Path.home())}
    return subprocess.run(["bash", str(GPU_SH), *args], capture_output=True, text=True, env=env, timeout=60)


def planned(stdout: str) -> dict[str, list[str]]:
    """The dry run's "[part] step" headers → the argv of the command under each."""
    plan, lines = {}, stdout.splitlines()
    for header, command in zip(lines, lines[1:]):
        if header.startswith("["):
            plan[header.split(" (")[0]] = shlex.split(command)
    return plan


def test_help_names_every_option_and_part():
    proc = gpu_sh("--help")
    assert proc.returncode == 0, proc.stderr
    for word in ("--only", "--minutes", "--dry-run", "--device", "--peak-tflops", "--out", "mfu", "decode", "bleu"):
        assert word in proc.stdout


def test_dry_run_prints_the_commands_of_the_three_parts(tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    proc = gpu_sh("--dry-run", "--minutes", "3", "--out", str(out), "--work", str(work))
    assert proc.returncode == 0, proc.stderr
    plan = planned(proc.stdout)
    assert list(plan) == ["[mfu] mfu", "[decode] decode", "[bleu] train", "[bleu] evaluate"]
    for argv in plan.values():  # time-boxed, with the python given by $PYTHON
        assert argv[:2] == ["timeout", "--kill-after=10"] and float(argv[2]) > 0 and argv[3] == sys.executable
    mfu = plan["[mfu] mfu"]
    assert mfu[4] == "benchmarks/mfu.py" and mfu[mfu.index("--preset") + 1] == "base,big"
    assert mfu[mfu.index("--device") + 1] == "cuda" and mfu[mfu.index("--json") + 1] == str(out / "mfu.json")
    decode = " ".join(plan["[decode] decode"][4:])
    assert decode.startswith("benchmarks/peers.py --only decode --device cuda --config base")
    train = " ".join(plan["[bleu] train"][4:])
    assert train.startswith(f"-m rosetta.cli train configs/multi30k-de-en.toml --out {work / 'multi30k'}")
    assert "--set train.max_minutes=3 --set train.device=cuda" in train
    evaluate = " ".join(plan["[bleu] evaluate"][4:])
    assert evaluate.startswith(f"-m rosetta.cli evaluate --model {work / 'multi30k' / 'model'} --corpus multi30k "
                               "--split test --device cuda --json")
    assert not out.exists() and not work.exists()  # a dry run makes nothing


def test_only_picks_parts_in_run_order(tmp_path):
    proc = gpu_sh("--dry-run", "--only", "bleu,mfu", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert list(planned(proc.stdout)) == ["[mfu] mfu", "[bleu] train", "[bleu] evaluate"]


def test_unknown_part_is_a_clear_error():
    proc = gpu_sh("--only", "mfu,speed", "--dry-run")
    assert proc.returncode == 2
    assert "unknown part(s) 'speed' in --only; choose from mfu, decode, bleu" in proc.stderr
    assert proc.stdout == ""


def test_a_step_that_times_out_or_fails_leaves_the_others_running(report, tmp_path, monkeypatch):
    monkeypatch.setattr(report, "MIN_STEP_S", 0)
    py = sys.executable
    steps = [report.Step("mfu", "mfu", [py, "-c", "import time; time.sleep(30)"], cap=1, need=0),
             report.Step("bleu", "train", [py, "-c", "raise SystemExit(3)"], cap=20, need=0),
             report.Step("bleu", "evaluate", [py, "-c", "print('never')"], cap=20, need=0),
             report.Step("decode", "decode", [py, "-c", "print('decoded')"], cap=20, need=0)]
    args = report.parse_args(["--device", "cpu", "--budget-s", "100", "--work", str(tmp_path)])
    results = report.run_plan(steps, args)
    assert results["mfu"]["status"] == "timed out after 1 s"
    assert results["bleu"]["steps"]["train"]["status"] == "failed (exit 3)"
    assert results["bleu"]["steps"]["evaluate"]["status"].startswith("skipped")
    assert results["decode"]["status"] == "ok" and results["decode"]["steps"]["decode"]["tail"] == "decoded\n"


def test_bleu_numbers_come_from_the_run_folder(report, tmp_path):
    run = tmp_path / "multi30k"
    run.mkdir()
    records = [{"kind": "train", "step": 50, "tokens_per_s": 1234.0},
               {"kind": "final", "steps": 2000, "train_seconds": 130.2, "final_metrics": {"bleu": 36.5}}]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    tail = 'model loaded\n{"bleu": 35.25, "chrf": 61.0, "beam": 4, "seconds": 3.1}\n'
    results = {"bleu": {"status": "ok", "steps": {"train": {"status": "ok"}, "evaluate": {"status": "ok",
                                                                                         "tail": tail}}}}
    args = report.parse_args(["--minutes", "2", "--work", str(tmp_path)])
    report.collect(results, args)
    row = report.bleu_section(results["bleu"]["result"], args).splitlines()[-1]
    assert row == "| configs/multi30k-de-en.toml for 2 min | 2000 | 130 | 1,234 | 36.50 | 35.25 | 61.00 | 4 |"


def test_peak_flops_by_gpu_name(mfu):
    assert mfu.peak_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert mfu.peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert mfu.peak_tflops("NVIDIA H200") == 989.0
    assert mfu.peak_tflops("NVIDIA A100-SXM4-80GB") == 312.0
    assert mfu.peak_tflops("Tesla T4") is None


@pytest.mark.parametrize("overrides", [{}, {"activation": "swiglu"}, {"n_encoder_layers": 1, "n_decoder_layers": 3},
                                       {"d_k": 8, "d_v": 24}])
def test_flop_formula_matches_torch_flop_counter(mfu, overrides):
    """The module docstring's formula against torch.utils.flop_counter on one forward + backward (no padding,
    so every token is real). return_attention=True runs attention as explicit matmuls, which the counter sees
    (it does not count the CPU's fused attention kernel)."""
    from torch.utils.flop_counter import FlopCounterMode

    from rosetta import ModelConfig, Transformer

    cfg = ModelConfig.preset("tiny", src_vocab_size=50, tgt_vocab_size=60, dropout=0.0, **overrides)
    model = Transformer(cfg)
    batch = mfu.synthetic_batch(random.Random(0), 3, (5, 5), 50)
    batch["src"][0, 3:] = torch.tensor([2, 0, 0])  # one shorter source: padding is not counted …
    batch["src_lengths"][0] = 4
    with FlopCounterMode(display=False) as counter:
        logits, _ = model(batch["src"], batch["tgt_in"], return_attention=True)
        mfu.label_smoothed_nll(logits, batch["tgt_out"], 0, 0.1)[0].backward()
    # … but the counter counts it: the padded source's 2 extra tokens through the encoder and cross K/V, and their
    # query–key pairs (encoder: 6² − 4² per layer; cross-attention: 6 target queries × 2 keys per layer)
    p_src, _ = mfu.matmul_weights(cfg)
    pair = 6 * cfg.n_heads * (cfg.head_dim_k + cfg.head_dim_v)
    padding = 6 * p_src * 2 + pair * (cfg.n_encoder_layers * (36 - 16) + cfg.n_decoder_layers * 6 * 2)
    assert counter.get_total_flops() == mfu.training_flops(cfg, batch["src_lengths"], batch["tgt_lengths"]) + padding


def test_cpu_smoke_run_of_the_mfu_part(report, mfu, tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_report.py"), "--only", "mfu", "--device",
                           "cpu", "--preset", "tiny", "--steps", "2", "--warmup", "1", "--peak-tflops", "0.5",
                           "--out", str(tmp_path / "out"), "--work", str(tmp_path / "work")],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["gpu-report.json", "gpu-report.md", "mfu.json"]
    saved = json.loads((tmp_path / "out" / "gpu-report.json").read_text())
    assert saved["parts"]["mfu"]["status"] == "ok"
    (run,) = saved["parts"]["mfu"]["result"]["runs"]
    assert run["preset"] == "tiny" and run["compiled"] is False and run["steps"] == 2
    assert run["target_tokens_per_s"] > 0 and run["tokens_per_s"] > run["target_tokens_per_s"]
    assert run["mfu"] == pytest.approx(run["flops_per_step"] * 2 / run["seconds"] / 0.5e12)
    assert "| tiny | eager |" in proc.stdout and "## Rosetta GPU readiness" in proc.stdout
    assert (tmp_path / "out" / "gpu-report.md").read_text().strip() == saved["summary_markdown"].strip()
    assert (tmp_path / "work" / "mfu-mfu.log").exists()
