"""Marian / opus-mt (``model_type: marian``) into Rosetta's encoder–decoder ``Transformer``, and back.

Marian is the paper's Transformer with a few choices, each a ``ModelConfig`` flag (``MARIAN_LAYOUT``):

* Post-LN layers, LayerNorm ε 1e-5, biases everywhere, no LayerNorm on the embeddings
* token embeddings × √d_model (``scale_embedding``), one table for source and target
  (``share_encoder_decoder_embeddings``), tied to the output layer (``tie_word_embeddings``)
* sinusoidal positions from 0, sines of all frequencies in the first half of the vector and cosines in the
  second (``sinusoidal_layout="halves"``)
* feed-forward activation swish = SiLU (``activation_function``; "silu" here)
* an output bias, ``final_logits_bias`` (``output_bias``)
* token ids: </s> = eos (0 in opus-mt), <pad> = the last id, and the decoder starts with <pad>
  (``decoder_start_token_id``): bos_id = pad_id, which the decoder treats as a real first token

Weights (``weight_map``; Rosetta name ← Hugging Face names, concatenated along dim 0 where several):

    src_embed.token / tgt_embed.token / output .weight   ←  model.shared.weight (or the per-stack embed_tokens)
    output.bias                                          ←  final_logits_bias[0]
    encoder.layers.i.self_attn.qkv_proj                  ←  model.encoder.layers.i.self_attn.{q,k,v}_proj
    encoder.layers.i.self_attn.out_proj                  ←  … self_attn.out_proj
    encoder.layers.i.self_attn_norm                      ←  … self_attn_layer_norm
    encoder.layers.i.feed_forward.w1 / w2                ←  … fc1 / fc2
    encoder.layers.i.feed_forward_norm                   ←  … final_layer_norm
    decoder.layers.i.*                                   ←  model.decoder.layers.i.* as above, and
    decoder.layers.i.cross_attn.q_proj / kv_proj         ←  … encoder_attn.q_proj / encoder_attn.{k,v}_proj
    decoder.layers.i.cross_attn.out_proj, cross_attn_norm ← … encoder_attn.out_proj, encoder_attn_layer_norm

The positions' table (embed_positions) is not a weight: both sides compute it. Tokenizers:
``rosetta.data.sentencepiece`` (source.spm / target.spm + vocab.json), or, in a directory Rosetta exported
(``rosetta export --format huggingface``), tokenizer.json and target/tokenizer.json (``rosetta.hub.exported``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from rosetta.data.sentencepiece import marian_tokenizers
from rosetta.hub.exported import has_tokenizer_json, read_tokenizers
from rosetta.hub.registry import register_hf
from rosetta.models.pretrained import PretrainedError
from rosetta.nn.config import ModelConfig

MARIAN_LAYOUT: dict[str, Any] = dict(
    positional="sinusoidal", sinusoidal_layout="halves", norm="layernorm", norm_eps=1e-5, norm_first=False,
    bias=True, embedding_norm=False, type_vocab_size=0, output_bias=True, scale_attention=True,
    scale_decoder_output=False, copy_attention=False, heads_per_layer=None,
)
# Hugging Face ``activation_function`` → Rosetta ``activation`` (swish is SiLU)
ACTIVATIONS = {"swish": "silu", "silu": "silu", "gelu": "gelu", "relu": "relu", "gelu_new": "gelu_tanh",
               "gelu_pytorch_tanh": "gelu_tanh"}
# Rosetta ``activation`` → the name written back: the one transformers computes exactly as we do (Marian, BART,
# Pegasus and the export of Rosetta's own translation models)
ACTIVATION_NAMES = {"relu": "relu", "gelu": "gelu", "silu": "silu", "gelu_tanh": "gelu_pytorch_tanh"}
EMBEDDINGS = ("model.shared.weight", "model.encoder.embed_tokens.weight", "model.decoder.embed_tokens.weight",
              "lm_head.weight")
IGNORED = ("model.encoder.embed_positions.weight", "model.decoder.embed_positions.weight")


def same_width(hf: dict[str, Any], a: str, b: str, name: str = "Marian") -> Any:
    """config.json's ``a`` (an encoder size), refused in one line when ``b`` (the decoder's) differs."""
    if hf.get(a) != hf.get(b, hf.get(a)):
        raise PretrainedError(f"config.json: {a}={hf.get(a)} ≠ {b}={hf.get(b)}; Rosetta's {name} needs the "
                              "encoder and decoder to have the same width")
    return hf[a]


def config_from_hf(hf: dict[str, Any]) -> ModelConfig:
    """A Marian config.json → ``ModelConfig`` (Marian's layout; the map is the module docstring)."""
    act = hf.get("activation_function", "gelu")
    if act not in ACTIVATIONS:
        raise PretrainedError(f"config.json: activation_function {act!r} is not one Rosetta has "
                              f"({', '.join(sorted(ACTIVATIONS))})")
    if hf.get("normalize_before") or hf.get("normalize_embedding"):
        raise PretrainedError("config.json: normalize_before / normalize_embedding are not Marian's layout as "
                              "transformers runs it (Post-LN, no embedding norm)")
    share = hf.get("share_encoder_decoder_embeddings", True)
    vocab = hf["vocab_size"]
    eos = hf.get("eos_token_id", 0)
    try:
        return ModelConfig(
            **MARIAN_LAYOUT,
            src_vocab_size=vocab, tgt_vocab_size=vocab if share else (hf.get("decoder_vocab_size") or vocab),
            d_model=hf["d_model"], n_heads=same_width(hf, "encoder_attention_heads", "decoder_attention_heads"),
            d_ff=same_width(hf, "encoder_ffn_dim", "decoder_ffn_dim"),
            n_encoder_layers=hf["encoder_layers"], n_decoder_layers=hf["decoder_layers"],
            dropout=hf.get("dropout", 0.1), attention_dropout=hf.get("attention_dropout", 0.0),
            activation_dropout=hf.get("activation_dropout", 0.0),
            pad_id=hf["pad_token_id"], bos_id=hf.get("decoder_start_token_id", hf["pad_token_id"]),
            eos_id=eos[0] if isinstance(eos, list) else eos, max_len=hf.get("max_position_embeddings", 1024),
            activation=ACTIVATIONS[act], scale_embeddings=hf.get("scale_embedding", False),
            share_embeddings=share, tie_output=hf.get("tie_word_embeddings", True),
        )
    except KeyError as e:
        raise PretrainedError(f"config.json lacks {e.args[0]!r}, which a Marian config has") from e
    except ValueError as e:
        raise PretrainedError(f"config.json does not describe a model Rosetta can build: {e}") from e


def config_to_hf(config: ModelConfig) -> dict[str, Any]:
    """A ``ModelConfig`` in Marian's layout → a config.json ``MarianMTModel.from_pretrained`` reads."""
    other = [f"{k}={getattr(config, k)!r}" for k, v in MARIAN_LAYOUT.items() if getattr(config, k) != v]
    if other or config.activation not in ACTIVATION_NAMES or config.d_k or config.d_v:
        raise ValueError(f"not Marian's layout ({', '.join(other) or f'activation={config.activation!r}'}); "
                         "only a model built with MARIAN_LAYOUT goes back to a Marian directory")
    activation = ACTIVATION_NAMES[config.activation]
    return {
        "model_type": "marian", "architectures": ["MarianMTModel"], "is_encoder_decoder": True,
        "vocab_size": config.src_vocab_size, "decoder_vocab_size": config.tgt_vocab_size,
        "d_model": config.d_model, "encoder_layers": config.n_encoder_layers,
        "decoder_layers": config.n_decoder_layers, "encoder_attention_heads": config.n_heads,
        "decoder_attention_heads": config.n_heads, "encoder_ffn_dim": config.d_ff, "decoder_ffn_dim": config.d_ff,
        "activation_function": activation, "dropout": config.dropout,
        "attention_dropout": config.attention_dropout, "activation_dropout": config.activation_dropout,
        "max_position_embeddings": config.max_len, "scale_embedding": config.scale_embeddings,
        "pad_token_id": config.pad_id, "eos_token_id": config.eos_id, "forced_eos_token_id": config.eos_id,
        "decoder_start_token_id": config.bos_id, "share_encoder_decoder_embeddings": config.share_embeddings,
        "tie_word_embeddings": config.tie_output,
    }


def weight_map(config: ModelConfig) -> dict[str, tuple[str, ...]]:
    """Rosetta name → the Hugging Face names it is made of (concatenated along dim 0), for every layer weight
    and bias; the embeddings and the output layer are ``weights_from_hf``'s (their names have aliases)."""
    mapping: dict[str, tuple[str, ...]] = {}

    def add(ours: str, hf: str, *parts: str) -> None:
        for kind in ("weight", "bias"):
            mapping[f"{ours}.{kind}"] = tuple(f"{hf}.{p}.{kind}" for p in parts)

    for stack, n in (("encoder", config.n_encoder_layers), ("decoder", config.n_decoder_layers)):
        for i in range(n):
            ours, hf = f"{stack}.layers.{i}", f"model.{stack}.layers.{i}"
            add(f"{ours}.self_attn.qkv_proj", f"{hf}.self_attn", "q_proj", "k_proj", "v_proj")
            add(f"{ours}.self_attn.out_proj", f"{hf}.self_attn", "out_proj")
            add(f"{ours}.self_attn_norm", hf, "self_attn_layer_norm")
            if stack == "decoder":
                add(f"{ours}.cross_attn.q_proj", f"{hf}.encoder_attn", "q_proj")
                add(f"{ours}.cross_attn.kv_proj", f"{hf}.encoder_attn", "k_proj", "v_proj")
                add(f"{ours}.cross_attn.out_proj", f"{hf}.encoder_attn", "out_proj")
                add(f"{ours}.cross_attn_norm", hf, "encoder_attn_layer_norm")
            add(f"{ours}.feed_forward.w1", hf, "fc1")
            add(f"{ours}.feed_forward.w2", hf, "fc2")
            add(f"{ours}.feed_forward_norm", hf, "final_layer_norm")
    return mapping


def _first(tensors: dict[str, torch.Tensor], names: tuple[str, ...], what: str) -> tuple[str, torch.Tensor]:
    for name in names:
        if name in tensors:
            return name, tensors[name]
    raise PretrainedError(f"model.safetensors has no {what} (looked for {', '.join(names)})")


def embedding_weights(tensors: dict[str, torch.Tensor],
                      config: ModelConfig) -> tuple[dict[str, torch.Tensor], set[str]]:
    """The token tables and output layer (Rosetta names), and the Hugging Face names they may come from."""
    if config.share_embeddings:
        _, shared = _first(tensors, EMBEDDINGS, "token embedding")
        src = tgt = shared
    else:
        _, src = _first(tensors, EMBEDDINGS[1:2], "encoder token embedding")
        _, tgt = _first(tensors, EMBEDDINGS[2:3], "decoder token embedding")
    out = tgt if config.tie_output else _first(tensors, EMBEDDINGS[3:], "output layer")[1]
    bias = tensors.get("final_logits_bias", torch.zeros(1, config.tgt_vocab_size))  # optional in transformers too
    state = {"src_embed.token.weight": src, "tgt_embed.token.weight": tgt, "output.weight": out,
             "output.bias": bias.reshape(-1)}
    return state, {*EMBEDDINGS, "final_logits_bias"}


def weights_from_hf(tensors: dict[str, torch.Tensor], config: ModelConfig,
                    mapping: dict[str, tuple[str, ...]] | None = None, ignored: tuple[str, ...] = IGNORED,
                    name: str = "Marian") -> dict[str, torch.Tensor]:
    """Marian tensors (by name) → the ``Transformer`` state dict. PretrainedError names every missing weight,
    and every unknown one (a sign of another architecture or another number of layers). ``mapping`` (default
    ``weight_map(config)``), ``ignored`` and ``name`` let a family of the same layout with more weights (BART:
    positions and embedding norms) reuse it."""
    mapping = weight_map(config) if mapping is None else mapping
    missing = [hf for parts in mapping.values() for hf in parts if hf not in tensors]
    if missing:
        raise PretrainedError(f"{len(missing)} weights missing from the checkpoint for a "
                              f"{config.n_encoder_layers}+{config.n_decoder_layers}-layer {name} model: "
                              f"{', '.join(missing[:6])}" + (" …" if len(missing) > 6 else ""))
    state, used = embedding_weights(tensors, config)
    used |= {hf for parts in mapping.values() for hf in parts} | set(ignored)
    unknown = sorted(set(tensors) - used)
    if unknown:
        raise PretrainedError(f"unexpected weights for a {config.n_encoder_layers}+{config.n_decoder_layers}-layer "
                              f"{name} model: {', '.join(unknown[:6])}" + (" …" if len(unknown) > 6 else ""))
    for ours, parts in mapping.items():
        state[ours] = torch.cat([tensors[hf] for hf in parts]) if len(parts) > 1 else tensors[parts[0]]
    return state


def weights_to_hf(state: dict[str, torch.Tensor], config: ModelConfig,
                  mapping: dict[str, tuple[str, ...]] | None = None) -> dict[str, torch.Tensor]:
    """A ``Transformer`` state dict in Marian's layout → the tensors of a Marian model.safetensors (the inverse
    of ``weights_from_hf``: fused projections split back into equal parts, since d_k = d_v = d_model / H).
    ``mapping``: as ``weights_from_hf``'s."""
    tensors: dict[str, torch.Tensor] = {}
    for ours, parts in (weight_map(config) if mapping is None else mapping).items():
        for hf, piece in zip(parts, state[ours].chunk(len(parts))):
            tensors[hf] = piece.contiguous()
    if config.share_embeddings:
        tensors["model.shared.weight"] = state["src_embed.token.weight"]
        if not config.tie_output:  # transformers 5 then ties nothing: each stack reads its own embed_tokens
            tensors["model.encoder.embed_tokens.weight"] = state["src_embed.token.weight"]
            tensors["model.decoder.embed_tokens.weight"] = state["tgt_embed.token.weight"]
    else:
        tensors["model.encoder.embed_tokens.weight"] = state["src_embed.token.weight"]
        tensors["model.decoder.embed_tokens.weight"] = state["tgt_embed.token.weight"]
    if not config.tie_output:
        tensors["lm_head.weight"] = state["output.weight"]
    tensors["final_logits_bias"] = state["output.bias"].reshape(1, -1)
    return {k: v.detach().clone().contiguous() for k, v in tensors.items()}


def tokenizers(path: Path, hf: dict[str, Any]):
    """(source, target) ``SentencePieceVocabTokenizer``s; a vocabulary larger than the model's is an error. A
    directory of Rosetta's own export (tokenizer.json, no source.spm: ``rosetta.hub.exported``) gives its
    tokenizers instead."""
    if not (path / "source.spm").is_file() and has_tokenizer_json(path):
        return read_tokenizers(path, hf)
    config_file = path / "tokenizer_config.json"
    separate = False
    if config_file.is_file():
        try:
            separate = bool(json.loads(config_file.read_text(encoding="utf-8")).get("separate_vocabs", False))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise PretrainedError(f"{config_file} is not valid JSON ({e}); copy it again") from e
    src, tgt = marian_tokenizers(path, separate)
    sizes = (hf["vocab_size"], hf.get("decoder_vocab_size") or hf["vocab_size"])
    for side, tok, size in (("source", src, sizes[0]), ("target", tgt, sizes[1])):
        if max(tok.vocab.values()) >= size:
            raise PretrainedError(f"{path}: the {side} vocabulary has ids up to {max(tok.vocab.values())} but "
                                  f"config.json's model has {size} embeddings; the files belong to different models")
    return src, tgt


@register_hf("marian", family="translation")
class Marian:
    config_from_hf = staticmethod(config_from_hf)
    config_to_hf = staticmethod(config_to_hf)
    weights_from_hf = staticmethod(weights_from_hf)
    weights_to_hf = staticmethod(weights_to_hf)
    tokenizers = staticmethod(tokenizers)
