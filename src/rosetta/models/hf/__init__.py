"""Hugging Face directories (config.json + safetensors + tokenizer files) into Rosetta's own modules.

``registry.py`` holds one ``HFFamily`` per ``model_type``; each family's module registers itself when imported
here. Nothing here imports ``transformers``: it stays a test and benchmark dependency.
"""

from rosetta.models.hf.registry import REGISTRY, HFFamily, hf_family, register_hf

__all__ = ["REGISTRY", "HFFamily", "hf_family", "register_hf"]

# Each family's module registers it (import order is the order `hf_family`'s error lists them in, sorted).
from rosetta.models.hf import bert, gpt2, marian  # noqa: E402,F401
