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

The way back (``config_to_hf`` / ``weights_to_hf``, used by ``rosetta.compress.hf_encoder``): an ``EncoderModel`` in
BERT's layout → config.json and tensors named as ``save_pretrained`` names them (``bert.`` before the encoder's
when the model has a head; the fused qkv split into query, key, value; the tied MLM decoder left out). A model
without token types (read from DistilBERT) gets one all-zero token-type row: the same sums. ``check_layout``
refuses, in one line naming the flag, what BERT's blocks do not compute (Pre-LN, rotary / sinusoidal positions,
RMSNorm, no biases, scaled embeddings, pruned heads, …); RoBERTa and DistilBERT reuse it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from rosetta.hub.registry import register_hf
from rosetta.models.encoder import EncoderModel
from rosetta.models.pretrained import (
    ACTIVATIONS,
    PretrainedError,
    _hf_name,
    config_from_hf,
    convert_bert_weights,
    load_tokenizer,
    weight_map,
)
from rosetta.nn.config import ModelConfig

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


# ------------------------------------------------------------------------------------------ the way back
# BERT's blocks: the flags an encoder must have to be a BERT (RoBERTa, DistilBERT) with the same function.
LAYOUT: tuple[tuple[str, Any], ...] = (
    ("positional", "learned"), ("norm", "layernorm"), ("norm_first", False), ("bias", True),
    ("scale_embeddings", False), ("embedding_norm", True), ("scale_attention", True), ("heads_per_layer", None))
HEAD_PREFIXES = ("classifier.", "qa_outputs.", "mlm.")  # a model with one of these is saved as ``bert.`` + …
ELSEWHERE = "keep it a Rosetta model (rosetta.load, rosetta serve; --format onnx / ctranslate2 take translation models)"


def check_layout(config: ModelConfig, family: str, **required: Any) -> str:
    """The Hugging Face activation name of an encoder in BERT's layout (``LAYOUT`` and ``required``);
    PretrainedError in one line naming the first flag ``family`` has no counterpart for."""
    for name, value in (*LAYOUT, *required.items()):
        if getattr(config, name) != value:
            raise PretrainedError(f"{family} has no counterpart for {name}={getattr(config, name)!r} (it needs "
                                  f"{value!r}): only an encoder in BERT's layout (bert_config) converts; {ELSEWHERE}")
    head = config.d_model // config.n_heads
    if config.d_model % config.n_heads or config.head_dim_k != head or config.head_dim_v != head:
        raise PretrainedError(f"{family}'s heads are d_model / n_heads wide, not d_k={config.d_k}, d_v={config.d_v}; "
                              f"{ELSEWHERE}")
    activation = next((hf for hf, ours in ACTIVATIONS.items() if ours == config.activation), None)
    if activation is None:
        raise PretrainedError(f"{family} has no counterpart for activation={config.activation!r} (it reads "
                              f"{', '.join(sorted(set(ACTIVATIONS.values())))}); {ELSEWHERE}")
    return activation


def bert_hf_config(config: ModelConfig, family: str = "BERT", **required: Any) -> dict[str, Any]:
    """The BERT config.json keys of ``config`` (``check_layout`` first); RoBERTa's are the same."""
    return {
        "model_type": "bert", "architectures": ["BertModel"], "vocab_size": config.src_vocab_size,
        "hidden_size": config.d_model, "num_hidden_layers": config.n_encoder_layers,
        "num_attention_heads": config.n_heads, "intermediate_size": config.d_ff,
        "hidden_act": check_layout(config, family, **required), "hidden_dropout_prob": config.dropout,
        "attention_probs_dropout_prob": config.attention_dropout, "max_position_embeddings": config.max_len,
        "type_vocab_size": max(config.type_vocab_size, 1), "initializer_range": config.init_std or 0.02,
        "layer_norm_eps": config.norm_eps, "pad_token_id": config.pad_id, "position_embedding_type": "absolute",
        "tie_word_embeddings": True,
    }


def config_to_hf(config: ModelConfig) -> dict[str, Any]:
    """An ``EncoderModel``'s ``ModelConfig`` in BERT's layout → config.json (a dict) for ``BertModel``; the
    architecture and labels of a head are the exporter's (``rosetta.compress.hf_encoder``)."""
    return bert_hf_config(config, position_offset=0)


def split_back(state: dict[str, torch.Tensor], mapping: dict[str, list[str]], heads: dict[str, str], prefix: str,
               family: str) -> dict[str, torch.Tensor]:
    """``weight_map``-style ``mapping`` (ours → the Hugging Face names concatenated along dim 0) run backwards:
    fused tensors split in equal parts, ``prefix`` before every encoder name; ``heads`` (HF → ours) for the rest.
    A tensor of ours neither names is a PretrainedError listing it (the family has no block for it)."""
    state = {k: v for k, v in state.items() if k != "mlm.decoder.weight"}  # tied: the word embeddings
    tensors: dict[str, torch.Tensor] = {}
    for ours, parts in mapping.items():
        if ours in state:
            for name, part in zip(parts, state.pop(ours).chunk(len(parts))):
                tensors[prefix + name] = part
    for hf, ours in heads.items():
        if ours in state:
            tensors[hf] = state.pop(ours)
    if state:
        raise PretrainedError(f"{family} has no counterpart for {', '.join(sorted(state)[:4])}; {ELSEWHERE}")
    return {k: v.detach().float().contiguous().clone() for k, v in tensors.items()}


def weights_to_hf(state: dict[str, torch.Tensor], config: ModelConfig) -> dict[str, torch.Tensor]:
    """``EncoderModel`` state dict → the tensors of ``BertModel`` (no head) or of the Bert…For… class of its head."""
    prefix = "bert." if any(k.startswith(HEAD_PREFIXES) for k in state) else ""
    mapping = weight_map(config.n_encoder_layers, "pooler.weight" in state, False)
    heads = {**BERT_HEADS, **{f"classifier.{p}": f"classifier.{p}" for p in ("weight", "bias")}}
    tensors = split_back(state, mapping, heads, prefix, "BERT")
    if config.type_vocab_size == 0:  # no token types (DistilBERT's layout): a zero row adds nothing
        tensors[f"{prefix}embeddings.token_type_embeddings.weight"] = torch.zeros(1, config.d_model)
    return tensors


@register_hf("bert", family="encoder")
class Bert:
    config_from_hf = staticmethod(config_from_hf)
    config_to_hf = staticmethod(config_to_hf)
    weights_to_hf = staticmethod(weights_to_hf)

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
