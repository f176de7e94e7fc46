"""DistilBERT (``model_type: distilbert``) into ``EncoderModel``: BERT's blocks without token types.

DistilBERT is a 6-layer BERT distilled from bert-base: the same Post-LN layer (attention, Add & Norm, GELU
feed-forward, Add & Norm, LayerNorm ε 1e-12), learned positions, a LayerNorm on the embeddings, and no
token-type embeddings (``type_vocab_size=0``) and no pooler. Hugging Face name (``distilbert.`` dropped) → ours:

    embeddings.word_embeddings / position_embeddings / LayerNorm  → embeddings.token / position / norm
    transformer.layer.N.attention.q_lin, k_lin, v_lin             → encoder.layers.N.self_attn.qkv_proj (fused)
    transformer.layer.N.attention.out_lin                         → encoder.layers.N.self_attn.out_proj
    transformer.layer.N.sa_layer_norm                             → encoder.layers.N.self_attn_norm
    transformer.layer.N.ffn.lin1 / lin2                           → encoder.layers.N.feed_forward.w1 / w2
    transformer.layer.N.output_layer_norm                         → encoder.layers.N.feed_forward_norm

Heads (``DISTILBERT_HEADS``): ForSequenceClassification's pre_classifier + ReLU + classifier (EncoderModel's
``pre_classifier`` flag), ForQuestionAnswering's qa_outputs (span head), ForMaskedLM's vocab_transform +
activation + vocab_layer_norm + vocab_projector (``MLMHead``, tied to the word embeddings). With
``sinusoidal_pos_embds`` the sinusoid is stored in position_embeddings like a learned table, so it loads the same.

The way back (``config_to_hf`` / ``weights_to_hf``): the maps above backwards, for an encoder in BERT's layout
without token types or a pooler, LayerNorm ε 1e-12 (``bert.check_layout``); ``distilbert.`` before the encoder's
names when the model has a head.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rosetta.hub.bert import (
    HEAD_PREFIXES,
    check_architectures,
    check_layout,
    encoder_with_heads,
    split_back,
    with_heads,
)
from rosetta.hub.registry import register_hf
from rosetta.models.encoder import EncoderModel, bert_config
from rosetta.models.pretrained import ACTIVATIONS, PretrainedError, load_tokenizer, rename_weights
from rosetta.nn.config import ModelConfig

DISTILBERT_ARCHITECTURES = ("DistilBertModel", "DistilBertForMaskedLM", "DistilBertForSequenceClassification",
                            "DistilBertForQuestionAnswering")

# Head weights beside the encoder: HF name → ours.
DISTILBERT_HEADS = {
    f"{hf}.{p}": f"{ours}.{p}" for p in ("weight", "bias")
    for hf, ours in (("pre_classifier", "pre_classifier"), ("classifier", "classifier"),
                     ("qa_outputs", "qa_outputs"), ("vocab_transform", "mlm.dense"), ("vocab_layer_norm", "mlm.norm"))
}
DISTILBERT_HEADS["vocab_projector.bias"] = "mlm.decoder.bias"
# Read elsewhere or not at all: the tied projector (= word embeddings) and HF's position-id buffer.
IGNORED = ("vocab_projector.weight", "embeddings.position_ids")


def config_from_hf(hf: dict[str, Any]) -> ModelConfig:
    """A DistilBERT config.json → ``ModelConfig`` with BERT's layout, no token types (LayerNorm ε is 1e-12 in
    DistilBERT's code, not in its config)."""
    act = hf.get("activation", "gelu")
    if act not in ACTIVATIONS:
        raise PretrainedError(f"unsupported DistilBERT activation={act!r}; supported: {sorted(ACTIVATIONS)}")
    return bert_config(
        hf["vocab_size"], d_model=hf["dim"], n_heads=hf["n_heads"], d_ff=hf["hidden_dim"],
        n_encoder_layers=hf["n_layers"], activation=ACTIVATIONS[act], dropout=hf.get("dropout", 0.1),
        attention_dropout=hf.get("attention_dropout", 0.1), max_len=hf.get("max_position_embeddings", 512),
        type_vocab_size=0, norm_eps=1e-12, pad_id=hf.get("pad_token_id") or 0,
    )


def weight_map(n_layers: int) -> dict[str, list[str]]:
    """Rosetta parameter name → the DistilBERT names it is made of (q, k, v concatenated along dim 0)."""
    names = {
        "embeddings.token.weight": ["embeddings.word_embeddings.weight"],
        "embeddings.position.weight": ["embeddings.position_embeddings.weight"],
        "embeddings.norm.weight": ["embeddings.LayerNorm.weight"],
        "embeddings.norm.bias": ["embeddings.LayerNorm.bias"],
    }
    for i in range(n_layers):
        ours, hf = f"encoder.layers.{i}", f"transformer.layer.{i}"
        for p in ("weight", "bias"):
            names[f"{ours}.self_attn.qkv_proj.{p}"] = [f"{hf}.attention.{x}_lin.{p}" for x in "qkv"]
            names[f"{ours}.self_attn.out_proj.{p}"] = [f"{hf}.attention.out_lin.{p}"]
            names[f"{ours}.self_attn_norm.{p}"] = [f"{hf}.sa_layer_norm.{p}"]
            names[f"{ours}.feed_forward.w1.{p}"] = [f"{hf}.ffn.lin1.{p}"]
            names[f"{ours}.feed_forward.w2.{p}"] = [f"{hf}.ffn.lin2.{p}"]
            names[f"{ours}.feed_forward_norm.{p}"] = [f"{hf}.output_layer_norm.{p}"]
    return names


def config_to_hf(config: ModelConfig) -> dict[str, Any]:
    """An ``EncoderModel``'s ``ModelConfig`` in DistilBERT's layout → config.json (a dict) for DistilBertModel."""
    activation = check_layout(config, "DistilBERT", position_offset=0, type_vocab_size=0, norm_eps=1e-12)
    return {
        "model_type": "distilbert", "architectures": ["DistilBertModel"], "vocab_size": config.src_vocab_size,
        "dim": config.d_model, "n_layers": config.n_encoder_layers, "n_heads": config.n_heads,
        "hidden_dim": config.d_ff, "activation": activation, "dropout": config.dropout,
        "attention_dropout": config.attention_dropout, "seq_classif_dropout": config.dropout,
        "qa_dropout": config.dropout, "max_position_embeddings": config.max_len, "pad_token_id": config.pad_id,
        "sinusoidal_pos_embds": False, "initializer_range": config.init_std or 0.02, "tie_word_embeddings": True,
    }


def weights_to_hf(state, config: ModelConfig):
    """``EncoderModel`` state dict → DistilBertModel / DistilBert…For… tensors (a pooler has no counterpart)."""
    prefix = "distilbert." if any(k.startswith(HEAD_PREFIXES) for k in state) else ""
    return split_back(state, weight_map(config.n_encoder_layers), DISTILBERT_HEADS, prefix, "DistilBERT")


@register_hf("distilbert", family="encoder")
class DistilBert:
    config_from_hf = staticmethod(config_from_hf)
    config_to_hf = staticmethod(config_to_hf)
    weights_to_hf = staticmethod(weights_to_hf)

    @staticmethod
    def build(config: ModelConfig, hf: dict[str, Any], names: set[str]) -> EncoderModel:
        check_architectures(hf, DISTILBERT_ARCHITECTURES)
        heads = {DISTILBERT_HEADS[n] for n in (n.removeprefix("distilbert.") for n in names) if n in DISTILBERT_HEADS}
        return encoder_with_heads(config, hf, heads)

    @staticmethod
    def weights_from_hf(tensors, config: ModelConfig):
        tensors = {k.removeprefix("distilbert."): v for k, v in tensors.items()}
        heads = {DISTILBERT_HEADS[k]: tensors.pop(k) for k in list(tensors) if k in DISTILBERT_HEADS}
        state = rename_weights(tensors, weight_map(config.n_encoder_layers),
                               f"{config.n_encoder_layers}-layer DistilBERT", ignored=IGNORED)
        return with_heads(state, heads)

    @staticmethod
    def tokenizers(path: Path, hf: dict[str, Any]):
        return load_tokenizer(path), None
