"""Using a trained text classifier (an encoder with a classification head, e.g. SST-2 sentiment): texts in,
labels with probabilities (and the attention behind them) out.

    classifier = TextClassifier.load("runs/sst2-minilm")
    classifier.classify(["a gripping, funny film"])   → [TextPrediction(label="positive", probability=0.97, …)]
    classifier.attention("a gripping, funny film")    → tokens, prediction, each layer's weights (H, T, T)

A text is read as in training (``encode_texts``: [CLS] … [SEP] with a WordPiece tokenizer, <s> … </s> with a
Rosetta one, cut at config.json's ``max_length``); texts are batched by length and padded, padding masked.
p(label | text) = softmax(logits), the logits from ``EncoderModel.classify``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from rosetta.checkpoint import model_task
from rosetta.data.batching import pad
from rosetta.data.tokenizer import encode_texts
from rosetta.decode.loading import LoadedModel, load_any


@dataclass
class TextPrediction:
    """The most likely label (and its index and probability) and every label's probability."""

    label: str
    index: int
    probability: float
    probabilities: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "probability": self.probability, "probabilities": self.probabilities}


def token_label(tokenizer, i: int) -> str:
    """How a token id is shown (``id_to_token`` of a Rosetta or a Hugging Face tokenizer; ``<i>`` if unknown)."""
    token = tokenizer.id_to_token(int(i))
    return token if token is not None else f"<{int(i)}>"


class TextClassifier:
    """A loaded text classifier: ``loaded`` is a ``LoadedModel`` of family "encoder" with num_labels > 0."""

    def __init__(self, loaded: LoadedModel):
        head = getattr(loaded.model, "classifier", None)
        if loaded.family != "encoder" or head is None:
            task = model_task({**loaded.info, "family": loaded.family})
            raise ValueError(f"{loaded.info.get('path', 'this model')} is a {loaded.family} model (task {task!r}) "
                             "without a classification head; a text classifier is an encoder trained with "
                             'task = "classification" (e.g. configs/sst2-minilm.toml)')
        self.loaded, self.model, self.tokenizer, self.info = loaded, loaded.model, loaded.tokenizer, loaded.info
        n = head.out_features
        names = list(self.info.get("labels") or [])
        self.labels = names if len(names) == n else [str(i) for i in range(n)]
        self.max_length = self.info.get("max_length") or self.model.config.max_len

    @classmethod
    def load(cls, directory: str | Path, device: str | torch.device = "cpu") -> TextClassifier:
        return cls(load_any(directory, device=device))

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def encode(self, texts: list[str]) -> list[list[int]]:
        """Each text's input ids, as in training (see the module docstring)."""
        return encode_texts(self.tokenizer, texts, self.max_length)

    @torch.inference_mode()
    def probabilities(self, texts: list[str], batch_size: int = 64) -> torch.Tensor:
        """p(label | text) for each text: (N, labels) float32, in the order given."""
        ids = self.encode(list(texts))
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))  # similar lengths together: less padding
        out = torch.empty(len(ids), len(self.labels))
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            batch = pad([ids[i] for i in chunk], self.model.config.pad_id).to(self.device)  # (B, T)
            out[chunk] = self.model.classify(batch).float().softmax(-1).cpu()  # (B, labels)
        return out

    def classify(self, texts: list[str], batch_size: int = 64) -> list[TextPrediction]:
        """The prediction for each text (an empty text is classified too: the model sees [CLS] [SEP])."""
        if isinstance(texts, str):
            texts = [texts]
        return [self.prediction(p) for p in self.probabilities(texts, batch_size)]

    def prediction(self, p: torch.Tensor) -> TextPrediction:
        best = int(p.argmax())
        return TextPrediction(self.labels[best], best, float(p[best]),
                              {label: float(x) for label, x in zip(self.labels, p.tolist())})

    @torch.inference_mode()
    def attention(self, text: str) -> dict[str, Any]:
        """One text's tokens, prediction and self-attention: {"tokens", "label", "probability", "probabilities",
        "encoder": per layer a nested list (H, T, T)}; row 0 is what the first token ([CLS] or <s>) attends to."""
        ids = self.encode([text])[0]
        batch = torch.tensor([ids], device=self.device)  # (1, T)
        hidden, maps = self.model(batch, return_attention=True)
        logits = self.model.head(hidden, self.model.real_tokens(batch))  # (1, labels)
        prediction = self.prediction(logits.float().softmax(-1)[0].cpu())
        return {"tokens": [token_label(self.tokenizer, i) for i in ids], **prediction.to_dict(),
                "encoder": [layer[0].float().cpu().tolist() for layer in maps]}
