"""Pegasus (``model_type: pegasus``; PegasusForConditionalGeneration) into Rosetta's encoder–decoder, and back.

transformers' Pegasus is Marian's layer stack (``rosetta.hub.marian``: biases everywhere, fused q/k/v here,
sinusoidal positions from 0 in the "halves" layout, ``final_logits_bias``) made Pre-LN, each choice a
``ModelConfig`` flag (``PEGASUS_LAYOUT``):

* Pre-LN layers, x + Sublayer(LayerNorm(x)), and a final LayerNorm after each stack (``norm_first``:
  ``model.encoder.layer_norm`` / ``model.decoder.layer_norm`` ← ``encoder.final_norm`` / ``decoder.final_norm``);
  LayerNorm ε 1e-5 (``nn.LayerNorm``'s default), no LayerNorm on the embeddings
* ONE token table for source and target (``model.shared``: ``share_embeddings``), tied to the output layer
  unless ``tie_word_embeddings`` is false (then each stack's ``embed_tokens`` and ``lm_head`` are in the file too)
* token embeddings × √d_model with ``scale_embedding``; ``activation_function`` (relu, gelu, silu, tanh-GELU)
* the sinusoid with base 10000, sines of all frequencies then their cosines (``sinusoidal_layout="halves"``,
  ``PegasusSinusoidalPositionalEmbedding.create_weight``); the file's ``embed_positions`` tables are written as
  that sinusoid and, read back, checked against it (transformers 5 loads the file's table, and computes it
  when missing: either way the same numbers)
* ids from config.json: pad, eos, and ``decoder_start_token_id`` (Pegasus: pad) as ``bos_id``

Tokenizers (``tokenizers``): a tokenizer.json (``rosetta.hub.exported``: Rosetta's own exports, or one
transformers saved), else Google's spiece.model numbered as ``PegasusTokenizer`` numbers it (``spiece_tokenizer``:
<pad> 0, </s> 1, <mask_1> 2, <mask_2> 3, <unk_2> … <unk_102> 4–104, then SentencePiece's pieces from its id 2 on,
shifted by 103).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from rosetta.data.sentencepiece import SentencePieceVocabTokenizer
from rosetta.hub import marian
from rosetta.hub.exported import has_tokenizer_json, read_tokenizers
from rosetta.hub.registry import register_hf
from rosetta.models.pretrained import CONFIG_FILE, PretrainedError
from rosetta.models.transformer import Transformer
from rosetta.nn.config import ModelConfig
from rosetta.nn.positional import sinusoidal_encoding

PEGASUS_LAYOUT: dict[str, Any] = dict(
    positional="sinusoidal", sinusoidal_layout="halves", position_offset=0, norm="layernorm", norm_eps=1e-5,
    norm_first=True, bias=True, embedding_norm=False, type_vocab_size=0, output_bias=True, scale_attention=True,
    scale_decoder_output=False, copy_attention=False, heads_per_layer=None, share_embeddings=True,
)
# Rosetta activation → the activation_function written back (each computes exactly what ours does)
ACTIVATION_NAMES = {"relu": "relu", "gelu": "gelu", "silu": "silu", "gelu_tanh": "gelu_pytorch_tanh"}
POSITIONS = ("model.encoder.embed_positions.weight", "model.decoder.embed_positions.weight")
SPIECE = "spiece.model"
OFFSET = 103  # PegasusTokenizer.offset: SentencePiece id i (i ≥ 2) is model id i + 103


def _one_id(hf: dict[str, Any], key: str, default: int) -> int:
    value = hf.get(key, default)
    return value[0] if isinstance(value, list) and len(value) == 1 else value


def config_from_hf(hf: dict[str, Any]) -> ModelConfig:
    """A Pegasus config.json → ``ModelConfig`` (``PEGASUS_LAYOUT``; PegasusConfig's defaults where it is silent).
    fairseq-era keys (normalize_before, add_final_layer_norm, static_position_embeddings) are not read: transformers'
    Pegasus ignores them too."""
    act = hf.get("activation_function", "gelu")
    if act not in marian.ACTIVATIONS:
        raise PretrainedError(f"{CONFIG_FILE}: activation_function {act!r} is not one Rosetta has "
                              f"({', '.join(sorted(marian.ACTIVATIONS))})")
    try:
        return ModelConfig(
            **PEGASUS_LAYOUT, src_vocab_size=hf["vocab_size"], tgt_vocab_size=hf["vocab_size"], d_model=hf["d_model"],
            n_heads=marian.same_width(hf, "encoder_attention_heads", "decoder_attention_heads", "Pegasus"),
            d_ff=marian.same_width(hf, "encoder_ffn_dim", "decoder_ffn_dim", "Pegasus"),
            n_encoder_layers=hf["encoder_layers"], n_decoder_layers=hf["decoder_layers"],
            dropout=hf.get("dropout", 0.1), attention_dropout=hf.get("attention_dropout", 0.0),
            activation_dropout=hf.get("activation_dropout", 0.0), activation=marian.ACTIVATIONS[act],
            pad_id=hf.get("pad_token_id", 0), bos_id=hf.get("decoder_start_token_id", 0),
            eos_id=_one_id(hf, "eos_token_id", 1), max_len=hf.get("max_position_embeddings", 1024),
            scale_embeddings=hf.get("scale_embedding", False), tie_output=hf.get("tie_word_embeddings", True),
        )
    except KeyError as e:
        raise PretrainedError(f"{CONFIG_FILE} lacks {e.args[0]!r}, which a Pegasus config has") from e
    except (TypeError, ValueError) as e:
        raise PretrainedError(f"{CONFIG_FILE} does not describe a model Rosetta can build: {e}") from e


def config_to_hf(config: ModelConfig) -> dict[str, Any]:
    """A ``ModelConfig`` in Pegasus's layout → a config.json ``PegasusForConditionalGeneration`` reads."""
    other = [f"{k}={getattr(config, k)!r}" for k, v in PEGASUS_LAYOUT.items() if getattr(config, k) != v]
    if config.activation not in ACTIVATION_NAMES:
        other.append(f"activation={config.activation!r}")
    if config.head_dim_k * config.n_heads != config.d_model or config.head_dim_v != config.head_dim_k:
        other.append(f"d_k={config.d_k!r}, d_v={config.d_v!r}")
    if other:
        raise ValueError(f"not Pegasus's layout ({', '.join(other)}); only a model built with PEGASUS_LAYOUT goes "
                         "back to a Pegasus directory")
    return {
        "model_type": "pegasus", "architectures": ["PegasusForConditionalGeneration"], "is_encoder_decoder": True,
        "vocab_size": config.src_vocab_size, "d_model": config.d_model,
        "encoder_layers": config.n_encoder_layers, "decoder_layers": config.n_decoder_layers,
        "encoder_attention_heads": config.n_heads, "decoder_attention_heads": config.n_heads,
        "encoder_ffn_dim": config.d_ff, "decoder_ffn_dim": config.d_ff,
        "activation_function": ACTIVATION_NAMES[config.activation], "dropout": config.dropout,
        "attention_dropout": config.attention_dropout, "activation_dropout": config.activation_dropout,
        "max_position_embeddings": config.max_len, "scale_embedding": config.scale_embeddings,
        "pad_token_id": config.pad_id, "eos_token_id": config.eos_id, "forced_eos_token_id": config.eos_id,
        "decoder_start_token_id": config.bos_id, "tie_word_embeddings": config.tie_output,
    }


def weight_map(config: ModelConfig) -> dict[str, tuple[str, ...]]:
    """Rosetta name → Hugging Face name(s): Marian's map of the layers plus each stack's final LayerNorm (the token
    table and output layer are ``marian.embedding_weights``')."""
    mapping = marian.weight_map(config)
    for stack in ("encoder", "decoder"):
        for kind in ("weight", "bias"):
            mapping[f"{stack}.final_norm.{kind}"] = (f"model.{stack}.layer_norm.{kind}",)
    return mapping


def check_positions(tensors: dict[str, torch.Tensor], config: ModelConfig) -> None:
    """A position table in the file must be the sinusoid Pegasus computes (which Rosetta computes too): transformers
    5 would run the file's table, so one that differs is refused rather than silently replaced."""
    for name in POSITIONS:
        if name in tensors:
            table = tensors[name].float()
            expected = sinusoidal_encoding(table.shape[0], config.d_model, layout="halves")
            if table.shape != expected.shape or not torch.allclose(table, expected, atol=1e-4):
                raise PretrainedError(f"model.safetensors: {name} is not the sinusoid Pegasus computes "
                                      "(PegasusSinusoidalPositionalEmbedding); Rosetta reads only that table")


def weights_from_hf(tensors: dict[str, torch.Tensor], config: ModelConfig) -> dict[str, torch.Tensor]:
    """Pegasus tensors → the ``Transformer`` state dict; missing and unknown weights are named."""
    check_positions(tensors, config)
    return marian.weights_from_hf(tensors, config, weight_map(config), ignored=POSITIONS, name="Pegasus")


def weights_to_hf(state: dict[str, torch.Tensor], config: ModelConfig) -> dict[str, torch.Tensor]:
    """A ``Transformer`` state dict in Pegasus's layout → PegasusForConditionalGeneration's tensors, with the
    position tables it computes (so that loading reports none missing)."""
    tensors = marian.weights_to_hf(state, config, weight_map(config))
    table = sinusoidal_encoding(config.max_len, config.d_model, layout="halves")
    tensors.update({name: table.clone() for name in POSITIONS})
    return tensors


class PegasusSpiece(SentencePieceVocabTokenizer):
    """Google's spiece.model with ``PegasusTokenizer``'s ids: ``decode`` skips every id below SentencePiece's first
    piece (<pad>, </s>, the masks, <unk_2> … <unk_102>, <unk>), as ``skip_special_tokens`` does."""

    def decode(self, ids) -> str:
        return super().decode([i for i in ids if int(i) > OFFSET + 2])


def spiece_tokenizer(path: Path, hf: dict[str, Any]) -> PegasusSpiece:
    """Google's spiece.model, its pieces numbered as ``PegasusTokenizer`` numbers them (module docstring)."""
    import sentencepiece

    file = path / SPIECE
    try:
        spm = sentencepiece.SentencePieceProcessor(model_file=str(file))
    except (RuntimeError, OSError) as e:
        raise PretrainedError(f"{file} is not a SentencePiece model ({str(e).splitlines()[0]}); copy it again"
                              ) from e
    vocab = {"<pad>": 0, "</s>": 1, "<mask_1>": 2, "<mask_2>": 3, **{f"<unk_{i}>": i + 2 for i in range(2, OFFSET)}}
    vocab.update({spm.id_to_piece(i): i + OFFSET for i in range(2, spm.get_piece_size())})
    if max(vocab.values()) >= hf["vocab_size"]:
        raise PretrainedError(f"{file} has ids up to {max(vocab.values())} but {CONFIG_FILE}'s model has "
                              f"{hf['vocab_size']} embeddings; the files belong to different models")
    tokenizer = PegasusSpiece(spm, vocab)
    tokenizer.bos_id = hf.get("decoder_start_token_id", tokenizer.pad_id)
    return tokenizer


def tokenizers(path: Path, hf: dict[str, Any]):
    """(source, target): tokenizer.json (``rosetta.hub.exported``), else spiece.model; one vocabulary both sides."""
    if has_tokenizer_json(path):
        return read_tokenizers(path, hf)
    if (path / SPIECE).is_file():
        tokenizer = spiece_tokenizer(path, hf)
        return tokenizer, tokenizer
    raise PretrainedError(f"{path} has no tokenizer: a Pegasus directory holds tokenizer.json or {SPIECE}")


@register_hf("pegasus", family="translation")
class Pegasus:
    config_from_hf = staticmethod(config_from_hf)
    config_to_hf = staticmethod(config_to_hf)
    weights_from_hf = staticmethod(weights_from_hf)
    weights_to_hf = staticmethod(weights_to_hf)
    tokenizers = staticmethod(tokenizers)

    @staticmethod
    def build(config: ModelConfig, hf: dict[str, Any], names: set[str]) -> Transformer:
        return Transformer(config)
