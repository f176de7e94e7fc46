"""Using a trained ViT: pictures in, labels with probabilities (and the attention behind them) out.

    classifier = ImageClassifier(load_any("runs/mnist-vit"))
    x = classifier.prepare("digit.png")                 any size and mode → (C, S, S), as the model reads it
    classifier.predict(x[None], top_k=3)                → [Prediction(label="7", probability=0.98, top=[…])]
    classifier.predict(x[None], attention=True)         … with each layer's attention (H, N+1, N+1)
    classifier.evaluate(images, labels)                 uint8 corpus images (N, H, W[, C]) → accuracy

Pictures are converted by ``rosetta.data.images.to_tensor``: transparency over white, grey or RGB, padded to a
square with the background colour, resized to the model's size, normalised with the model's mean and std.
A model trained on light digits on black (MNIST, scikit-learn's digits) reads dark-on-light pictures inverted
(``invert="auto"``: when the picture's border is light); other models read pictures as they are.

Bad pictures raise ``PictureError`` (a ValueError) with one readable line: missing file, not an image,
damaged, or more pixels than allowed (``PictureTooLarge``, a PictureError).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from rosetta.data.images import as_nchw, normalize, resize_images, to_tensor
from rosetta.decode.loading import LoadedModel

LIGHT_ON_DARK = ("mnist", "digits")  # corpora of light digits on a black background
MAX_PIXELS = 50_000_000  # a picture larger than this is refused before it is decoded (a decompression bomb)


class PictureError(ValueError):
    """A picture that cannot be read: the message says why, in one line."""


class PictureTooLarge(PictureError):
    """A picture with more pixels than allowed."""


@dataclass
class Prediction:
    """The most likely label, its probability, and the ``top_k`` most likely (label, probability) pairs;
    ``attention`` (when asked): per layer the weights (H, N+1, N+1) of this image, [CLS] at index 0."""

    label: str
    index: int
    probability: float
    top: list[tuple[str, float]]
    attention: list[torch.Tensor] | None = field(default=None, repr=False)

    def to_dict(self, digits: int = 6) -> dict[str, Any]:
        return {"label": self.label, "probability": round(self.probability, digits),
                "top": [[label, round(p, digits)] for label, p in self.top]}


def default_invert(info: dict[str, Any]) -> bool | str:
    """``"auto"`` for a model trained on light-on-dark digits (see ``LIGHT_ON_DARK``), else False."""
    return "auto" if info.get("corpus") in LIGHT_ON_DARK else False


def open_picture(source: Any, max_pixels: int | None = MAX_PIXELS):
    """A decoded ``PIL.Image`` (EXIF rotation applied) from a path, bytes or a PIL image; ``PictureError``
    for a missing file, something that is not an image, a damaged image, or more than ``max_pixels`` pixels
    (checked from the header, before decoding)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    if isinstance(source, Image.Image):
        return source
    name = "the upload" if isinstance(source, bytes | bytearray) else str(source)
    try:
        image = Image.open(io.BytesIO(source) if isinstance(source, bytes | bytearray) else source)
        width, height = image.size
        if max_pixels is not None and width * height > max_pixels:
            raise PictureTooLarge(f"{name}: {width}×{height} pixels is more than the {max_pixels:,} allowed")
        image.load()
        return ImageOps.exif_transpose(image)
    except FileNotFoundError:
        raise PictureError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise PictureError(f"{name}: is a directory, not an image") from None
    except UnidentifiedImageError:
        raise PictureError(f"{name}: not an image (Pillow cannot identify it; PNG or JPEG, please)") from None
    except Image.DecompressionBombError as e:
        raise PictureTooLarge(f"{name}: too many pixels ({e})") from None
    except PictureError:
        raise
    except Exception as e:  # Pillow's decoders raise many kinds (OSError, SyntaxError, struct.error, …)
        raise PictureError(f"{name}: damaged or unreadable image ({type(e).__name__}: {e})") from None


class ImageClassifier:
    """A ViT ``LoadedModel`` with what it needs to read pictures and name its answers (see module docs)."""

    def __init__(self, loaded: LoadedModel, invert: bool | str | None = None, fit: str = "pad"):
        if loaded.family != "vit":
            raise ValueError(f"an image classifier needs a ViT model, not a {loaded.family!r} model")
        self.loaded, self.model, self.info = loaded, loaded.model, loaded.info
        self.image = self.model.image  # ImageSpec: size, patch size, channels, mean, std
        self.labels = [str(x) for x in loaded.info.get("labels") or range(self.model.num_labels)]
        self.invert = default_invert(loaded.info) if invert is None else invert
        self.fit = fit

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def grid(self) -> int:
        return self.image.grid

    def prepare(self, picture: Any, max_pixels: int | None = MAX_PIXELS) -> torch.Tensor:
        """A picture (path, bytes, PIL image; any size and mode) → float32 (C, S, S), as the model reads it."""
        s = self.image
        image = open_picture(picture, max_pixels)
        try:
            return to_tensor(image, s.image_size, s.channels, s.mean, s.std, fit=self.fit, invert=self.invert)
        except Exception as e:  # a decoded picture Pillow cannot convert (an exotic mode)
            raise PictureError(f"cannot convert the picture ({type(e).__name__}: {e})") from None

    def unnormalize(self, image: torch.Tensor) -> np.ndarray:
        """A model input (C, S, S) → grey pixels (S, S) in [0, 1] (channels averaged): what the model saw."""
        mean = torch.tensor(self.image.mean).view(-1, 1, 1)
        std = torch.tensor(self.image.std).view(-1, 1, 1)
        return (image.cpu() * std + mean).clamp(0, 1).mean(0).numpy()

    @torch.no_grad()
    def predict(self, images: torch.Tensor, top_k: int = 3, attention: bool = False,
                batch_size: int = 64) -> list[Prediction]:
        """Images (B, C, S, S) → one ``Prediction`` each; ``top_k`` is capped at the number of labels."""
        k = max(1, min(top_k, len(self.labels)))
        out: list[Prediction] = []
        for start in range(0, len(images), batch_size):
            x = images[start : start + batch_size].to(self.device)
            if attention:
                logits, maps = self.model(x, return_attention=True)
            else:
                logits, maps = self.model(x), None
            probs = logits.float().softmax(-1).cpu()
            values, indices = probs.topk(k, dim=-1)
            for b in range(len(x)):
                top = [(self.labels[i], float(p)) for p, i in zip(values[b].tolist(), indices[b].tolist())]
                out.append(Prediction(top[0][0], int(indices[b, 0]), top[0][1], top,
                                      [m[b].float().cpu() for m in maps] if maps is not None else None))
        return out

    @torch.no_grad()
    def evaluate(self, images: np.ndarray, labels: np.ndarray, batch_size: int = 500) -> dict[str, Any]:
        """Accuracy on uint8 corpus images (N, H, W[, C]) with int labels (N,): resized to the model's size,
        grey repeated to 3 channels if the model reads RGB. Returns accuracy, correct, n and the predicted
        label indices."""
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        s, predicted = self.image, []
        for start in range(0, len(images), batch_size):
            x = as_nchw(images[start : start + batch_size])
            if x.shape[1] != s.channels:
                if x.shape[1] != 1:
                    raise ValueError(f"the images have {x.shape[1]} channels, the model reads {s.channels}")
                x = x.expand(-1, s.channels, -1, -1)
            x = normalize(resize_images(x.contiguous(), s.image_size), s.mean, s.std)
            predicted.append(self.model(x.to(self.device)).argmax(-1).cpu())
        guesses = torch.cat(predicted) if predicted else torch.zeros(0, dtype=torch.long)
        correct = int((guesses == torch.as_tensor(labels)).sum())
        n = len(labels)
        return {"accuracy": correct / n if n else 0.0, "correct": correct, "n": n, "predicted": guesses.tolist()}

