"""A tiny trained Vision Transformer on disk, for the rollout, classify, attention, evaluate, server and browser
tests.

scikit-learn's 8×8 digits (bundled, no download): a ViT of 2 layers × 4 heads, d_model 32, 2×2-pixel patches
(a 4 × 4 grid, 17 positions with [CLS]), trained for 200 Adam steps of 256 images (a few seconds on one core)
to about 90% on the digits test split, then saved by ``rosetta.checkpoint.save_checkpoint`` with the
config.json that ``rosetta.tasks.image_classification`` writes, and read back by ``load_any`` like a real run.

    from tiny_vit import tiny_vit_dir
    loaded = load_any(tiny_vit_dir())     # built once per test process
"""

from __future__ import annotations

import atexit
import io
import shutil
import tempfile
from pathlib import Path

import torch

IMAGE = dict(image_size=8, patch_size=2, channels=1, mean=(0.3,), std=(0.37,))
SIZES = dict(d_model=32, n_heads=4, d_ff=64, n_encoder_layers=2, dropout=0.0)


def build_tiny_vit(directory: str | Path, steps: int = 200, seed: int = 0) -> Path:
    import torch.nn.functional as F

    from rosetta.checkpoint import save_checkpoint
    from rosetta.data.images import as_nchw, load_images, normalize
    from rosetta.models.vit import ViT, vit_config

    images, labels = load_images("digits", "train")
    config, image = vit_config(**IMAGE, **SIZES)
    x, y = normalize(as_nchw(images), image.mean, image.std), torch.from_numpy(labels)
    torch.manual_seed(seed)
    model = ViT(config, image, 10)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(seed)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(steps):
            batch = torch.randint(0, len(x), (256,), generator=generator)
            loss = F.cross_entropy(model(x[batch]), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    finally:
        torch.set_num_threads(before)
    model.eval()
    info = {"family": "vit", "model": config.to_dict(), "image": image.to_dict(), "num_labels": 10,
            "labels": [str(i) for i in range(10)], "corpus": "digits", "valid_size": 0, "data_seed": 0}
    return save_checkpoint(directory, model, info)


_CACHE: dict[int, Path] = {}


def tiny_vit_dir(steps: int = 200) -> Path:
    """``build_tiny_vit`` once per test process; the directory is removed when the process exits."""
    if steps not in _CACHE:
        root = Path(tempfile.mkdtemp(prefix="rosetta-vit-"))
        atexit.register(shutil.rmtree, root, ignore_errors=True)
        _CACHE[steps] = build_tiny_vit(root / "model", steps=steps)
    return _CACHE[steps]


def digit_picture(index: int = 0, split: str = "test", scale: int = 1, mode: str = "L"):
    """A digits image as a PIL picture (light on black, as the model was trained), ``scale`` times larger,
    in ``mode``; and its label."""
    from PIL import Image

    from rosetta.data.images import load_images

    images, labels = load_images("digits", split)
    picture = Image.fromarray(images[index]).resize((8 * scale, 8 * scale), Image.Resampling.NEAREST)
    return picture.convert(mode), int(labels[index])


def encode(picture, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, format=fmt)
    return buffer.getvalue()

