"""BART (``model_type: bart``; BartForConditionalGeneration, BartModel) into Rosetta's encoder–decoder, and back.

BART (Lewis et al. 2020) is Marian's layer layout (``rosetta.hub.marian``: Post-LN, biases, fused q/k/v, one shared
token table tied to the output, ``final_logits_bias``) with other choices at the embeddings, each a ``ModelConfig``
flag (``BART_LAYOUT``):

* learned positions, one table per stack, read from row 2 (``positional="learned"``, ``position_offset=2``:
  ``BartLearnedPositionalEmbedding``'s offset; its tables have max_position_embeddings + 2 rows = ``max_len``)
* a LayerNorm right after token + position embeddings, in the encoder and the decoder (``embedding_norm``:
  ``layernorm_embedding``)
* GELU (``activation_function``), token embeddings × √d_model only with ``scale_embedding`` (bart-base: no)
* ids: <s> 0, <pad> 1, </s> 2; a source is <s> text </s>; the decoder starts with ``decoder_start_token_id``
  (</s>), and ``generate`` forces <s> as the first token (``forced_bos_token_id``, ``rosetta.hub.generation``)

Weights: Marian's ``weight_map`` (layers, cross-attention, norms) and token tables, plus

    src_embed.position / tgt_embed.position .weight  ←  model.encoder / model.decoder .embed_positions.weight
    src_embed.norm / tgt_embed.norm                  ←  model.encoder / model.decoder .layernorm_embedding

Refused in one line (``UNSUPPORTED``): fairseq options transformers' BART does not run (a final LayerNorm per stack
as in mBART, Pre-LN, a logits bias, sinusoidal positions) and encoder / decoder of different widths. Tokenizer:
byte-level BPE (tokenizer.json, or vocab.json + merges.txt; ``rosetta.hub.byte_level``), source and target alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from rosetta.hub import marian
from rosetta.hub.byte_level import ByteLevelTokenizer
from rosetta.hub.registry import register_hf
from rosetta.models.pretrained import CONFIG_FILE, PretrainedError
from rosetta.nn.config import ModelConfig

POSITION_OFFSET = 2  # BartLearnedPositionalEmbedding.offset: token t reads row t + 2
BART_LAYOUT: dict[str, Any] = dict(
    positional="learned", position_offset=POSITION_OFFSET, embedding_norm=True, norm="layernorm", norm_eps=1e-5,
    norm_first=False, bias=True, type_vocab_size=0, output_bias=True, scale_attention=True,
    scale_decoder_output=False, copy_attention=False, heads_per_layer=None, share_embeddings=True,
)
# config.json options (fairseq's, kept by converted checkpoints) → the only value Rosetta's BART reads
UNSUPPORTED: dict[str, Any] = dict(add_final_layer_norm=False, normalize_before=False, add_bias_logits=False,
                                   static_position_embeddings=False)
ARCHITECTURES = ("BartForConditionalGeneration", "BartModel")
SPECIALS = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>",
            "mask_token": "<mask>"}  # BartTokenizer's, when tokenizer_config.json names none


def one_id(hf: dict[str, Any], key: str, default: int) -> int:
    """config.json's id ``key`` (``default`` when absent); a one-element list, as some configs write it, unwrapped."""
    value = hf.get(key, default)
    return value[0] if isinstance(value, list) and len(value) == 1 else value


def config_from_hf(hf: dict[str, Any]) -> ModelConfig:
    """A BART config.json → ``ModelConfig`` (``BART_LAYOUT``; the module docstring has the map). An option our
    blocks lack is a PretrainedError of one line naming it."""
    for option, plain in UNSUPPORTED.items():
        if hf.get(option, plain) != plain:
            raise PretrainedError(f"{CONFIG_FILE}: {option}={hf[option]!r} is not BART's layout as transformers runs "
                                  f"it (Rosetta's BART needs {plain}; mBART is model_type mbart)")
    other = [a for a in hf.get("architectures") or [] if a not in ARCHITECTURES]
    if other:
        raise PretrainedError(f"{CONFIG_FILE}: architecture {other[0]} is not read; Rosetta reads "
                              f"{' and '.join(ARCHITECTURES)} (the encoder–decoder with its language-model head)")
    act = hf.get("activation_function", "gelu")
    if act not in marian.ACTIVATIONS:
        raise PretrainedError(f"{CONFIG_FILE}: activation_function {act!r} is not one Rosetta has "
                              f"({', '.join(sorted(marian.ACTIVATIONS))})")
    try:
        return ModelConfig(
            **BART_LAYOUT, src_vocab_size=hf["vocab_size"], tgt_vocab_size=hf["vocab_size"], d_model=hf["d_model"],
            n_heads=marian.same_width(hf, "encoder_attention_heads", "decoder_attention_heads", "BART"),
            d_ff=marian.same_width(hf, "encoder_ffn_dim", "decoder_ffn_dim", "BART"),
            n_encoder_layers=hf["encoder_layers"], n_decoder_layers=hf["decoder_layers"],
            dropout=hf.get("dropout", 0.1), attention_dropout=hf.get("attention_dropout", 0.0),
            activation_dropout=hf.get("activation_dropout", 0.0), activation=marian.ACTIVATIONS[act],
            pad_id=hf.get("pad_token_id", 1), bos_id=hf.get("decoder_start_token_id", 2),
            eos_id=one_id(hf, "eos_token_id", 2), max_len=hf.get("max_position_embeddings", 1024) + POSITION_OFFSET,
            scale_embeddings=hf.get("scale_embedding", False), tie_output=hf.get("tie_word_embeddings", True),
        )
    except KeyError as e:
        raise PretrainedError(f"{CONFIG_FILE} lacks {e.args[0]!r}, which a BART config has") from e
    except (TypeError, ValueError) as e:
        raise PretrainedError(f"{CONFIG_FILE} does not describe a model Rosetta can build: {e}") from e


def config_to_hf(config: ModelConfig) -> dict[str, Any]:
    """A ``ModelConfig`` in BART's layout → a config.json ``BartForConditionalGeneration.from_pretrained`` reads."""
    other = [f"{k}={getattr(config, k)!r}" for k, v in BART_LAYOUT.items() if getattr(config, k) != v]
    if other or config.activation not in marian.ACTIVATION_NAMES or config.d_k or config.d_v:
        raise ValueError(f"not BART's layout ({', '.join(other) or f'activation={config.activation!r}'}); "
                         "only a model built with BART_LAYOUT goes back to a BART directory")
    activation = marian.ACTIVATION_NAMES[config.activation]
    return {
        "model_type": "bart", "architectures": ["BartForConditionalGeneration"], "is_encoder_decoder": True,
        "vocab_size": config.src_vocab_size, "d_model": config.d_model,
        "encoder_layers": config.n_encoder_layers, "decoder_layers": config.n_decoder_layers,
        "encoder_attention_heads": config.n_heads, "decoder_attention_heads": config.n_heads,
        "encoder_ffn_dim": config.d_ff, "decoder_ffn_dim": config.d_ff, "activation_function": activation,
        "dropout": config.dropout, "attention_dropout": config.attention_dropout,
        "activation_dropout": config.activation_dropout, "max_position_embeddings": config.max_len - POSITION_OFFSET,
        "scale_embedding": config.scale_embeddings, "pad_token_id": config.pad_id, "eos_token_id": config.eos_id,
        "forced_eos_token_id": config.eos_id, "decoder_start_token_id": config.bos_id,
        "tie_word_embeddings": config.tie_output,
    }


def weight_map(config: ModelConfig) -> dict[str, tuple[str, ...]]:
    """Rosetta name → Hugging Face name(s): Marian's map of the layers plus each stack's position table and
    embedding LayerNorm (the token tables and output layer are ``marian.embedding_weights``')."""
    mapping = marian.weight_map(config)
    for ours, stack in (("src_embed", "encoder"), ("tgt_embed", "decoder")):
        mapping[f"{ours}.position.weight"] = (f"model.{stack}.embed_positions.weight",)
        for kind in ("weight", "bias"):
            mapping[f"{ours}.norm.{kind}"] = (f"model.{stack}.layernorm_embedding.{kind}",)
    return mapping


def weights_from_hf(tensors: dict[str, torch.Tensor], config: ModelConfig) -> dict[str, torch.Tensor]:
    """BART tensors (BartForConditionalGeneration's, or BartModel's: names without "model.", no lm_head or
    final_logits_bias, then tied and zero) → the ``Transformer`` state dict; missing and unknown weights are named."""
    if not any(name.startswith("model.") for name in tensors):  # a bare BartModel
        tensors = {f"model.{name}": tensor for name, tensor in tensors.items()}
    return marian.weights_from_hf(tensors, config, weight_map(config), ignored=(), name="BART")


def weights_to_hf(state: dict[str, torch.Tensor], config: ModelConfig) -> dict[str, torch.Tensor]:
    """A ``Transformer`` state dict in BART's layout → BartForConditionalGeneration's tensors."""
    return marian.weights_to_hf(state, config, weight_map(config))


class BartTokenizer(ByteLevelTokenizer):
    """BART's byte-level BPE: ``encode`` adds nothing, ``frame_source`` makes <s> ids </s> (BartTokenizer's
    ``input_ids``); ``bos_id`` here is <s>, not the decoder's start token (config.json's decoder_start_token_id)."""

    def frame_source(self, ids: Sequence[int]) -> list[int]:
        """A source as BART's encoder reads it: <s> ids </s>."""
        return [self.bos_id, *ids, self.eos_id]


def tokenizers(path: Path, hf: dict[str, Any]) -> tuple[BartTokenizer, BartTokenizer]:
    """The directory's byte-level BPE for source and target; a vocabulary larger than the model's is an error."""
    tokenizer = BartTokenizer.load(path, hf.get("pad_token_id", 1), one_id(hf, "bos_token_id", 0),
                                   one_id(hf, "eos_token_id", 2), SPECIALS)
    if tokenizer.vocab_size > hf["vocab_size"]:
        raise PretrainedError(f"{path}: the tokenizer has {tokenizer.vocab_size} tokens but {CONFIG_FILE} says "
                              f"vocab_size={hf['vocab_size']}; the files belong to different models")
    return tokenizer, tokenizer


@register_hf("bart", family="translation")
class Bart:
    config_from_hf = staticmethod(config_from_hf)
    config_to_hf = staticmethod(config_to_hf)
    weights_from_hf = staticmethod(weights_from_hf)
    weights_to_hf = staticmethod(weights_to_hf)
    tokenizers = staticmethod(tokenizers)
