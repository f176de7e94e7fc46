"""GPT-2 (``model_type: gpt2``) into Rosetta's ``LanguageModel``, and back.

GPT-2 is ``gpt_config``'s layout (``rosetta.models.lm.GPT_LAYOUT``): Pre-LN with a final LayerNorm, learned
absolute positions, tanh-GELU ("gelu_new"), biases, the output layer tied to the token embeddings, attention
logits scaled by 1/√d_k. config.json → ModelConfig:

    vocab_size → src_vocab_size = tgt_vocab_size      n_embd → d_model            n_head → n_heads
    n_inner (null: 4·n_embd) → d_ff                   n_layer → n_decoder_layers  n_positions → max_len
    layer_norm_epsilon → norm_eps                     activation_function → activation (gelu_new: gelu_tanh)
    scale_attn_weights → scale_attention              tie_word_embeddings → tie_output
    resid_pdrop → dropout (embd_pdrop too: one rate)  attn_pdrop → attention_dropout
    bos_token_id, eos_token_id → bos_id, eos_id       pad_token_id (null: eos) → pad_id

Weights (``transformer.`` prefix optional: a bare GPT2Model has none). GPT-2's ``Conv1D`` computes x W + b with
W stored (in, out), the transpose of ``nn.Linear``'s (out, in) weight; ``c_attn`` (D, 3D) holds [Q; K; V] in the
order of our fused ``qkv_proj``:

    wte                      → embed.token                  wpe        → embed.position
    h.{i}.ln_1               → decoder.layers.{i}.self_attn_norm
    h.{i}.attn.c_attn  (ᵀ)   → decoder.layers.{i}.self_attn.qkv_proj
    h.{i}.attn.c_proj  (ᵀ)   → decoder.layers.{i}.self_attn.out_proj
    h.{i}.ln_2               → decoder.layers.{i}.feed_forward_norm
    h.{i}.mlp.c_fc     (ᵀ)   → decoder.layers.{i}.feed_forward.w1
    h.{i}.mlp.c_proj   (ᵀ)   → decoder.layers.{i}.feed_forward.w2
    ln_f                     → decoder.final_norm           lm_head    → output (only when untied)

The causal-mask buffers ``attn.bias`` / ``attn.masked_bias`` of old checkpoints are not weights and are skipped.
Options our blocks do not have (``UNSUPPORTED``) are refused in one line. Tokenizer: the directory's byte-level
BPE (``rosetta.hub.byte_level``).

The way back: ``config_to_hf`` / ``weights_to_hf`` turn a ``LanguageModel`` in GPT-2's layout into a config.json
and tensors ``GPT2LMHeadModel.from_pretrained`` reads; ``save_gpt2`` writes the directory.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch

from rosetta.hub.byte_level import ByteLevelTokenizer
from rosetta.hub.registry import register_hf
from rosetta.models.lm import GPT_LAYOUT, LanguageModel, gpt_config
from rosetta.models.pretrained import ACTIVATIONS, CONFIG_FILE, WEIGHTS_FILE, PretrainedError
from rosetta.nn.config import ModelConfig

# GPT2Config's defaults, for keys a config.json leaves out (transformers fills them in the same way).
HF_DEFAULTS: dict[str, Any] = dict(
    vocab_size=50257, n_positions=1024, n_embd=768, n_layer=12, n_head=12, n_inner=None,
    activation_function="gelu_new", resid_pdrop=0.1, embd_pdrop=0.1, attn_pdrop=0.1, layer_norm_epsilon=1e-5,
    initializer_range=0.02, scale_attn_weights=True, bos_token_id=50256, eos_token_id=50256, pad_token_id=None,
    tie_word_embeddings=True,
)
# Options with no counterpart in Rosetta's blocks → the only value that loads.
UNSUPPORTED: dict[str, Any] = dict(scale_attn_by_inverse_layer_idx=False, reorder_and_upcast_attn=False,
                                   add_cross_attention=False)

# HF module → ours; GLOBAL at the top level, LAYER inside block h.{i} ↔ decoder.layers.{i}.
GLOBAL = {"wte": "embed.token", "wpe": "embed.position", "ln_f": "decoder.final_norm", "lm_head": "output"}
LAYER = {"ln_1": "self_attn_norm", "attn.c_attn": "self_attn.qkv_proj", "attn.c_proj": "self_attn.out_proj",
         "ln_2": "feed_forward_norm", "mlp.c_fc": "feed_forward.w1", "mlp.c_proj": "feed_forward.w2"}
CONV1D = {"attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"}  # weights stored (in, out): transposed
BUFFER = re.compile(r"h\.\d+\.attn\.(?:masked_)?bias")  # causal-mask buffers of old checkpoints, not weights
HF_NAME = re.compile(r"(?:h\.(\d+)\.)?(.+)\.(weight|bias)")
OUR_NAME = re.compile(r"(?:decoder\.layers\.(\d+)\.)?(.+)\.(weight|bias)")


# ------------------------------------------------------------------------------------------------ config
def config_from_hf(hf: dict[str, Any]) -> ModelConfig:
    """A GPT-2 config.json (a dict) → ``ModelConfig`` (module docstring's table); PretrainedError for an option our
    blocks lack or sizes that do not fit."""
    hf = {**HF_DEFAULTS, **hf}
    for option, plain in UNSUPPORTED.items():
        if hf.get(option, plain) != plain:
            raise PretrainedError(f"{CONFIG_FILE}: {option}={hf[option]!r} is not supported (Rosetta's GPT-2 "
                                  f"blocks need {plain}); load another checkpoint")
    act = hf["activation_function"]
    if act not in ACTIVATIONS:
        raise PretrainedError(f"{CONFIG_FILE}: activation_function={act!r} is not supported; supported: "
                              f"{sorted(ACTIVATIONS)}")
    eos, bos = _token_id(hf, "eos_token_id"), _token_id(hf, "bos_token_id")
    d = hf["n_embd"]
    try:
        return gpt_config(
            hf["vocab_size"], d_model=d, n_heads=hf["n_head"], d_ff=hf["n_inner"] or 4 * d,
            n_decoder_layers=hf["n_layer"], max_len=hf["n_positions"], norm_eps=hf["layer_norm_epsilon"],
            activation=ACTIVATIONS[act], scale_attention=hf["scale_attn_weights"],
            tie_output=hf["tie_word_embeddings"], dropout=hf["resid_pdrop"], attention_dropout=hf["attn_pdrop"],
            init_std=hf["initializer_range"], bos_id=bos, eos_id=eos,
            pad_id=eos if hf["pad_token_id"] is None else hf["pad_token_id"])
    except (ValueError, TypeError) as e:  # ModelConfig.validate names the inconsistent field
        raise PretrainedError(f"{CONFIG_FILE}: {e}") from e


def _token_id(hf: dict[str, Any], key: str) -> int:
    """bos_token_id / eos_token_id: an id, or a list of one id; generation needs one end (and start) token."""
    value = hf[key]
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if not isinstance(value, int) or isinstance(value, bool):
        raise PretrainedError(f"{CONFIG_FILE}: {key}={value!r} must be one token id (GPT-2's is 50256, "
                              "<|endoftext|>); set it to the id of the end-of-text token")
    return value


def config_to_hf(config: ModelConfig) -> dict[str, Any]:
    """A ``ModelConfig`` in GPT-2's layout → config.json (a dict) ``GPT2LMHeadModel`` reads. A flag GPT-2 has no
    counterpart for (RMSNorm, rotary positions, a pruned head count, …) is a PretrainedError naming it."""
    layout = {**{k: v for k, v in GPT_LAYOUT.items() if k not in ("norm_eps", "activation", "tie_output",
                                                                  "init_std", "n_encoder_layers")},
              "heads_per_layer": None, "copy_attention": False}
    for name, value in layout.items():
        if getattr(config, name) != value:
            raise PretrainedError(f"GPT-2 has no counterpart for {name}={getattr(config, name)!r} (it needs "
                                  f"{value!r}); only a LanguageModel in GPT-2's layout (gpt_config) converts")
    head = config.d_model // config.n_heads
    if config.head_dim_k != head or config.head_dim_v != head:
        raise PretrainedError(f"GPT-2 heads have d_model / n_heads = {head} dimensions, not d_k={config.head_dim_k},"
                              f" d_v={config.head_dim_v}")
    activation = next((hf for hf, ours in ACTIVATIONS.items() if ours == config.activation), None)  # gelu_new first
    if activation is None:
        raise PretrainedError(f"GPT-2 has no counterpart for activation={config.activation!r}")
    return {
        "model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "vocab_size": config.tgt_vocab_size,
        "n_positions": config.max_len, "n_embd": config.d_model, "n_layer": config.n_decoder_layers,
        "n_head": config.n_heads, "n_inner": config.d_ff, "activation_function": activation,
        "resid_pdrop": config.dropout, "embd_pdrop": config.dropout, "attn_pdrop": config.attention_dropout,
        "layer_norm_epsilon": config.norm_eps, "initializer_range": config.init_std or HF_DEFAULTS["initializer_range"],
        "scale_attn_weights": config.scale_attention, "tie_word_embeddings": config.tie_output,
        "bos_token_id": config.bos_id, "eos_token_id": config.eos_id, "pad_token_id": config.pad_id,
        **UNSUPPORTED,
    }


# ------------------------------------------------------------------------------------------------ weights
def _to_ours(name: str) -> tuple[str, bool] | None:
    """HF name without ``transformer.`` → (our name, transpose?), or None for a name outside the map."""
    match = HF_NAME.fullmatch(name)
    if match is None:
        return None
    layer, module, kind = match.groups()
    table = GLOBAL if layer is None else LAYER
    if module not in table:
        return None
    prefix = "" if layer is None else f"decoder.layers.{layer}."
    return f"{prefix}{table[module]}.{kind}", layer is not None and module in CONV1D and kind == "weight"


def weights_from_hf(tensors: dict[str, torch.Tensor], config: ModelConfig) -> dict[str, torch.Tensor]:
    """GPT-2 tensors by name → ``LanguageModel`` state dict (module docstring's table). A name outside the map is
    kept as it is, so that the strict load reports it; a tied output reads the token embeddings."""
    state: dict[str, torch.Tensor] = {}
    for full_name, tensor in tensors.items():
        name = full_name.removeprefix("transformer.")
        if BUFFER.fullmatch(name) or (name == "lm_head.weight" and config.tie_output):
            continue  # mask buffers; a tied lm_head is wte itself (transformers ignores the copy as well)
        mapped = _to_ours(name)
        if mapped is None:
            state[full_name] = tensor
            continue
        ours, transpose = mapped
        state[ours] = tensor.t() if transpose and tensor.dim() == 2 else tensor
    if config.tie_output and "embed.token.weight" in state:
        state["output.weight"] = state["embed.token.weight"]
    return state


def weights_to_hf(state: dict[str, torch.Tensor], config: ModelConfig) -> dict[str, torch.Tensor]:
    """``LanguageModel`` state dict → GPT2LMHeadModel tensors (contiguous copies, as safetensors stores them);
    a tied output is left out, as transformers saves it."""
    to_hf_global = {ours: hf for hf, ours in GLOBAL.items()}
    to_hf_layer = {ours: hf for hf, ours in LAYER.items()}
    tensors: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        if name == "output.weight" and config.tie_output:
            continue
        layer, module, kind = OUR_NAME.fullmatch(name).groups()
        if layer is None:
            hf_name = ("" if module == "output" else "transformer.") + f"{to_hf_global[module]}.{kind}"
            transpose = False
        else:
            hf_module = to_hf_layer[module]
            hf_name, transpose = f"transformer.h.{layer}.{hf_module}.{kind}", hf_module in CONV1D and kind == "weight"
        tensors[hf_name] = (tensor.t() if transpose else tensor).detach().contiguous().clone()
    return tensors


def save_gpt2(model: LanguageModel, directory: str | Path, tokenizer: ByteLevelTokenizer | None = None) -> Path:
    """Write ``model`` as a GPT-2 directory (config.json, model.safetensors, and tokenizer.json when given) that
    ``GPT2LMHeadModel.from_pretrained`` and ``rosetta.decode.loading.load_any`` read."""
    from safetensors.torch import save_file

    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    hf = config_to_hf(model.config)
    save_file(weights_to_hf(model.state_dict(), model.config), str(path / WEIGHTS_FILE), metadata={"format": "pt"})
    (path / CONFIG_FILE).write_text(json.dumps(hf, indent=2) + "\n", encoding="utf-8")
    if tokenizer is not None:
        tokenizer.save(path)
    return path


# ------------------------------------------------------------------------------------------------ registry
@register_hf("gpt2", family="lm")
class GPT2:
    config_from_hf = staticmethod(config_from_hf)
    weights_from_hf = staticmethod(weights_from_hf)
    config_to_hf = staticmethod(config_to_hf)
    weights_to_hf = staticmethod(weights_to_hf)

    @staticmethod
    def build(config: ModelConfig, hf: dict[str, Any], names: set[str]) -> LanguageModel:
        return LanguageModel(config)

    @staticmethod
    def tokenizers(path: Path, hf: dict[str, Any]) -> tuple[ByteLevelTokenizer, None]:
        config = config_from_hf(hf)
        tokenizer = ByteLevelTokenizer.load(path, config.pad_id, config.bos_id, config.eos_id)
        if tokenizer.vocab_size > config.tgt_vocab_size:
            raise PretrainedError(f"{path}: the tokenizer has {tokenizer.vocab_size} tokens but {CONFIG_FILE} says "
                                  f"vocab_size={config.tgt_vocab_size}; the tokenizer belongs to another model")
        return tokenizer, None
