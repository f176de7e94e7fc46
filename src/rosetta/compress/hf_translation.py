"""``rosetta export --format huggingface`` of Rosetta's own encoder–decoder ``Transformer``: the same function as a
``MarianMTModel`` (Post-LN), a ``PegasusForConditionalGeneration`` (Pre-LN) or a ``T5ForConditionalGeneration``
(T5's layout), which ``AutoModelForSeq2SeqLM`` reads, with tokenizer files ``AutoTokenizer`` reads and a
generation_config.json for ``generate``. The positions choose the family (``TARGETS``):

    positional = "relative" (T5's layout,     →  T5      (``rosetta.models.t5``: ``t5_config_to_hf`` /
      configs/t5-multitask.toml)                         ``t5_weights_to_hf``, through ``rosetta.hub.t5``): the
                                                         weights as they are, the run's own ids (pad 0, decoder
                                                         start <s> 1, eos </s> 2) in config.json; a flag T5 has no
                                                         counterpart for (biases, LayerNorm, Post-LN, …) is refused
    sinusoidal, norm_first = false (Post-LN)  →  Marian  (``rosetta.hub.marian``): any vocabularies, one joint or
                                                 separate source / target (share_encoder_decoder_embeddings,
                                                 decoder_vocab_size)
    sinusoidal, norm_first = true (Pre-LN)    →  Pegasus (``rosetta.hub.pegasus``): one joint vocabulary as it is
                                                 (model.shared); separate ones (share_embeddings = false, S source
                                                 and T target tokens) as ONE concatenated vocabulary of S + T ids

A text-to-text run (``[[data.mixture]]``, ``rosetta.tasks.text_to_text``) records its tasks' prefixes in
config.json's ``task_specific_params`` as the original t5-small does ({"translation_en_to_de": {"prefix":
"translate English to German: "}}), where transformers 4's ``pipeline("translation_en_to_de", model=DIR)`` finds
them (``rosetta.hub.generation.task_specific_params``; transformers 5 keeps the field in the config; Rosetta reads it
back: ``tasks_from_params``).

What changes on the way to Marian or Pegasus, none of it the function the model computes:

* biases: Marian and Pegasus have one on every Linear and on the output (``final_logits_bias``); a model built
  with ``bias = false`` gets zeros there
* positions: both compute the sinusoid in the "halves" layout (all sines, then all cosines). A model trained with
  Rosetta's default "interleaved" layout (sin / cos in alternate columns) is exported with the d_model axis
  permuted (``HALVES_ORDER``: columns 0, 2, 4, … then 1, 3, 5, …), which turns its table into the halves one. A
  Transformer is unchanged under one permutation P of the residual stream applied everywhere
  (``permute_residual``): the token tables' columns, LayerNorm weights and biases (LayerNorm commutes with P), the
  input columns of every Linear that reads the stream (q/k/v, cross-attention q and k/v — the encoder's output is
  the stream too — FFN W1, the output layer), and the output rows and biases of every Linear that writes to it
  (attention out_proj, FFN W2). Attention heads and the FFN's hidden units are untouched.
* separate vocabularies to Pegasus (which has one token table): source ids 0..S-1, target ids + S
  (``pegasus.concatenated_tables``): untied encoder table [source; zeros], decoder table [zeros; target], lm_head
  [zeros; output], final_logits_bias [-inf; output bias], so no source id is ever written and the target columns
  (S..S+T-1) of the logits are ours; config.json's ``rosetta_source_vocab_size`` = S. The decoder's ids —
  decoder_start / eos / pad, everything ``generate`` writes — are the target tokenizer's + S, and so are the ids
  of target/tokenizer.json (``exported.shift_ids``); the source tokenizer.json keeps its own, and the encoder's
  attention mask comes from it (pass it to ``generate``: config.json's pad_token_id is the target's <pad>, S,
  which is what pads finished beams and what ``generate`` would look for in a source without a mask).
  ``rosetta.load`` reads the directory back as the separate-vocabulary Transformer (untied).

Refused in one line naming the flag: what neither Marian nor Pegasus computes (``REQUIRED``) — rotary / learned
positions or none (Pegasus's position table is a fixed sinusoid that transformers recomputes whenever it is missing
or resized, not a weight a learned table could live in), RMSNorm, another LayerNorm ε, gated FFNs (swiglu / geglu),
unscaled attention, T5's scaled output, embedding LayerNorms, token types, pruned heads (heads_per_layer), other
head sizes (d_k / d_v) and the pointer-generator (copy_attention); and relative positions in a layout T5's blocks
do not compute (``rosetta.models.t5.FIXED``: biases, LayerNorm, Post-LN, scaled attention or embeddings, separate
vocabularies, a scaled untied output, …). export --format onnx / ctranslate2 take any of these.

generation_config.json (``generation_config``), from the run's [decode] options: num_beams = beam, length_penalty
= α, max_length = 1 (the start token) + the run's max_len, or the limit its max_len_ratio / max_len_offset give the
longest source the model reads (``generate`` has one limit, not one per source length); forced_eos_token_id null
(Rosetta's search ends an output at its limit as it is, without forcing </s>), bad_words_ids the <pad> and <s> that
Rosetta's search never produces, decoder_start_token_id <s> (each + S for a concatenated vocabulary). Hugging Face
scores a finished beam log P / |Y|^α, Rosetta's own runs use GNMT's ((5 + |Y|) / 6)^α: the exported directory, in
``generate`` and in ``rosetta translate --model DIR`` alike, decodes by Hugging Face's rule.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from rosetta import checkpoint as ckpt
from rosetta.decode.defaults import DecodeOptions, max_source_tokens
from rosetta.decode.search import max_positions
from rosetta.hub.generation import task_specific_params
from rosetta.hub.marian import ACTIVATION_NAMES
from rosetta.models.transformer import Transformer
from rosetta.nn.config import ModelConfig

ELSEWHERE = "export --format onnx or ctranslate2 instead"
# flag, the value Marian and Pegasus compute, why — the first flag of a model that differs is refused
REQUIRED: tuple[tuple[str, Any, str], ...] = (
    ("copy_attention", False, "the pointer-generator's copy distribution has no Hugging Face head"),
    ("positional", "sinusoidal", "Marian and Pegasus add the sinusoid (base 10000) to the embeddings and have no "
                                 "other positions (Pegasus recomputes its table: a learned one would not survive; "
                                 "T5 takes positional='relative')"),
    ("position_offset", 0, "Marian's and Pegasus's positions start at row 0"),
    ("norm", "layernorm", "Marian and Pegasus normalise with LayerNorm"),
    ("norm_eps", 1e-5, "Marian's and Pegasus's LayerNorms have ε = 1e-5"),
    ("embedding_norm", False, "neither normalises the embeddings"),
    ("type_vocab_size", 0, "neither has token-type embeddings"),
    ("scale_attention", True, "both divide attention logits by √d_k"),
    ("scale_decoder_output", False, "neither scales the decoder output before the output layer"),
    ("heads_per_layer", None, "every attention of theirs has n_heads heads"),
)
ACTIVATIONS = ACTIVATION_NAMES  # the ones transformers computes exactly as we do, by the names it reads


def refusal(config: ModelConfig) -> str | None:
    """Why ``config`` has no exact Hugging Face counterpart (one line naming the flag), or None."""
    for flag, value, why in REQUIRED:
        if getattr(config, flag) != value:
            return f"{flag}={getattr(config, flag)!r}: {why}; {ELSEWHERE}"
    if config.activation not in ACTIVATIONS:
        return (f"activation={config.activation!r}: Marian's and Pegasus's feed-forward is one activation "
                f"({', '.join(ACTIVATIONS)}), not gated; {ELSEWHERE}")
    if config.head_dim_k * config.n_heads != config.d_model or config.head_dim_v != config.head_dim_k:
        return (f"d_k={config.d_k}, d_v={config.d_v}: Marian's and Pegasus's heads are d_model / n_heads wide; "
                f"{ELSEWHERE}")
    return None


def _sinusoid(config: ModelConfig) -> tuple[str, ModelConfig]:
    """Marian (Post-LN) or Pegasus (Pre-LN), with the config in their layout: biases on, sinusoid in halves."""
    reason = refusal(config)
    if reason:
        raise ValueError(reason)
    return ("pegasus" if config.norm_first else "marian",
            config.replace(bias=True, output_bias=True, sinusoidal_layout="halves"))


def _t5(config: ModelConfig) -> tuple[str, ModelConfig]:
    """T5, with the config as it is (T5's blocks are ours with T5's flags); ``t5_config_to_hf``'s refusal else."""
    from rosetta.models.t5 import t5_config_to_hf

    try:
        t5_config_to_hf(config)
    except ValueError as e:
        raise ValueError(f"positional='relative' goes to T5, but {e}; {ELSEWHERE}") from None
    return "t5", config


# the Hugging Face family of a translation model, by its positions: T5 computes relative buckets; the sinusoid and
# everything else go to Marian / Pegasus, which refuse what they lack (``REQUIRED``)
TARGETS: dict[str, Callable[[ModelConfig], tuple[str, ModelConfig]]] = {"relative": _t5}


def hf_config(config: ModelConfig) -> tuple[str, ModelConfig]:
    """(model_type, the config of the same model in that family's layout: ``TARGETS``). ValueError in one line
    naming the flag when there is none."""
    return TARGETS.get(config.positional, _sinusoid)(config)


def halves_order(d_model: int) -> torch.Tensor:
    """The permutation of the d_model axis that turns the interleaved sinusoid into the halves one:
    ``sinusoidal_encoding(T, D)[:, order] == sinusoidal_encoding(T, D, layout="halves")``."""
    return torch.cat([torch.arange(0, d_model, 2), torch.arange(1, d_model, 2)])


COLUMNS = ("token.weight", "output.weight", "qkv_proj.weight", "q_proj.weight", "kv_proj.weight", "w1.weight",
           "w3.weight")  # read the residual stream: permute the input axis (dim 1)
ROWS = ("out_proj.weight", "out_proj.bias", "w2.weight", "w2.bias")  # write to it: permute the output axis (dim 0)
OTHER_AXES = ("qkv_proj.bias", "q_proj.bias", "kv_proj.bias", "w1.bias", "w3.bias", "output.bias")  # heads, d_ff, V


def permute_residual(state: dict[str, torch.Tensor], order: torch.Tensor) -> dict[str, torch.Tensor]:
    """The state dict of the same Transformer with its residual stream permuted by ``order`` (module docstring).
    A name this does not know is a ValueError: a new kind of weight must say which axis it has."""
    out = {}
    for name, tensor in state.items():
        module = name.rsplit(".", 1)[0].rsplit(".", 1)[-1]
        if name.endswith(COLUMNS):
            out[name] = tensor[:, order]
        elif name.endswith(ROWS) or module.endswith("norm"):
            out[name] = tensor[order]
        elif name.endswith(OTHER_AXES):
            out[name] = tensor
        else:
            raise ValueError(f"permute_residual: no rule for weight {name!r}")
    return out


def hf_state(state: dict[str, torch.Tensor], config: ModelConfig, target: ModelConfig) -> dict[str, torch.Tensor]:
    """``state`` (a Transformer of ``config``) as the state dict of a Transformer of ``target`` (``hf_config``):
    zeros for the biases ``config`` lacks, and the residual stream permuted when the layout changes."""
    with torch.device("meta"):  # names and shapes only
        expected = Transformer(target).state_dict()
    unknown = sorted(set(state) - set(expected))
    if unknown:
        raise ValueError(f"weights {unknown[:4]} have no place in the exported model")
    out = {}
    for name, ref in expected.items():
        if name in state:
            out[name] = state[name].detach().float().cpu()
        elif name.endswith(".bias"):
            out[name] = torch.zeros(ref.shape)
        else:
            raise ValueError(f"the model has no weight {name!r}")
    if config.sinusoidal_layout != target.sinusoidal_layout:
        out = permute_residual(out, halves_order(config.d_model))
    return {name: t.contiguous() for name, t in out.items()}


def generation_config(config: ModelConfig, decode: DecodeOptions, offset: int = 0) -> dict[str, Any]:
    """generation_config.json for ``generate`` from the run's [decode] options (module docstring); the decoder's
    ids + ``offset`` (S of a concatenated vocabulary)."""
    positions = max_positions(config)
    limit = decode.max_len or int(decode.max_len_ratio * (max_source_tokens(positions) + 1)) + decode.max_len_offset
    pad, bos, eos = config.pad_id + offset, config.bos_id + offset, config.eos_id + offset
    banned = [[pad]] + ([[bos]] if bos not in (pad, eos) else [])
    gen = {"decoder_start_token_id": bos, "eos_token_id": eos, "pad_token_id": pad,
           "forced_eos_token_id": None, "bad_words_ids": banned, "num_beams": decode.beam,
           "length_penalty": decode.length_penalty, "max_length": max(1, min(limit, positions)) + 1,
           "early_stopping": False}
    if decode.no_repeat_ngram_size:
        gen["no_repeat_ngram_size"] = decode.no_repeat_ngram_size
    if decode.min_len:
        gen["min_length"] = decode.min_len + 1  # Hugging Face counts the start token
    return gen


def _write_json(file: Path, data: dict[str, Any]) -> None:
    file.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def export_translation(loaded, out: Path) -> None:
    """Write the translation model ``loaded`` (``load_any``'s) into the empty directory ``out`` as a Marian,
    Pegasus or T5 directory (module docstring)."""
    from safetensors.torch import save_file

    from rosetta.decode.folder import decode_options
    from rosetta.hub.exported import write_tokenizers
    from rosetta.hub.pegasus import SOURCE_VOCAB_KEY
    from rosetta.hub.registry import hf_family
    from rosetta.models.pretrained import WEIGHTS_FILE

    path, config = Path(loaded.info["path"]), loaded.model.config
    try:
        model_type, target = hf_config(config)
    except ValueError as e:
        raise ValueError(f"{path}: cannot export this translation model to Hugging Face: {e}") from None
    spec = hf_family(model_type)
    tasks = task_specific_params(loaded.info.get("tasks") or [])  # a text-to-text run's prefixes
    hf = {**spec.config_to_hf(target), "forced_eos_token_id": None,
          **({"task_specific_params": tasks} if tasks else {})}
    _write_json(out / ckpt.CONFIG_FILE, hf)
    save_file(spec.weights_to_hf(hf_state(loaded.model.state_dict(), config, target), target), str(out / WEIGHTS_FILE),
              metadata={"format": "pt"})
    offset = hf.get(SOURCE_VOCAB_KEY, 0)  # Pegasus with separate vocabularies: the target's ids start at S
    write_tokenizers(out, loaded.tokenizer, loaded.target_tokenizer, target, target_offset=offset)
    _write_json(out / "generation_config.json", generation_config(target, decode_options(path, loaded.info), offset))
