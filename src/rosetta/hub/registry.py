"""One registry of Hugging Face model families (timm's ``register_model``, for checkpoints we read).

A family states once, under the config.json ``model_type`` it reads, everything that turns a Hugging Face
directory into Rosetta's own blocks:

    config_from_hf    config.json (a dict)           → ModelConfig (the layout as flags on the shared blocks)
    build             (ModelConfig, config.json, names of the checkpoint's tensors)
                                                     → the Rosetta module, untrained, with the heads the checkpoint has
    weights_from_hf   (HF tensors by name, config)   → that module's state dict (renamed, fused, transposed)
    tokenizers        (directory, config.json)       → (source or only tokenizer, target tokenizer or None)
    family            the Rosetta family it becomes: "translation", "lm", "encoder" or "vit"

and, where the family has a way back, ``config_to_hf`` / ``weights_to_hf``. A translation family may leave ``build``
out: it builds the encoder–decoder ``Transformer`` of its config (``build_transformer``). Families register
themselves at import (``rosetta.hub`` imports each family's module):

    @register_hf("marian", family="translation")
    class Marian: ...

``hf_family(model_type)`` finds one; an unknown type is one line naming it and listing those supported.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rosetta.models.pretrained import PretrainedError


@dataclass(frozen=True)
class HFFamily:
    """What Rosetta knows about one Hugging Face ``model_type`` (see the module docstring)."""

    model_type: str
    family: str
    config_from_hf: Callable[[dict[str, Any]], Any]
    build: Callable[[Any, dict[str, Any], set[str]], Any]
    weights_from_hf: Callable[[dict[str, Any], Any], dict[str, Any]]
    tokenizers: Callable[[Any, dict[str, Any]], tuple[Any, Any]]
    config_to_hf: Callable[..., dict[str, Any]] | None = None
    weights_to_hf: Callable[..., dict[str, Any]] | None = None


REGISTRY: dict[str, HFFamily] = {}


def build_transformer(config: Any, hf: dict[str, Any], names: set[str]) -> Any:
    """A translation family's ``build`` unless it has its own: the encoder–decoder of ``config``."""
    from rosetta.models.transformer import Transformer

    return Transformer(config)


def register_hf(model_type: str, family: str) -> Callable[[type], type]:
    """Class decorator: the class's static methods (config_from_hf, build, weights_from_hf, tokenizers and
    optionally config_to_hf, weights_to_hf) become the ``HFFamily`` of ``model_type``."""

    def register(cls: type) -> type:
        if model_type in REGISTRY:
            raise ValueError(f"model_type {model_type!r} is registered twice")
        build = getattr(cls, "build", build_transformer if family == "translation" else None)
        if build is None:
            raise ValueError(f"model_type {model_type!r}: a {family!r} family states its build")
        REGISTRY[model_type] = HFFamily(
            model_type, family, cls.config_from_hf, build, cls.weights_from_hf, cls.tokenizers,
            getattr(cls, "config_to_hf", None), getattr(cls, "weights_to_hf", None))
        return cls

    return register


def hf_family(model_type: Any) -> HFFamily:
    """The registered family of ``model_type``, or PretrainedError in one line listing the supported ones."""
    if model_type not in REGISTRY:
        raise PretrainedError(f"unsupported Hugging Face model_type {model_type!r}; Rosetta reads "
                              f"{', '.join(sorted(REGISTRY))}")
    return REGISTRY[model_type]
