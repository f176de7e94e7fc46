"""The ViT yardstick: Hugging Face's ``ViTForImageClassification`` trained by Rosetta's MNIST recipe, side by side.

    python benchmarks/peer_vit.py configs/mnist-vit.toml --out runs/hf-vit-mnist [--set train.max_minutes=15 …]

Issue 11 asked for timm's ``VisionTransformer`` as the peer. timm hard-requires torchvision, and the PyPI
torchvision wheels are CUDA builds that do not load against the CPU torch wheel this project installs
(``operator torchvision::nms does not exist``), so timm cannot be installed here; Hugging Face's ViT — the
other reference ViT, and the one tests/test_vit.py proves Rosetta's equal to — is the peer instead.

The peer gets everything the Rosetta run gets: the recipe's sizes (``hf_vit_config`` of the recipe's model), the
same seeded images, validation hold-out, 2-pixel shifts and batches (``ImageClassificationTask``), the same loss,
AdamW, schedule, clipping and wall-clock budget (``rosetta.train.Trainer``). Only the model differs. At the end
both are scored on the 10,000 MNIST test images by the same function. Writes OUT/peer_scores.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch import nn

from rosetta.data.images import load_images, normalize
from rosetta.models.vit import ViT, hf_vit_config
from rosetta.tasks.image_classification import ImageClassificationTask, prepare_images
from rosetta.train import Trainer
from rosetta.train.recipe import load_recipe


class HFViT(nn.Module):
    """``ViTForImageClassification`` behind Rosetta's ``forward(images) → logits`` interface."""

    def __init__(self, like: ViT):
        super().__init__()
        from transformers import ViTConfig, ViTForImageClassification
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        self.vit = ViTForImageClassification(ViTConfig(**hf_vit_config(like)))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.vit(pixel_values=images).logits


@torch.no_grad()
def test_accuracy(model: nn.Module, task: ImageClassificationTask, data_dir: Path | None) -> float:
    """Accuracy on the corpus's test split, images prepared exactly as the task prepares its own."""
    images, labels = load_images(task.recipe.data.corpus, "test", data_dir)
    x, y = prepare_images(images, task.image), torch.from_numpy(labels)
    model.eval()
    correct = 0
    for start in range(0, len(y), 500):
        logits = model(normalize(x[start : start + 500], task.image.mean, task.image.std))
        correct += int((logits.argmax(-1) == y[start : start + 500]).sum())
    return correct / len(y)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipe", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    recipe = load_recipe(args.recipe, args.overrides)
    task = ImageClassificationTask(recipe, args.data_dir)
    torch.manual_seed(recipe.train.seed)
    task.model = HFViT(task.model)
    trainer = Trainer(recipe, task, args.out, progress=False)
    start = time.time()
    trainer.fit()
    scores = {"model": "transformers ViTForImageClassification", "steps": trainer.step,
              "train_seconds": round(time.time() - start, 1),
              "parameters": sum(p.numel() for p in task.model.parameters()),
              "test_accuracy": test_accuracy(task.model, task, args.data_dir), "recipe": str(args.recipe)}
    (args.out / "peer_scores.json").write_text(json.dumps(scores, indent=2) + "\n")
    print(json.dumps(scores))
    return scores


if __name__ == "__main__":
    main()
