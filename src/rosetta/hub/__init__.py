"""Hugging Face directories (config.json + safetensors + tokenizer files) into Rosetta's own modules.

A part of its own between ``models`` and ``decode``: a family is a model's maps (``models``, ``nn``) together with
its tokenizers (``data``), and pickle weights are refused as for Rosetta's folders (``checkpoint``).

``registry.py`` holds one ``HFFamily`` per ``model_type``; each family's module registers itself when imported
here. Nothing here imports ``transformers``: it stays a test and benchmark dependency.
"""

from rosetta.hub.registry import REGISTRY, HFFamily, hf_family, register_hf

__all__ = ["REGISTRY", "HFFamily", "hf_family", "register_hf"]

# Each family's module registers it (import order is the order `hf_family`'s error lists them in, sorted).
from rosetta.hub import bart, bert, distilbert, gpt2, marian, pegasus, roberta, t5, vit  # noqa: E402,F401
