"""BERT (``model_type: bert``) into ``EncoderModel``, with the task head the checkpoint has.

The encoder's maps live in ``rosetta.models.pretrained`` (``weight_map``: embeddings, layers, pooler and the
sequence classifier). The other heads map here, Hugging Face name (``bert.`` dropped) → ``EncoderModel`` name:

    BertForMaskedLM / BertForPreTraining    cls.predictions.transform.dense     → mlm.dense
                                            cls.predictions.transform.LayerNorm → mlm.norm
                                            cls.predictions.bias                → mlm.decoder.bias
                                            (decoder.weight: the word embeddings, tied; NSP head ignored)
    BertForQuestionAnswering                qa_outputs                          → qa_outputs (span head)
    BertForSequenceClassification           pooler.dense, classifier            → pooler, classifier

Which heads a model gets is read from the checkpoint's tensor names; config.json's ``architectures`` only
refuses the heads Rosetta has no block for (token classification, multiple choice, …) in one line.
``encoder_with_heads`` and ``with_heads`` are shared with DistilBERT (``distilbert.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from rosetta.hub.registry import register_hf
from rosetta.models.encoder import EncoderModel
from rosetta.models.pretrained import (
    PretrainedError,
    _hf_name,
    config_from_hf,
    convert_bert_weights,
    load_tokenizer,
)

BERT_ARCHITECTURES = ("BertModel", "BertForPreTraining", "BertForMaskedLM", "BertForSequenceClassification",
                      "BertForQuestionAnswering")

# Head weights beside the encoder (pooler and classifier are in pretrained.weight_map): HF name → ours.
BERT_HEADS = {
    **{f"cls.predictions.transform.dense.{p}": f"mlm.dense.{p}" for p in ("weight", "bias")},
    **{f"cls.predictions.transform.LayerNorm.{p}": f"mlm.norm.{p}" for p in ("weight", "bias")},
    "cls.predictions.bias": "mlm.decoder.bias",
    **{f"qa_outputs.{p}": f"qa_outputs.{p}" for p in ("weight", "bias")},
}


def check_architectures(hf: dict[str, Any], supported: tuple[str, ...]) -> None:
    """PretrainedError in one line when config.json's ``architectures`` names a head Rosetta does not read."""
    for name in hf.get("architectures") or []:
        if name not in supported:
            raise PretrainedError(f"unsupported architecture {name} (model_type {hf.get('model_type')!r}); "
                                  f"Rosetta reads {', '.join(supported)}")


def encoder_with_heads(config, hf: dict[str, Any], heads: set[str], pooler: bool = False) -> EncoderModel:
    """An untrained ``EncoderModel`` with the heads whose weights (Rosetta names, ``heads``) the checkpoint has:
    classifier (num_labels = len(id2label)), pre_classifier, MLM head, span head."""
    mlm = "mlm.dense.weight" in heads
    if mlm and config.activation not in ("gelu", "gelu_tanh"):
        raise PretrainedError(f"unsupported: an MLM head with activation {config.activation!r}; Rosetta's MLM "
                              "head (rosetta.models.encoder.MLMHead) applies GELU")
    if mlm and hf.get("tie_word_embeddings") is False:
        raise PretrainedError("unsupported: an MLM head whose decoder is not the word embeddings "
                              "(tie_word_embeddings false); Rosetta's MLM head is tied")
    num_labels = len(hf.get("id2label") or {}) if "classifier.weight" in heads else 0
    if "classifier.weight" in heads and num_labels == 0:
        raise PretrainedError("config.json has a classifier but no id2label; add id2label (one name per class)")
    return EncoderModel(config, num_labels=num_labels, pooler=pooler, mlm_head=mlm,
                        span_head="qa_outputs.weight" in heads, pre_classifier="pre_classifier.weight" in heads)


def with_heads(state: dict[str, torch.Tensor], heads: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The encoder's state dict plus the renamed head tensors; an MLM head's decoder weight is the token
    embedding table (tied: ``MLMHead``), so the checkpoint's copy, if any, is not read."""
    out = {**state, **heads}
    if "mlm.decoder.bias" in heads:
        out["mlm.decoder.weight"] = state["embeddings.token.weight"]
    return out


@register_hf("bert", family="encoder")
class Bert:
    config_from_hf = staticmethod(config_from_hf)

    @staticmethod
    def build(config, hf: dict[str, Any], names: set[str]) -> EncoderModel:
        check_architectures(hf, BERT_ARCHITECTURES)
        heads = {BERT_HEADS.get(n, n) for n in map(_hf_name, names)}
        return encoder_with_heads(config, hf, heads, pooler="pooler.dense.weight" in heads)

    @staticmethod
    def weights_from_hf(tensors, config):
        tensors = {_hf_name(k): v for k, v in tensors.items()}
        heads = {BERT_HEADS[k]: tensors.pop(k) for k in list(tensors) if k in BERT_HEADS}
        return with_heads(convert_bert_weights(tensors, config.n_encoder_layers), heads)

    @staticmethod
    def tokenizers(path: Path, hf: dict[str, Any]):
        return load_tokenizer(path), None
