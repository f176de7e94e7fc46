"""Rosetta's ViT against Hugging Face's on the same weights: training-step and inference speed, side by side.

    python benchmarks/vit_speed.py [--preset vit-tiny] [--batch 128] [--repeats 7] [--threads 2]

Both models hold the same weights (``hf_vit_state_dict``: the export tests/test_vit.py proves equal to ≤ 1e-5).
A training step is forward + cross-entropy + backward + fused AdamW, as the Trainer runs it; inference is a
forward pass under ``inference_mode``. Each repeat times every system once, in turn (interleaved), on the same
batch; the report is the median images/s per system and Rosetta's ratio to Hugging Face.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from rosetta.models.vit import ViT, hf_vit_config, hf_vit_state_dict, vit_config


def systems(preset: str) -> dict[str, torch.nn.Module]:
    from transformers import ViTConfig, ViTForImageClassification
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    config, image = vit_config(preset)
    torch.manual_seed(0)
    ours = ViT(config, image, num_labels=10)
    with tempfile.TemporaryDirectory() as tmp:  # transformers maps the checkpoint names on from_pretrained
        ViTConfig(**hf_vit_config(ours)).save_pretrained(tmp)
        save_file(hf_vit_state_dict(ours), f"{tmp}/model.safetensors")
        hf = ViTForImageClassification.from_pretrained(tmp)
    with torch.no_grad():  # the same weights: the same logits
        x = torch.randn(2, image.channels, image.image_size, image.image_size)
        assert torch.allclose(ours.eval()(x), hf.eval()(pixel_values=x).logits, atol=1e-5)
    return {"rosetta": ours, "hf-vit": lambda x, m=hf: m(pixel_values=x).logits, "_hf_module": hf}


def timed(fn, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="vit-tiny")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=10, help="steps per timing")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    made = systems(args.preset)
    modules = {"rosetta": made["rosetta"], "hf-vit": made["_hf_module"]}
    calls = {"rosetta": made["rosetta"], "hf-vit": made["hf-vit"]}
    image = made["rosetta"].image
    x = torch.randn(args.batch, image.channels, image.image_size, image.image_size)
    y = torch.randint(0, 10, (args.batch,))
    optimizers = {name: torch.optim.AdamW(m.parameters(), lr=1e-4, fused=True) for name, m in modules.items()}

    def train_step(name):
        def step():
            loss = F.cross_entropy(calls[name](x), y)
            loss.backward()
            optimizers[name].step()
            optimizers[name].zero_grad(set_to_none=True)
        return step

    def infer(name):
        def run():
            with torch.inference_mode():
                calls[name](x)
        return run

    results: dict[str, dict[str, list[float]]] = {"train": {n: [] for n in calls}, "inference": {n: [] for n in calls}}
    for name in calls:  # warm-up
        modules[name].train()
        train_step(name)()
    for _ in range(args.repeats):
        for name in calls:
            modules[name].train()
            results["train"][name].append(args.batch / timed(train_step(name), args.steps))
            modules[name].eval()
            results["inference"][name].append(args.batch / timed(infer(name), args.steps))
    report = {phase: {name: round(statistics.median(v), 1) for name, v in per.items()}
              for phase, per in results.items()}
    for phase in report:
        report[phase]["rosetta / hf-vit"] = round(report[phase]["rosetta"] / report[phase]["hf-vit"], 3)
    report["setup"] = {"preset": args.preset, "batch": args.batch, "threads": args.threads, "torch": torch.__version__}
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
