"""Images: image corpora as arrays, and pictures turned into what a vision model reads.

    load_images(name, split)      uint8 images (N, H, W) or (N, H, W, C) and int64 labels (N,)
        mnist    60,000 train / 10,000 test 28×28 digits, white (255) on black (0); one .npz (registry "mnist"),
                 every array's sha256 checked on each load. No validation split: carve one with ``holdout``.
        digits   scikit-learn's bundled 8×8 digits (1,797 images, no download; needs scikit-learn): a fixed
                 split, 360 images chosen by numpy's default_rng(0) are "test", the other 1,437 "train"
    holdout(n, size, seed)        a seeded validation set carved out of a training split
    as_nchw(images)               uint8 (N, H, W) / (N, H, W, C) array → uint8 tensor (N, C, H, W)
    resize_images(images, size)   uint8 (N, C, H, W) → (N, C, size, size), area/bilinear resampling
    normalize(images, mean, std)  uint8 (N, C, H, W) → float32 (x / 255 − mean) / std, per channel
    random_shift(images, k, gen)  the standard MNIST augmentation: translate by up to k pixels, zero fill
    to_tensor(picture, size, …)   a PIL image / file / bytes of any size and mode → (C, size, size) float32

Stands alone (numpy, torch and Pillow only): the model's image settings (size, channels, mean, std) are passed
in as plain values, e.g. from ``rosetta.models.vit.ImageSpec``.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from rosetta.data.download import ChecksumError, locate
from rosetta.data.registry import get_corpus

DIGITS = "digits"  # scikit-learn's 8×8 digits: bundled with the library, not a registered corpus
DIGITS_TEST = 360
IMAGE_SETS = ("mnist", DIGITS)


# ------------------------------------------------------------------------------------------------ corpora
def array_sha256(array: np.ndarray) -> str:
    """sha256 of an array's raw bytes in C order (independent of how the .npz file holding it was written)."""
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def load_images(name: str, split: str, data_dir: str | Path | None = None, *,
                download: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, H, W) or (N, H, W, C) as uint8 (0 = black) and labels (N,) as int64 of an image corpus split.

    ``mnist``: the registered .npz (local folder first: ``data_dir``, $ROSETTA_DATA, ~/.cache/rosetta/data;
    ``download=True`` fetches it), arrays ``x_<split>`` / ``y_<split>``, each checked against its registered
    sha256 (``ChecksumError`` names the array). ``digits``: scikit-learn's copy (see the module docstring)."""
    if name == DIGITS:
        return _sklearn_digits(split)
    info = get_corpus(name)
    if info.task != "images":
        raise ValueError(f"corpus {name!r} is a {info.task} corpus, not images; image corpora: "
                         f"{', '.join(IMAGE_SETS)}")
    if split not in info.splits:
        hint = " (carve a validation set out of train with holdout())" if split == "valid" else ""
        raise ValueError(f"corpus {name!r} has no split {split!r}; its splits: {', '.join(info.splits)}{hint}")
    file = info.files[0]
    path = locate(name, data_dir, download) / file.path
    stem = info.splits[split]
    arrays = {}
    with np.load(path, allow_pickle=False) as npz:
        for key in (f"x_{stem}", f"y_{stem}"):
            if key not in npz.files:
                raise ValueError(f"{path}: no array {key!r} (it has {', '.join(npz.files)})")
            arrays[key] = npz[key]
            expected = file.arrays.get(key)
            if expected is not None and (actual := array_sha256(arrays[key])) != expected:
                raise ChecksumError(f"{path}: array {key!r} is corrupt or not {name}'s: sha256 {actual}, expected "
                                    f"{expected}; replace the file (delete it and load with download=True)")
    images, labels = arrays[f"x_{stem}"], arrays[f"y_{stem}"]
    if images.dtype != np.uint8 or images.ndim not in (3, 4) or len(images) != len(labels):
        raise ValueError(f"{path}: expected uint8 images (N, H, W[, C]) and N labels, got {images.dtype} "
                         f"{images.shape} and {labels.shape}")
    return images, labels.astype(np.int64)


def _sklearn_digits(split: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        from sklearn.datasets import load_digits
    except ImportError as error:
        raise ImportError("the 'digits' images come with scikit-learn: pip install scikit-learn") from error
    if split not in ("train", "test"):
        raise ValueError(f"corpus 'digits' has no split {split!r}; its splits: train, test")
    data = load_digits()
    images = np.rint(data.images * (255 / 16)).astype(np.uint8)  # 0 … 16 grey levels → 0 … 255
    order = np.random.default_rng(0).permutation(len(images))
    chosen = np.sort(order[:DIGITS_TEST] if split == "test" else order[DIGITS_TEST:])
    return images[chosen], data.target[chosen].astype(np.int64)


def holdout(n: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, validation indices) of ``n`` examples: ``size`` of them drawn by numpy's
    ``default_rng(seed)`` are held out; both index arrays sorted (the same on every machine)."""
    if not 0 < size < n:
        raise ValueError(f"cannot hold out {size} of {n} examples for validation (need 0 < size < {n})")
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[size:]), np.sort(order[:size])


# ------------------------------------------------------------------------------------------------ tensors
def as_nchw(images: np.ndarray) -> torch.Tensor:
    """uint8 images (N, H, W) or (N, H, W, C) → a uint8 tensor (N, C, H, W)."""
    images = np.ascontiguousarray(images)
    t = torch.from_numpy(images if images.flags.writeable else images.copy())
    return t.unsqueeze(1) if t.dim() == 3 else t.permute(0, 3, 1, 2).contiguous()


def resize_images(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (N, C, H, W) → uint8 (N, C, size, size): bilinear with antialiasing (area-like when shrinking)."""
    if images.shape[-2:] == (size, size):
        return images
    resized = F.interpolate(images.float(), size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return resized.round().clamp(0, 255).to(torch.uint8)


def normalize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 (N, C, H, W) → float32 (N, C, H, W): (x / 255 − mean_c) / std_c for each channel c."""
    if len(mean) != images.shape[1] or len(std) != images.shape[1]:
        raise ValueError(f"{images.shape[1]} channels but {len(mean)} means and {len(std)} stds")
    m = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    return (images.float() / 255 - m) / s


def random_shift(images: torch.Tensor, max_shift: int, generator: torch.Generator | None = None,
                 fill: int = 0) -> torch.Tensor:
    """Translate each image (N, C, H, W) by its own random (dy, dx) in [−k, k]² (k = ``max_shift``): pad k
    pixels of ``fill`` (MNIST's background is 0) on every side, then crop an H×W window at a random offset."""
    if max_shift <= 0:
        return images
    n, _, h, w = images.shape
    k = max_shift
    padded = F.pad(images, (k, k, k, k), value=fill)  # (N, C, H + 2k, W + 2k)
    offsets = torch.randint(0, 2 * k + 1, (n, 2), generator=generator).tolist()
    return torch.stack([padded[i, :, dy : dy + h, dx : dx + w] for i, (dy, dx) in enumerate(offsets)])


# ------------------------------------------------------------------------------------------------ pictures
def open_image(picture: Any):
    """A ``PIL.Image.Image`` from a PIL image, a path, bytes, or a binary file object (EXIF rotation applied)."""
    from PIL import Image, ImageOps

    if isinstance(picture, Image.Image):
        return picture
    if isinstance(picture, bytes | bytearray):
        picture = io.BytesIO(picture)
    image = Image.open(picture)
    image.load()
    return ImageOps.exif_transpose(image)


def _flatten(image, channels: int):
    """Any mode → "L" (channels 1) or "RGB" (channels 3); transparent pixels become white (paper)."""
    from PIL import Image

    if channels not in (1, 3):
        raise ValueError(f"pictures convert to 1 (grey) or 3 (RGB) channels, not {channels}")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    return image.convert("L" if channels == 1 else "RGB")


def _border_median(image) -> tuple[int, ...]:
    """Median colour of the outermost pixels (one value per band): the picture's background."""
    a = np.asarray(image)
    a = a[..., None] if a.ndim == 2 else a
    border = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])  # (pixels, bands)
    return tuple(int(v) for v in np.median(border, axis=0))


def _fit(image, size: int, fit: str):
    """Square ``size`` × ``size``: pad (keep the shape, pad with the background), crop (centre) or stretch."""
    from PIL import Image, ImageOps

    resample = Image.Resampling.BICUBIC
    if fit == "stretch":
        return image.resize((size, size), resample)
    if fit == "crop":
        return ImageOps.fit(image, (size, size), resample)
    if fit == "pad":
        w, h = image.size
        side = max(w, h)
        background = _border_median(image)
        square = Image.new(image.mode, (side, side), background[0] if image.mode == "L" else background)
        square.paste(image, ((side - w) // 2, (side - h) // 2))
        return square.resize((size, size), resample)
    raise ValueError(f"fit must be pad, crop or stretch, got {fit!r}")


def to_tensor(picture: Any, size: int, channels: int, mean: Sequence[float], std: Sequence[float], *,
              fit: Literal["pad", "crop", "stretch"] = "pad", invert: bool | Literal["auto"] = False) -> torch.Tensor:
    """A picture of any size and mode (PNG, JPEG, …; a PIL image, path, bytes or file) → float32 (C, size, size),
    normalised as (x / 255 − mean) / std.

    Colours: transparency over white, then grey (ITU-R 601 luma) for ``channels=1`` or RGB for 3. ``invert``:
    x → 255 − x, so a dark digit on light paper reads like MNIST's light digit on black; ``"auto"`` inverts
    when the background (the median of the border pixels) is light. ``fit`` makes it square: ``pad`` (keep
    the proportions, pad with the background colour), ``crop`` (centre crop) or ``stretch``."""
    from PIL import ImageOps

    image = _flatten(open_image(picture), channels)
    if invert == "auto":
        invert = float(np.mean(_border_median(image))) > 127
    elif invert not in (True, False):
        raise ValueError(f"invert must be True, False or 'auto', got {invert!r}")
    if invert:
        image = ImageOps.invert(image)
    pixels = np.asarray(_fit(image, size, fit), dtype=np.uint8)  # (size, size) or (size, size, 3)
    return normalize(as_nchw(pixels[None]), mean, std)[0]
