"""A Rosetta ``Transformer`` as a CTranslate2 model, through CTranslate2's Python ``specs`` API.

The model's flags map onto ``TransformerEncoderSpec`` / ``TransformerDecoderSpec``:

    Rosetta (ModelConfig)                 CTranslate2 (spec)
    norm_first (Pre-LN) / Post-LN         pre_norm=True / False; Pre-LN's final norm → encoder/decoder.layer_norm
    norm = layernorm / rmsnorm            LayerNormSpec(gamma, beta) / rms_norm=True (gamma); config.layer_norm_epsilon
    activation relu, gelu, gelu_tanh,     Activation.RELU, GELU (erf), GELUTanh,
      silu (Marian's swish)               SWISH
    swiglu / geglu                        ffn_glu=True, SWISH / GELUTanh: act(x W1) ⊙ x W3 → linear_0, linear_0_noact
    positional sinusoidal / learned       position_encodings.encodings = the table / the learned rows (both as a table)
    sinusoidal_layout (halves: Marian)    the table in that layout
    position_offset (BART, RoBERTa)       the table from that row on (CTranslate2 counts positions from 0)
    scale_embeddings (× √d_model)         scale_embeddings
    embedding_norm                        layernorm_embedding
    scale_attention = False (T5)          queries_scale = 1.0 on every attention
    scale_decoder_output (T5, tied)       decoder.scale_outputs = d_model^-½
    qkv_proj [Q; K; V], kv_proj [K; V]    self_attention.linear[0] (fused QKV), attention.linear[1] (fused KV)
    output Linear (tied or not)           decoder.projection
    output_bias (final_logits_bias)       decoder.projection.bias

What CTranslate2's Transformer cannot express is refused with the reason: rotary positions (its encoder–decoder
spec has none), no positions, T5's relative position bias (its table is per layer there, bucketed from its own
config), a pruned model whose layers have different head counts, d_k ≠ d_v.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from rosetta.models.transformer import Transformer
from rosetta.nn.attention import MultiHeadAttention
from rosetta.nn.positional import LearnedPositionalEmbedding, sinusoidal_encoding

ACTIVATIONS = {"relu": ("RELU", False), "gelu": ("GELU", False), "gelu_tanh": ("GELUTanh", False),
               "silu": ("SWISH", False), "swiglu": ("SWISH", True), "geglu": ("GELUTanh", True)}
QUANTIZATIONS = ("int8", "int8_float32", "int8_float16", "int8_bfloat16", "int16", "float16", "bfloat16",
                 "float32")


def check_convertible(model: Transformer) -> None:
    """Raise ValueError naming every setting of ``model`` that CTranslate2's Transformer cannot express."""
    config, problems = model.config, []
    if config.positional not in ("sinusoidal", "learned"):
        problems.append(f"positional={config.positional!r} (CTranslate2's encoder–decoder adds a position table: "
                        "sinusoidal or learned)")
    heads = {m.n_heads for m in model.modules() if isinstance(m, MultiHeadAttention)}
    if len(heads) > 1:
        problems.append(f"a pruned model with {sorted(heads)} heads in different layers (CTranslate2 has one head "
                        "count for the whole model)")
    if config.head_dim_k != config.head_dim_v:
        problems.append(f"d_k={config.head_dim_k} ≠ d_v={config.head_dim_v} (CTranslate2 has one head size)")
    if config.copy_attention:
        raise ValueError("CTranslate2 and the exported ONNX graphs have no copy gate: a copy_attention model "
                         "(pointer-generator) runs in PyTorch only (rosetta translate / serve --model RUN)")
    if problems:
        raise ValueError("CTranslate2 cannot express this model: " + "; ".join(problems)
                         + ". Export it to ONNX instead (rosetta export --format onnx), which runs any Rosetta model")


def _array(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().cpu().numpy()


def _linear(spec, linear: nn.Linear) -> None:
    spec.weight = _array(linear.weight)
    if linear.bias is not None:
        spec.bias = _array(linear.bias)


def _norm(spec, norm: nn.Module) -> None:
    spec.gamma = _array(norm.weight)
    if getattr(norm, "bias", None) is not None:
        spec.beta = _array(norm.bias)


def _attention(spec, attn: nn.Module, scale_attention: bool) -> None:
    """Rosetta's projections are fused the way CTranslate2 wants them: [Q; K; V] for self-attention, [K; V] for
    cross-attention (whose queries come separately)."""
    if attn.cross:
        _linear(spec.linear[0], attn.q_proj)
        _linear(spec.linear[1], attn.kv_proj)
    else:
        _linear(spec.linear[0], attn.qkv_proj)
    _linear(spec.linear[-1], attn.out_proj)
    if not scale_attention:
        spec.queries_scale = np.float32(1.0)


def _layer(spec, layer: nn.Module, scale_attention: bool) -> None:
    _attention(spec.self_attention, layer.self_attn, scale_attention)
    _norm(spec.self_attention.layer_norm, layer.self_attn_norm)
    if layer.cross_attn is not None:
        _attention(spec.attention, layer.cross_attn, scale_attention)
        _norm(spec.attention.layer_norm, layer.cross_attn_norm)
    ff = layer.feed_forward
    _linear(spec.ffn.linear_0, ff.w1)
    _linear(spec.ffn.linear_1, ff.w2)
    if ff.w3 is not None:
        _linear(spec.ffn.linear_0_noact, ff.w3)
    _norm(spec.ffn.layer_norm, layer.feed_forward_norm)


def _embeddings(spec, embed: nn.Module, config, token_spec) -> None:
    """Token table, position table (sinusoidal in the model's layout, or the learned rows; from the model's
    first position row on), scale, norm."""
    token_spec.weight = _array(embed.token.weight)
    first = config.position_offset
    if isinstance(embed.position, LearnedPositionalEmbedding):
        spec.position_encodings.encodings = _array(embed.position.weight[first:])
    else:
        table = sinusoidal_encoding(config.max_len, config.d_model, layout=config.sinusoidal_layout)
        spec.position_encodings.encodings = _array(table[first:])
    spec.scale_embeddings = bool(config.scale_embeddings)
    if embed.norm is not None:
        _norm(spec.layernorm_embedding, embed.norm)


def transformer_spec(model: Transformer):
    """The ``ctranslate2.specs.TransformerSpec`` of ``model``, weights filled in (vocabularies not yet)."""
    from ctranslate2.specs import common_spec, transformer_spec

    check_convertible(model)
    config = model.config
    activation, glu = ACTIVATIONS[config.activation]
    common = dict(pre_norm=config.norm_first, activation=getattr(common_spec.Activation, activation),
                  layernorm_embedding=config.embedding_norm, ffn_glu=glu, rms_norm=config.norm == "rmsnorm")
    heads = model.decoder.layers[0].self_attn.n_heads
    head_dim = config.head_dim_k if config.head_dim_k * heads != config.d_model else None
    encoder = transformer_spec.TransformerEncoderSpec(config.n_encoder_layers, heads, head_dim=head_dim, **common)
    decoder = transformer_spec.TransformerDecoderSpec(config.n_decoder_layers, heads, head_dim=head_dim, **common)
    spec = transformer_spec.TransformerSpec(encoder, decoder)
    spec.config.layer_norm_epsilon = config.norm_eps

    _embeddings(encoder, model.src_embed, config, encoder.embeddings[0])
    _embeddings(decoder, model.tgt_embed, config, decoder.embeddings)
    for stack, layers_spec in ((model.encoder, encoder.layer), (model.decoder, decoder.layer)):
        for layer_spec, layer in zip(layers_spec, stack.layers):
            _layer(layer_spec, layer, config.scale_attention)
    if config.norm_first:
        _norm(encoder.layer_norm, model.encoder.final_norm)
        _norm(decoder.layer_norm, model.decoder.final_norm)
    _linear(decoder.projection, model.output)  # with Marian's final_logits_bias when the model has one
    if config.scale_decoder_output:
        decoder.scale_outputs = np.float32(config.d_model**-0.5)
    return spec


def vocabulary(tokenizer, config, source: bool) -> list[str]:
    """The token of every row of the embedding table (row i is id i), as CTranslate2 wants one string per row:
    ids the tokenizer does not name (rows beyond a Hugging Face vocabulary) get unique placeholders."""
    rows = config.src_vocab_size if source else config.tgt_vocab_size
    tokens = [tokenizer.id_to_token(i) for i in range(rows)]
    return [t if t is not None else f"<unused{i}>" for i, t in enumerate(tokens)]


def export_ctranslate2(model: Transformer, src_tokenizer, tgt_tokenizer, out: str | Path,
                       quantization: str | None = None) -> Path:
    """Write ``model`` as a CTranslate2 model directory ``out`` (model.bin, vocabularies, CTranslate2's
    config.json). ``quantization``: CTranslate2's weight type (int8, int16, float16, …); None keeps float32."""
    if quantization is not None and quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization {quantization!r} is not one of CTranslate2's: {', '.join(QUANTIZATIONS)}")
    spec = transformer_spec(model)
    spec.register_source_vocabulary(vocabulary(src_tokenizer, model.config, source=True))
    spec.register_target_vocabulary(vocabulary(tgt_tokenizer, model.config, source=False))
    config = model.config
    spec.config.add_source_eos = False  # Rosetta's sources already end in </s>
    spec.config.bos_token = spec.config.decoder_start_token = tgt_tokenizer.id_to_token(config.bos_id)
    spec.config.eos_token = tgt_tokenizer.id_to_token(config.eos_id)
    spec.validate()
    spec.optimize(quantization=quantization)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    spec.save(str(out))
    return out
