"""ModelConfig: every size and variant of the model in one dataclass (JSON round-trip, presets).

Variants are flags here, not copies of the model: post-LN (the paper) or pre-LN, LayerNorm or RMSNorm,
ReLU / GELU / SwiGLU / GEGLU, sinusoidal / learned / rotary / relative (T5) positions, scaled or unscaled
attention logits, tied or separate embeddings.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from rosetta.special_tokens import BOS_ID, EOS_ID, PAD_ID

POSITIONALS = ("sinusoidal", "learned", "rope", "none", "relative")
NORMS = ("layernorm", "rmsnorm")
ACTIVATIONS = ("relu", "gelu", "gelu_tanh", "silu", "swiglu", "geglu")
GATED_ACTIVATIONS = ("swiglu", "geglu")  # a second input projection W3 gates the hidden units
SINUSOIDAL_LAYOUTS = ("interleaved", "halves")  # sin/cos in alternate columns, or all sines then all cosines

# name → sizes; vocabularies and ids are the caller's (they come from the tokenizer).
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(d_model=64, n_heads=4, d_ff=128, n_encoder_layers=2, n_decoder_layers=2, dropout=0.1),
    "small": dict(d_model=256, n_heads=4, d_ff=1024, n_encoder_layers=3, n_decoder_layers=3, dropout=0.1),
    "base": dict(d_model=512, n_heads=8, d_ff=2048, n_encoder_layers=6, n_decoder_layers=6, dropout=0.1),
    "big": dict(d_model=1024, n_heads=16, d_ff=4096, n_encoder_layers=6, n_decoder_layers=6, dropout=0.3),
}


@dataclass
class ModelConfig:
    """Sizes and variants of a Transformer. Defaults are the paper's base model (§3, Table 3).

    d_k / d_v: per-head query-key and value sizes (default d_model / n_heads).
    norm_first: False = Post-LN, x = Norm(x + Sublayer(x)) (the paper); True = Pre-LN,
    x = x + Sublayer(Norm(x)) with a final norm after each stack.
    share_embeddings: source and target use one embedding table (needs one shared vocabulary).
    tie_output: the output projection reuses the target embedding matrix (§3.4).

    T5 (Raffel et al., 2020; ``rosetta.models.t5.t5_config``):
    positional="relative": no position vectors; each stack learns a bias per head and per bucket of key − query
    offsets, added to its self-attention logits (``relative_buckets`` buckets, log-spaced up to
    ``relative_max_distance``; see ``rosetta.nn.positional.relative_position_bucket``).
    scale_attention: True = softmax(Q Kᵀ / √d_k) (the paper); False = softmax(Q Kᵀ) (T5, which folds 1/√d_k
    into the initialisation of W^Q — ``init_weights`` does the same).
    scale_decoder_output: multiply the decoder's output by d_model^-½ before the output projection (T5 with a
    tied output layer; T5 v1.1, untied, does not). Read by the encoder–decoder only.

    heads_per_layer: a pruned model's head count per attention layer (``rosetta.compress.heads``), e.g.
    {"encoder": [4, 2, 3], "decoder": [4, 4, 1], "cross": [3, 4, 4]} (decoder self-attention; cross-attention;
    a decoder-only LM's stack is "decoder"). A kind left out, or None (the default), has ``n_heads`` in every
    layer. Heads keep their size d_k = d_model / n_heads (or the given d_k, d_v).

    copy_attention: the encoder–decoder's output mixes generating and copying source tokens (pointer-generator,
    ``rosetta.nn.copy``); needs one shared vocabulary (share_embeddings).

    Marian (opus-mt; ``rosetta.hub.marian``):
    sinusoidal_layout: "interleaved" = sin / cos in alternate columns (the paper); "halves" = the sines of all
    frequencies in the first half of the vector, their cosines in the second (Marian, tensor2tensor).
    output_bias: the encoder–decoder's output Linear has a bias (Marian's ``final_logits_bias``).
    position_offset: the first token's row of the position table (RoBERTa and BART count positions from
    pad_token_id + 1 = 2; their tables have ``max_len`` = 2 + the longest input).
    activation "silu" (= swish): FFN(x) = SiLU(x W1 + b1) W2 + b2, ungated.

    BART (``rosetta.hub.bart``): learned positions from row ``position_offset`` = 2 in both stacks, and
    embedding_norm: a LayerNorm right after token + position embeddings (BERT's, and BART's ``layernorm_embedding``
    in the encoder and the decoder).
    """

    src_vocab_size: int = 32000
    tgt_vocab_size: int = 32000
    d_model: int = 512
    n_heads: int = 8
    d_ff: int = 2048
    n_encoder_layers: int = 6
    n_decoder_layers: int = 6
    dropout: float = 0.1
    attention_dropout: float = 0.0
    activation_dropout: float = 0.0
    pad_id: int = PAD_ID
    bos_id: int = BOS_ID
    eos_id: int = EOS_ID
    d_k: int | None = None
    d_v: int | None = None
    max_len: int = 1024
    positional: str = "sinusoidal"
    norm: str = "layernorm"
    norm_eps: float = 1e-5
    norm_first: bool = False
    activation: str = "relu"
    bias: bool = True
    scale_embeddings: bool = True
    embedding_norm: bool = False
    share_embeddings: bool = False
    tie_output: bool = True
    type_vocab_size: int = 0
    init_std: float | None = None
    relative_buckets: int = 32
    relative_max_distance: int = 128
    scale_attention: bool = True
    scale_decoder_output: bool = False
    heads_per_layer: dict[str, list[int]] | None = None
    copy_attention: bool = False
    sinusoidal_layout: str = "interleaved"
    output_bias: bool = False
    position_offset: int = 0

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first inconsistent setting."""
        for name in ("src_vocab_size", "tgt_vocab_size", "d_model", "n_heads", "d_ff", "max_len"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not 0 <= self.position_offset < self.max_len:
            raise ValueError(f"position_offset must be in [0, max_len={self.max_len}), got {self.position_offset}")
        if (self.d_k is None or self.d_v is None) and self.d_model % self.n_heads:
            raise ValueError(
                f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}; "
                "change n_heads or set d_k and d_v explicitly"
            )
        for name, allowed in (("positional", POSITIONALS), ("norm", NORMS), ("activation", ACTIVATIONS),
                              ("sinusoidal_layout", SINUSOIDAL_LAYOUTS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}={getattr(self, name)!r} is not one of {allowed}")
        if self.positional == "rope" and self.head_dim_k % 2:
            raise ValueError(f"rotary positions need an even d_k, got {self.head_dim_k}")
        # the encoder's (bidirectional) table splits the buckets in two halves, each with exact and log buckets
        if self.relative_buckets < 4:
            raise ValueError(f"relative_buckets must be at least 4, got {self.relative_buckets}")
        if self.relative_max_distance <= self.relative_buckets // 2:
            raise ValueError(
                f"relative_max_distance={self.relative_max_distance} must exceed the "
                f"{self.relative_buckets // 2} exact buckets of relative_buckets={self.relative_buckets}"
            )
        for p in ("dropout", "attention_dropout", "activation_dropout"):
            if not 0.0 <= getattr(self, p) < 1.0:
                raise ValueError(f"{p} must be in [0, 1), got {getattr(self, p)}")
        if self.share_embeddings and self.src_vocab_size != self.tgt_vocab_size:
            raise ValueError(
                "share_embeddings needs one shared vocabulary, but src_vocab_size="
                f"{self.src_vocab_size} != tgt_vocab_size={self.tgt_vocab_size}"
            )
        for name in ("pad_id", "bos_id", "eos_id"):
            value = getattr(self, name)
            if not 0 <= value < min(self.src_vocab_size, self.tgt_vocab_size):
                raise ValueError(f"{name}={value} is outside the vocabulary")
        if self.copy_attention and not self.share_embeddings:
            raise ValueError("copy_attention copies source ids into the output, so source and target need one "
                             "shared vocabulary: set share_embeddings = true")
        if self.heads_per_layer is not None:
            self._validate_heads_per_layer()

    def _validate_heads_per_layer(self) -> None:
        layers = {"encoder": self.n_encoder_layers, "decoder": self.n_decoder_layers, "cross": self.n_decoder_layers}
        unknown = sorted(set(self.heads_per_layer) - set(layers))
        if unknown:
            raise ValueError(f"heads_per_layer has unknown kinds {unknown}; kinds are {sorted(layers)}")
        if self.positional == "relative":
            raise ValueError("heads_per_layer does not work with positional='relative' (one bias table per stack "
                             "has n_heads rows); prune a model with another position encoding")
        for kind, counts in self.heads_per_layer.items():
            if len(counts) != layers[kind] or any(not isinstance(c, int) or c < 1 for c in counts):
                raise ValueError(f"heads_per_layer[{kind!r}] = {counts} must list {layers[kind]} head counts "
                                 "(one per layer), each at least 1")

    @property
    def head_dim_k(self) -> int:
        return self.d_k or self.d_model // self.n_heads

    def attention_heads(self, kind: str, index: int) -> int:
        """Heads of the ``kind`` attention ("encoder", "decoder" self-attention, "cross") in layer ``index``."""
        counts = (self.heads_per_layer or {}).get(kind)
        return self.n_heads if counts is None else counts[index]

    @property
    def head_dim_v(self) -> int:
        return self.d_v or self.d_model // self.n_heads

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> ModelConfig:
        """``tiny``, ``small``, ``base`` (the paper's) or ``big``, with any field overridden."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})

    def replace(self, **changes: Any) -> ModelConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """The config saved as JSON (config.json's "model"). Strict, because these keys build the network: an
        unknown key (a misspelt ``n_head`` would otherwise be dropped silently and build another model) or a value
        of the wrong type (``"d_model": "512"``) is a ValueError naming it."""
        if not isinstance(data, dict):
            raise ValueError(f"expected an object of ModelConfig fields, got {json_type(data)}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown ModelConfig fields {unknown}; known fields are {sorted(known)}")
        check_field_types(cls, data)
        return cls(**data)

    def to_json(self, path: str | Path | None = None) -> str:
        text = json.dumps(self.to_dict(), indent=2, sort_keys=True)
        if path is not None:
            Path(path).write_text(text + "\n", encoding="utf-8")
        return text

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> ModelConfig:
        path = Path(text_or_path)
        text = path.read_text(encoding="utf-8") if path.suffix == ".json" else str(text_or_path)
        return cls.from_dict(json.loads(text))


# ------------------------------------------------------------------------------------ JSON types of dataclass fields
def json_type(value: Any) -> str:
    """How a JSON value is named in messages: a string, an integer, a number, a boolean, a list, an object, null."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    names = {int: "an integer", float: "a number", str: "a string", list: "a list", tuple: "a list", dict: "an object"}
    return next((name for kind, name in names.items() if isinstance(value, kind)), type(value).__name__)


def _fits(value: Any, hint: Any) -> bool:
    """Whether a value read from JSON fits a field's annotation (int, float, bool, str, None, unions, list[…],
    tuple[…, ...], dict[str, …]); an annotation this does not know accepts anything."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, a) for a in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint in (int, float):  # JSON has one number type: 3 is a fine float; true is no number
        return isinstance(value, int if hint is int else (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin in (list, tuple):
        return isinstance(value, (list, tuple)) and all(_fits(v, args[0]) for v in value) if args else True
    if origin is dict:
        return isinstance(value, dict) and all(_fits(v, args[1]) for v in value.values())
    if hint in (list, dict):
        return isinstance(value, (list, tuple) if hint is list else dict)
    return True


def _describe(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if origin in (list, tuple):
        return f"a list of {_describe(args[0]).removeprefix('an ').removeprefix('a ')}s" if args else "a list"
    if origin is dict:
        return f"an object whose values are {_describe(args[1])}" if args else "an object"
    return {type(None): "null", bool: "true or false", int: "an integer", float: "a number", str: "a string",
            list: "a list", dict: "an object"}.get(hint, str(hint))


def check_json_types(data: dict[str, Any], hints: dict[str, Any]) -> None:
    """Raise ValueError naming the first key of ``data`` whose value does not fit its type in ``hints``:
    ``d_model is a string ("512"); expected an integer``. JSON is read as written, without coercion, so a hand
    edit that quotes a number is caught here, not as a TypeError deep inside the model. Keys not in ``hints``
    are the caller's to judge."""
    for name, value in data.items():
        if name in hints and not _fits(value, hints[name]):
            shown = json.dumps(value, ensure_ascii=False, default=str)
            shown = shown if len(shown) <= 40 else shown[:37] + "…"
            raise ValueError(f"{name} is {json_type(value)} ({shown}); expected {_describe(hints[name])}")


def check_field_types(cls: type, data: dict[str, Any]) -> None:
    """``check_json_types`` against the fields of dataclass ``cls`` (ModelConfig, ImageSpec, DecodeOptions)."""
    check_json_types(data, typing.get_type_hints(cls))
