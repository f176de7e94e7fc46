"""Image classification as a training task (``[data] task = "image-classification"``), e.g. MNIST digits.

    uint8 images (N, H, W) ─ [random shift by ≤ k pixels] ─ (x / 255 − mean) / std ─ (B, C, S, S)
        ─ ViT ─ logits (B, labels) ─ cross-entropy (label smoothing from the recipe);  metric: accuracy

Data: ``data.corpus`` names an image corpus of ``rosetta.data.images`` (``mnist``, or scikit-learn's ``digits``).
Neither has a validation split, so ``data.valid_size`` training images (default 5,000), drawn with
``data.seed``, are held out as validation and never trained on; ``evaluate`` reports accuracy on them. The test
split is not touched during training (measure it afterwards on the final model). ``data.max_train_examples``
keeps only the first N of the remaining training images. ``data.augment_shift = k`` translates every training
image by a random offset in [−k, k]² pixels (zero fill), drawn afresh each time the image is used.

Model: ``[model] preset`` is a ViT preset (``rosetta.models.vit.VIT_PRESETS``, e.g. "vit-tiny"); any other
[model] key overrides a ModelConfig or ImageSpec field (``patch_size = 7``, ``n_encoder_layers = 6``, …).
Images of another size than the model's are resized once, when loaded (grey repeated to 3 channels for an RGB model).
Or ``[model] pretrained`` = a Hugging Face ViT directory (``google/vit-base-patch16-224``): its weights, mean and
std; ``image_size`` the only [model] key (positions interpolated); a new head when its labels are not the corpus's.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rosetta.data.batching import BatchStream
from rosetta.data.images import as_nchw, holdout, load_images, normalize, random_shift, resize_images
from rosetta.hub.runs import start_from
from rosetta.models.vit import ImageSpec, ViT, vit_config
from rosetta.train.recipe import Recipe

VALID_SIZE = 5000  # MNIST: 55,000 train / 5,000 valid, as Keras' and TensorFlow's tutorials carve it
EVAL_BATCH = 500
LABEL_NAMES = {"mnist": [str(i) for i in range(10)], "digits": [str(i) for i in range(10)]}


def prepare_images(images: np.ndarray, image: ImageSpec) -> torch.Tensor:
    """uint8 arrays (N, H, W[, C]) → uint8 tensor (N, C, S, S) as ``image`` wants: grey repeated to 3 channels
    if needed, resized to S if the corpus's size differs."""
    x = as_nchw(images)
    if x.shape[1] != image.channels:
        if x.shape[1] != 1:
            raise ValueError(f"the images have {x.shape[1]} channels, the model reads {image.channels}")
        x = x.expand(-1, image.channels, -1, -1).contiguous()
    return resize_images(x, image.image_size)


class ImageBatches:
    """Shuffled epochs of (images (B, C, S, S) float32, labels (B,)) batches, resumable, DDP-aware.

    The order is a ``BatchStream`` over image indices (seeded by (seed, epoch), sharded over ranks); its
    state_dict is the position. The random shifts of a batch come from a generator seeded by (seed, rank,
    epoch, batch index), so a resumed run draws the same shifts as an uninterrupted one."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, image: ImageSpec, batch_size: int, seed: int,
                 shift: int = 0, rank: int = 0, world_size: int = 1):
        self.images, self.labels, self.image, self.shift, self.seed = images, labels, image, shift, seed
        self.rank = rank
        self.order = BatchStream(range(len(images)), max_tokens=None, max_sentences=batch_size, seed=seed,
                                 rank=rank, world_size=world_size, lengths=lambda _: 1)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for indices in self.order:
            index = torch.as_tensor(indices)
            x = self.images[index]  # (B, C, S, S) uint8
            if self.shift:
                key = ((self.seed * 1_000_003 + self.order.epoch) * 1_000_003 + self.order.index) * 64 + self.rank
                x = random_shift(x, self.shift, torch.Generator().manual_seed(key))
            yield normalize(x, self.image.mean, self.image.std), self.labels[index]

    def __len__(self) -> int:
        return len(self.order)

    def state_dict(self) -> dict[str, int]:
        return self.order.state_dict()

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.order.load_state_dict(state)


class ImageClassificationTask:
    """Everything the Trainer needs to train a ViT classifier (see rosetta.train.Task)."""

    metric = "accuracy"
    higher_is_better = True

    def __init__(self, recipe: Recipe, data_dir: Path | None = None, run_dir: Path | None = None,
                 resume: bool = False):
        self.recipe = recipe
        d, m = recipe.data, recipe.model
        if not d.corpus:
            raise ValueError("image-classification needs data.corpus: mnist or digits")
        if d.augment_shift < 0:
            raise ValueError(f"data.augment_shift must be ≥ 0, got {d.augment_shift}")
        self.start = self._start() if m.pretrained else None
        if self.start is None:
            self.config, self.image = vit_config(m.preset, **m.overrides)
        images, labels = load_images(d.corpus, "train", data_dir)
        train_index, valid_index = holdout(len(images), d.valid_size or VALID_SIZE, d.seed)
        train_index = train_index[: d.max_train_examples]
        self.num_labels = int(labels.max()) + 1
        if labels.min() < 0:
            raise ValueError(f"labels must be 0 … n-1, found {labels.min()}")
        self.labels = LABEL_NAMES.get(d.corpus, [str(i) for i in range(self.num_labels)])
        x = prepare_images(images, self.image)  # (N, C, S, S) uint8, all training images
        y = torch.from_numpy(labels)
        self.train_images, self.train_labels = x[train_index], y[train_index]
        self.valid_images, self.valid_labels = x[valid_index], y[valid_index]
        torch.manual_seed(recipe.train.seed)
        self.model = ViT(self.config, self.image, self.num_labels) if self.start is None else self._pretrained()
        self.device = torch.device("cpu")

    def _start(self):
        """[model] pretrained = a Hugging Face ViT directory: its model and image spec, at [model] image_size
        if given (its learned positions interpolated to the new patch grid: ``ViT.resize_positions``)."""
        m = self.recipe.model
        overrides = dict(m.overrides)
        image_size = overrides.pop("image_size", None)
        start = start_from(m.pretrained, "vit", self.recipe.data.task, overrides, m.load_weights)
        if image_size is not None:
            start.model.resize_positions(int(image_size))
        self.config, self.image = start.model.config, start.model.image
        return start

    def _pretrained(self) -> ViT:
        """The checkpoint's ViT; a new head (ViT's zero init) when its labels are not the corpus's."""
        model = self.start.model
        if model.num_labels != self.num_labels:
            model.num_labels, model.head = self.num_labels, nn.Linear(model.head.in_features, self.num_labels)
            nn.init.zeros_(model.head.weight)
            nn.init.zeros_(model.head.bias)
        return model

    def to(self, device: torch.device) -> None:
        self.device = device
        self.model.to(device)

    def batches(self, rank: int, world_size: int) -> ImageBatches:
        tr = self.recipe.train
        return ImageBatches(self.train_images, self.train_labels, self.image, tr.batch_size, tr.seed,
                            self.recipe.data.augment_shift, rank, world_size)

    def count_tokens(self, batch: tuple[torch.Tensor, torch.Tensor]) -> int:
        return len(batch[1])  # the loss is a mean over images (the Trainer's "tokens" are images here)

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor], label_smoothing: float):
        images, labels = batch[0].to(self.device), batch[1].to(self.device)
        logits = model(images).float()  # (B, labels), through the Trainer's wrapper (DDP) if any
        loss = F.cross_entropy(logits, labels, label_smoothing=label_smoothing, reduction="sum")
        with torch.no_grad():
            nll = F.cross_entropy(logits, labels, reduction="sum")
        return loss, nll, len(labels)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, full: bool) -> dict[str, float]:
        """Accuracy and mean cross-entropy on the held-out validation images (all of them, every time)."""
        correct, nll_sum = 0, 0.0
        for start in range(0, len(self.valid_labels), EVAL_BATCH):
            x = normalize(self.valid_images[start : start + EVAL_BATCH], self.image.mean, self.image.std)
            labels = self.valid_labels[start : start + EVAL_BATCH].to(self.device)
            logits = model(x.to(self.device)).float()
            correct += int((logits.argmax(-1) == labels).sum())
            nll_sum += float(F.cross_entropy(logits, labels, reduction="sum"))
        n = max(len(self.valid_labels), 1)
        return {"accuracy": correct / n, "valid_loss": nll_sum / n}

    def model_config(self) -> dict[str, Any]:
        d = self.recipe.data
        start = self.start.entry if self.start else {}
        return {"family": "vit", "task": "image-classification", "model": self.config.to_dict(),
                "image": self.image.to_dict(),
                "num_labels": self.num_labels, "labels": self.labels, "corpus": d.corpus,
                "valid_size": len(self.valid_labels), "data_seed": d.seed, **start}

    def write_tokenizers(self, directory: Path) -> None:
        """Nothing to write: a ViT reads pixels, not tokens (config.json's "image" says how to prepare them; a
        Hugging Face start's preprocessor_config.json is copied beside it)."""
        if self.start:
            self.start.write_tokenizers(directory)
