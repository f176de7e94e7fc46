"""Run by tests/test_distributed.py under torchrun (2 processes, gloo) or alone (1 process, accumulation 2)."""

import sys
from pathlib import Path

import torch
from copy_task import CopyTask

from rosetta.train import Trainer
from rosetta.train.recipe import Recipe, TrainSection

out, accum, max_steps = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(1)
recipe = Recipe(train=TrainSection(precision="fp32", max_steps=max_steps,
                                   lr=3e-3, warmup_steps=3, eval_every=0, save_every=4,
                                   bleu_every=0, log_every=2, accum_steps=accum, seed=3, device="cpu"))
# No dropout (ranks would draw other masks than one process) and no biases (a key bias has a zero
# gradient in exact arithmetic, so Adam turns its rounding noise into full-size steps).
Trainer(recipe, CopyTask(seed=0, dropout=0.0, bias=False), out, progress=False).fit(resume=len(sys.argv) > 4)
