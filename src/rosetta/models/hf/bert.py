"""BERT (``model_type: bert``) into ``EncoderModel``: the maps live in ``rosetta.models.pretrained``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rosetta.models.encoder import EncoderModel
from rosetta.models.hf.registry import register_hf
from rosetta.models.pretrained import _hf_name, config_from_hf, convert_bert_weights, load_tokenizer


@register_hf("bert", family="encoder")
class Bert:
    config_from_hf = staticmethod(config_from_hf)

    @staticmethod
    def build(config, hf: dict[str, Any], names: set[str]) -> EncoderModel:
        names = {_hf_name(n) for n in names}
        classifier = "classifier.weight" in names
        num_labels = len(hf.get("id2label") or {}) if classifier else 0
        return EncoderModel(config, num_labels=num_labels, pooler="pooler.dense.weight" in names)

    @staticmethod
    def weights_from_hf(tensors, config):
        return convert_bert_weights(tensors, config.n_encoder_layers)

    @staticmethod
    def tokenizers(path: Path, hf: dict[str, Any]):
        return load_tokenizer(path), None
