"""T5 (Raffel et al., 2020, "Exploring the Limits of Transfer Learning with a Unified Text-to-Text
Transformer"): the encoder–decoder ``Transformer`` with flags, not another model.

    src ids ─ shared Embedding ─ Encoder: N × Pre-RMSNorm (self-attn + rel. bias, FFN) ─ RMSNorm ─ memory
    tgt ids ─ shared Embedding ─ Decoder: N × Pre-RMSNorm (causal self-attn + rel. bias, cross-attn, FFN) ─ RMSNorm
                                 ─ [× d_model^-½ when tied] ─ Linear ─ logits

What differs from the paper's Transformer, and the flag for it (``T5_LAYOUT``):

* positions: no vectors added to the embeddings; a learned bias per head and bucket of key − query offsets
  on the self-attention logits, one table per stack  (``positional="relative"``, ``relative_buckets``,
  ``relative_max_distance``)
* attention logits Q Kᵀ without 1/√d_k, folded into W^Q's initialisation instead  (``scale_attention=False``)
* Pre-LN with RMSNorm (T5LayerNorm), ε 1e-6, a final norm in both stacks  (``norm_first``, ``norm="rmsnorm"``)
* no bias in any Linear; embeddings not multiplied by √d_model; one embedding table for encoder and decoder
* feed-forward: ReLU (T5) or gated GELU (T5 v1.1, ``activation="geglu"``)
* output layer tied to the embedding with the decoder output × d_model^-½ (T5), or untied and unscaled
  (T5 v1.1)  (``tie_output``, ``scale_decoder_output``)

Token ids: ``t5_config`` keeps Rosetta's (pad 0, bos 1, eos 2, ``rosetta.special_tokens``). T5's own
vocabulary starts the decoder with the pad token (pad = decoder start = 0, eos = 1); ``t5_config_from_hf``
takes its ids, and the model then treats position 0 of a target as a real token (``bos_id == pad_id``).

``t5_config_from_hf`` and ``t5_weights_from_hf`` read a Hugging Face T5 config and state dict (nothing is
downloaded here); tests/test_t5.py checks the result against ``transformers``' ``T5ForConditionalGeneration``.
The way back, their exact inverses: ``t5_config_to_hf`` (a config.json ``T5ForConditionalGeneration`` reads; a
flag T5 has no counterpart for is a one-line ValueError naming it) and ``t5_weights_to_hf`` (q, k, v split, each
stack's relative bias on its block 0, ``lm_head.weight`` only when untied) — both read one name table,
``t5_weight_map``, one forwards and one backwards. They are also the way out of Rosetta's
own runs in T5's layout (``rosetta.compress.hf_translation``), whose ids config.json keeps: pad 0, eos 2 and
decoder_start_token_id = ``bos_id`` 1, the token Rosetta's decoder starts from.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from rosetta.nn.config import ModelConfig

T5_LAYOUT: dict[str, Any] = dict(
    positional="relative", relative_buckets=32, relative_max_distance=128, scale_attention=False,
    norm="rmsnorm", norm_eps=1e-6, norm_first=True, activation="relu", bias=False, scale_embeddings=False,
    embedding_norm=False, type_vocab_size=0, share_embeddings=True, tie_output=True,
    dropout=0.1, attention_dropout=0.1, activation_dropout=0.1,
)

# Hugging Face ``feed_forward_proj`` → Rosetta activation ("gated-gelu" is T5 v1.1's tanh-GELU gate).
FEED_FORWARD = {"relu": "relu", "gelu": "gelu", "gated-gelu": "geglu", "gated-silu": "swiglu"}
# Flags the way back needs at exactly these values (T5's blocks have no other; ``t5_config_to_hf``).
FIXED: dict[str, Any] = {**{k: T5_LAYOUT[k] for k in ("positional", "scale_attention", "norm", "norm_first", "bias",
                                                      "scale_embeddings", "embedding_norm", "type_vocab_size",
                                                      "share_embeddings")},
                         "heads_per_layer": None, "copy_attention": False, "output_bias": False, "position_offset": 0}


def t5_config(vocab_size: int, **overrides: Any) -> ModelConfig:
    """A ``ModelConfig`` with T5's layout, t5-small's sizes (the ``ModelConfig`` defaults: d_model 512, 8 heads
    of 64, d_ff 2048, 6 + 6 layers) and ``vocab_size`` tokens shared by source and target.

    ``scale_decoder_output`` follows ``tie_output`` unless given. T5 v1.1:
    ``t5_config(v, activation="geglu", tie_output=False)``."""
    merged = {**T5_LAYOUT, "src_vocab_size": vocab_size, "tgt_vocab_size": vocab_size, **overrides}
    merged.setdefault("scale_decoder_output", merged["tie_output"])
    return ModelConfig(**merged)


def t5_config_from_hf(hf: Mapping[str, Any], **overrides: Any) -> ModelConfig:
    """A Hugging Face T5 ``config.json`` (or ``T5Config.to_dict()``) → ``ModelConfig``, with T5's token ids
    (pad = decoder start, eos).

    Whether the output layer is tied: ``scale_decoder_outputs`` when present (transformers ≥ 5 keeps the
    checkpoint's ``tie_word_embeddings`` there and forces the field itself to True), else
    ``tie_word_embeddings``."""
    projection = hf.get("feed_forward_proj", "relu")
    if projection not in FEED_FORWARD:
        raise ValueError(f"unsupported T5 feed_forward_proj={projection!r}; supported: {sorted(FEED_FORWARD)}")
    tied = bool(hf.get("scale_decoder_outputs", hf.get("tie_word_embeddings", True)))
    pad = hf.get("pad_token_id", 0)
    start = hf.get("decoder_start_token_id")
    fields = dict(
        d_model=hf["d_model"], n_heads=hf["num_heads"], d_k=hf["d_kv"], d_v=hf["d_kv"], d_ff=hf["d_ff"],
        n_encoder_layers=hf["num_layers"], n_decoder_layers=hf.get("num_decoder_layers") or hf["num_layers"],
        relative_buckets=hf.get("relative_attention_num_buckets", 32),
        relative_max_distance=hf.get("relative_attention_max_distance", 128),
        norm_eps=hf.get("layer_norm_epsilon", 1e-6), activation=FEED_FORWARD[projection],
        dropout=hf.get("dropout_rate", 0.1), attention_dropout=hf.get("dropout_rate", 0.1),
        activation_dropout=hf.get("dropout_rate", 0.1), tie_output=tied, scale_decoder_output=tied,
        pad_id=pad, bos_id=pad if start is None else start, eos_id=hf.get("eos_token_id", 1),
    )
    return t5_config(hf["vocab_size"], **{**fields, **overrides})


def t5_weight_map(config: ModelConfig) -> dict[str, tuple[str, ...]]:
    """Our name → the Hugging Face T5 names it is, concatenated along dim 0, for every weight but the embedding and
    the head: q, k, v fused into ``qkv_proj`` (cross-attention: k, v into ``kv_proj``), each stack's one
    ``relative_bias`` table on its block 0. ``t5_weights_from_hf`` reads it forwards, ``t5_weights_to_hf``
    backwards, so the two are inverses by construction."""
    ff_in = {"w1": "wi_0", "w3": "wi_1"} if config.activation in ("geglu", "swiglu") else {"w1": "wi"}
    names: dict[str, tuple[str, ...]] = {}
    for stack, n_layers in (("encoder", config.n_encoder_layers), ("decoder", config.n_decoder_layers)):
        names[f"{stack}.relative_bias.table.weight"] = (
            f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight",)
        names[f"{stack}.final_norm.weight"] = (f"{stack}.final_layer_norm.weight",)
        for i in range(n_layers):
            hf, me = f"{stack}.block.{i}.layer", f"{stack}.layers.{i}"
            attn = f"{hf}.0.SelfAttention"
            names[f"{me}.self_attn.qkv_proj.weight"] = tuple(f"{attn}.{part}.weight" for part in "qkv")
            names[f"{me}.self_attn.out_proj.weight"] = (f"{attn}.o.weight",)
            names[f"{me}.self_attn_norm.weight"] = (f"{hf}.0.layer_norm.weight",)
            ff = 1
            if stack == "decoder":
                cross = f"{hf}.1.EncDecAttention"
                names[f"{me}.cross_attn.q_proj.weight"] = (f"{cross}.q.weight",)
                names[f"{me}.cross_attn.kv_proj.weight"] = (f"{cross}.k.weight", f"{cross}.v.weight")
                names[f"{me}.cross_attn.out_proj.weight"] = (f"{cross}.o.weight",)
                names[f"{me}.cross_attn_norm.weight"] = (f"{hf}.1.layer_norm.weight",)
                ff = 2
            for mine, theirs in {**ff_in, "w2": "wo"}.items():
                names[f"{me}.feed_forward.{mine}.weight"] = (f"{hf}.{ff}.DenseReluDense.{theirs}.weight",)
            names[f"{me}.feed_forward_norm.weight"] = (f"{hf}.{ff}.layer_norm.weight",)
    return names


def t5_weights_from_hf(state: Mapping[str, torch.Tensor], config: ModelConfig) -> dict[str, torch.Tensor]:
    """A Hugging Face ``T5ForConditionalGeneration`` state dict → the state dict of ``Transformer(config)``
    (load it with ``strict=True``): ``t5_weight_map`` read forwards; the shared embedding fills both of our
    embeddings (one tensor, ``share_embeddings``)."""
    ours: dict[str, torch.Tensor] = {"src_embed.token.weight": state["shared.weight"],
                                     "tgt_embed.token.weight": state["shared.weight"]}
    # untied (T5 v1.1): lm_head.weight; a file saved by transformers ≥ 5 may leave it out, tying it to shared
    ours["output.weight"] = state.get("lm_head.weight", state["shared.weight"]) if not config.tie_output \
        else state["shared.weight"]
    for mine, theirs in t5_weight_map(config).items():
        ours[mine] = torch.cat([state[name] for name in theirs]) if len(theirs) > 1 else state[theirs[0]]
    return ours


def t5_config_to_hf(config: ModelConfig, model_type: str = "t5") -> dict[str, Any]:
    """A ``ModelConfig`` in T5's layout → a config.json (a dict) ``T5ForConditionalGeneration`` reads: the inverse
    of ``t5_config_from_hf``. A flag T5 has no counterpart for is a ValueError naming it, in one line.

    ``tie_word_embeddings`` and ``scale_decoder_outputs`` are both written, so transformers 4 (which reads the
    first) and ≥ 5 (which keeps the second and ties the head unless ``lm_head.weight`` differs) agree."""
    for name, value in FIXED.items():
        if getattr(config, name) != value:
            raise ValueError(f"T5 has no counterpart for {name}={getattr(config, name)!r} (it needs {value!r})")
    projection = next((hf for hf, ours in FEED_FORWARD.items() if ours == config.activation), None)
    if projection is None:
        raise ValueError(f"T5 has no counterpart for activation={config.activation!r} (feed_forward_proj: "
                         f"{', '.join(sorted(set(FEED_FORWARD.values())))})")
    if config.src_vocab_size != config.tgt_vocab_size:
        raise ValueError(f"T5 has one vocabulary, not src_vocab_size={config.src_vocab_size} and "
                         f"tgt_vocab_size={config.tgt_vocab_size}")
    if config.head_dim_k != config.head_dim_v:
        raise ValueError(f"T5 has one head size d_kv, not d_k={config.head_dim_k} and d_v={config.head_dim_v}")
    if config.scale_decoder_output != config.tie_output:
        raise ValueError(f"T5 scales the decoder output exactly when the head is tied, not "
                         f"scale_decoder_output={config.scale_decoder_output} with tie_output={config.tie_output}")
    gated, act = projection.startswith("gated-"), projection.split("-")[-1]
    return {
        "model_type": model_type,
        "architectures": ["MT5ForConditionalGeneration" if model_type == "mt5" else "T5ForConditionalGeneration"],
        "is_encoder_decoder": True, "vocab_size": config.tgt_vocab_size, "d_model": config.d_model,
        "d_kv": config.head_dim_k, "d_ff": config.d_ff, "num_layers": config.n_encoder_layers,
        "num_decoder_layers": config.n_decoder_layers, "num_heads": config.n_heads,
        "relative_attention_num_buckets": config.relative_buckets,
        "relative_attention_max_distance": config.relative_max_distance, "dropout_rate": config.dropout,
        "layer_norm_epsilon": config.norm_eps, "feed_forward_proj": projection,
        "dense_act_fn": "gelu_new" if projection == "gated-gelu" else act, "is_gated_act": gated,
        "tie_word_embeddings": config.tie_output, "scale_decoder_outputs": config.scale_decoder_output,
        "pad_token_id": config.pad_id, "eos_token_id": config.eos_id, "decoder_start_token_id": config.bos_id,
    }


def t5_weights_to_hf(state: Mapping[str, torch.Tensor], config: ModelConfig) -> dict[str, torch.Tensor]:
    """The state dict of ``Transformer(config)`` in T5's layout → the tensors of a ``T5ForConditionalGeneration``
    model.safetensors: ``t5_weight_map`` read backwards (fused projections split in equal parts); a tied head left
    out, as transformers saves it."""
    hf: dict[str, torch.Tensor] = {"shared.weight": state["src_embed.token.weight"]}
    if not config.tie_output:
        hf["lm_head.weight"] = state["output.weight"]
    for mine, theirs in t5_weight_map(config).items():
        hf.update(zip(theirs, state[mine].chunk(len(theirs))))
    return {k: v.detach().clone().contiguous() for k, v in hf.items()}
