"""Pegasus (``model_type: pegasus``; PegasusForConditionalGeneration) into Rosetta's encoder–decoder, and back.

transformers' Pegasus is Marian's layer stack (``rosetta.hub.marian``: biases everywhere, fused q/k/v here,
sinusoidal positions from 0 in the "halves" layout, ``final_logits_bias``) made Pre-LN, each choice a
``ModelConfig`` flag (``PEGASUS_LAYOUT``):

* Pre-LN layers, x + Sublayer(LayerNorm(x)), and a final LayerNorm after each stack (``norm_first``:
  ``model.encoder.layer_norm`` / ``model.decoder.layer_norm`` ← ``encoder.final_norm`` / ``decoder.final_norm``);
  LayerNorm ε 1e-5 (``nn.LayerNorm``'s default), no LayerNorm on the embeddings
* ONE token table for source and target (``model.shared``: ``share_embeddings``), tied to the output layer
  unless ``tie_word_embeddings`` is false (then each stack's ``embed_tokens`` and ``lm_head`` are in the file too)
* separate source / target vocabularies (Rosetta's ``share_embeddings = false``, S and T tokens) as ONE
  concatenated vocabulary of S + T ids, exactly: source ids 0..S-1 as they are, target ids (pad, start and eos
  included) + S; untied (``tie_word_embeddings`` false: transformers 5 then runs each stack's ``embed_tokens``
  and ``lm_head`` as separate tensors), encoder table [source; zeros], decoder table [zeros; target], lm_head
  [zeros; output], ``final_logits_bias`` [-inf; output bias] so the decoder never writes a source id (-inf:
  ``generate``, greedy, beam and sampling, runs with it as with the ``bad_words_ids`` it bans the same way).
  config.json says where the target starts (``SOURCE_VOCAB_KEY``: ``rosetta_source_vocab_size`` = S); read
  back, such a directory is the separate-vocabulary Transformer again (``split_tables``; untied), and its
  target/tokenizer.json's ids less S. A Pegasus without the key is one shared vocabulary, as Google's are.
* token embeddings × √d_model with ``scale_embedding``; ``activation_function`` (relu, gelu, silu, tanh-GELU)
* the sinusoid with base 10000, sines of all frequencies then their cosines (``sinusoidal_layout="halves"``,
  ``PegasusSinusoidalPositionalEmbedding.create_weight``); the file's ``embed_positions`` tables are written as
  that sinusoid and, read back, checked against it (transformers 5 loads the file's table, and computes it
  when missing: either way the same numbers)
* ids from config.json: pad, eos, and ``decoder_start_token_id`` (Pegasus: pad) as ``bos_id`` (less S when
  concatenated)

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
from rosetta.hub import bart, marian
from rosetta.hub.exported import has_tokenizer_json, read_tokenizers
from rosetta.hub.registry import register_hf
from rosetta.models.pretrained import CONFIG_FILE, PretrainedError
from rosetta.nn.config import ModelConfig
from rosetta.nn.positional import sinusoidal_encoding

PEGASUS_LAYOUT: dict[str, Any] = dict(
    positional="sinusoidal", sinusoidal_layout="halves", position_offset=0, norm="layernorm", norm_eps=1e-5,
    norm_first=True, bias=True, embedding_norm=False, type_vocab_size=0, output_bias=True, scale_attention=True,
    scale_decoder_output=False, copy_attention=False, heads_per_layer=None,
)
SOURCE_VOCAB_KEY = "rosetta_source_vocab_size"  # config.json: S of a concatenated vocabulary (module docstring)
NEVER = float("-inf")  # final_logits_bias of the source rows: the decoder never writes a source token
POSITIONS = ("model.encoder.embed_positions.weight", "model.decoder.embed_positions.weight")
SPIECE = "spiece.model"
OFFSET = 103  # PegasusTokenizer.offset: SentencePiece id i (i ≥ 2) is model id i + 103


def source_vocab_size(hf: dict[str, Any]) -> int | None:
    """S of a concatenated vocabulary (config.json's ``SOURCE_VOCAB_KEY``, written by Rosetta's export of a model
    with separate source / target vocabularies), or None for one shared vocabulary (every other Pegasus)."""
    split = hf.get(SOURCE_VOCAB_KEY)
    if split is None:
        return None
    vocab = hf.get("vocab_size")
    if isinstance(split, bool) or not isinstance(split, int) or not isinstance(vocab, int) or not 0 < split < vocab:
        raise PretrainedError(f"{CONFIG_FILE}: {SOURCE_VOCAB_KEY}={split!r} must be an id between 0 and "
                              f"vocab_size={vocab!r} (where the target vocabulary starts)")
    if hf.get("tie_word_embeddings", True):
        raise PretrainedError(f"{CONFIG_FILE}: {SOURCE_VOCAB_KEY} needs tie_word_embeddings false (tied, "
                              "transformers would run the encoder's, decoder's and output tables as one)")
    return split


def _ids(hf: dict[str, Any], offset: int) -> dict[str, int]:
    """pad / start / eos of config.json, less ``offset`` (a concatenated vocabulary's target ids start at S)."""
    return {"pad_id": hf.get("pad_token_id", 0) - offset, "bos_id": hf.get("decoder_start_token_id", 0) - offset,
            "eos_id": bart.one_id(hf, "eos_token_id", 1) - offset}


def config_from_hf(hf: dict[str, Any]) -> ModelConfig:
    """A Pegasus config.json → ``ModelConfig`` (``PEGASUS_LAYOUT``; PegasusConfig's defaults where it is silent).
    With ``SOURCE_VOCAB_KEY`` (S): separate vocabularies, the source one ids 0..S-1 and the target one the rest
    (its ids, pad / start / eos included, less S). fairseq-era keys (normalize_before, add_final_layer_norm,
    static_position_embeddings) are not read: transformers' Pegasus ignores them too."""
    act = hf.get("activation_function", "gelu")
    if act not in marian.ACTIVATIONS:
        raise PretrainedError(f"{CONFIG_FILE}: activation_function {act!r} is not one Rosetta has "
                              f"({', '.join(sorted(marian.ACTIVATIONS))})")
    split = source_vocab_size(hf)
    try:
        vocab = hf["vocab_size"]
        return ModelConfig(
            **PEGASUS_LAYOUT, src_vocab_size=split or vocab, tgt_vocab_size=vocab - (split or 0),
            share_embeddings=split is None, d_model=hf["d_model"],
            n_heads=marian.same_width(hf, "encoder_attention_heads", "decoder_attention_heads", "Pegasus"),
            d_ff=marian.same_width(hf, "encoder_ffn_dim", "decoder_ffn_dim", "Pegasus"),
            n_encoder_layers=hf["encoder_layers"], n_decoder_layers=hf["decoder_layers"],
            dropout=hf.get("dropout", 0.1), attention_dropout=hf.get("attention_dropout", 0.0),
            activation_dropout=hf.get("activation_dropout", 0.0), activation=marian.ACTIVATIONS[act],
            **_ids(hf, split or 0), max_len=hf.get("max_position_embeddings", 1024),
            scale_embeddings=hf.get("scale_embedding", False), tie_output=hf.get("tie_word_embeddings", True),
        )
    except KeyError as e:
        raise PretrainedError(f"{CONFIG_FILE} lacks {e.args[0]!r}, which a Pegasus config has") from e
    except (TypeError, ValueError) as e:
        raise PretrainedError(f"{CONFIG_FILE} does not describe a model Rosetta can build: {e}") from e


def target_offset(config: ModelConfig) -> int:
    """What the export adds to a target id: S with separate vocabularies (concatenated), else 0."""
    return 0 if config.share_embeddings else config.src_vocab_size


def config_to_hf(config: ModelConfig) -> dict[str, Any]:
    """A ``ModelConfig`` in Pegasus's layout → a config.json ``PegasusForConditionalGeneration`` reads; separate
    vocabularies as one concatenated vocabulary (module docstring: ``SOURCE_VOCAB_KEY``, the target's ids + S)."""
    other = [f"{k}={getattr(config, k)!r}" for k, v in PEGASUS_LAYOUT.items() if getattr(config, k) != v]
    if config.activation not in marian.ACTIVATION_NAMES:
        other.append(f"activation={config.activation!r}")
    if config.head_dim_k * config.n_heads != config.d_model or config.head_dim_v != config.head_dim_k:
        other.append(f"d_k={config.d_k!r}, d_v={config.d_v!r}")
    if other:
        raise ValueError(f"not Pegasus's layout ({', '.join(other)}); only a model built with PEGASUS_LAYOUT goes "
                         "back to a Pegasus directory")
    offset = target_offset(config)
    split = {SOURCE_VOCAB_KEY: offset} if offset else {}
    return {
        "model_type": "pegasus", "architectures": ["PegasusForConditionalGeneration"], "is_encoder_decoder": True,
        "vocab_size": offset + config.tgt_vocab_size, **split, "d_model": config.d_model,
        "encoder_layers": config.n_encoder_layers, "decoder_layers": config.n_decoder_layers,
        "encoder_attention_heads": config.n_heads, "decoder_attention_heads": config.n_heads,
        "encoder_ffn_dim": config.d_ff, "decoder_ffn_dim": config.d_ff,
        "activation_function": marian.ACTIVATION_NAMES[config.activation], "dropout": config.dropout,
        "attention_dropout": config.attention_dropout, "activation_dropout": config.activation_dropout,
        "max_position_embeddings": config.max_len, "scale_embedding": config.scale_embeddings,
        "pad_token_id": config.pad_id + offset, "eos_token_id": config.eos_id + offset,
        "forced_eos_token_id": config.eos_id + offset, "decoder_start_token_id": config.bos_id + offset,
        "tie_word_embeddings": config.tie_output and not offset,
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


TABLES = ("model.encoder.embed_tokens.weight", "model.decoder.embed_tokens.weight", "lm_head.weight")


def split_tables(tensors: dict[str, torch.Tensor], config: ModelConfig) -> dict[str, torch.Tensor]:
    """``tensors`` of a concatenated vocabulary (``config.src_vocab_size`` = S) with the encoder's table cut to its
    first S rows, and the decoder's, the output layer's and ``final_logits_bias`` to the rows from S on: what
    ``concatenated_tables`` wrote. The rows left out are never read (the encoder gets source ids, the decoder
    target ids), nor written, which ``final_logits_bias`` must say (-inf at every source id)."""
    split, size = config.src_vocab_size, config.src_vocab_size + config.tgt_vocab_size
    rows = {name: tuple(tensors[name].shape) for name in TABLES if name in tensors}
    wrong = [f"{name} {shape}" for name, shape in rows.items() if shape[0] != size]
    if len(rows) < len(TABLES) or wrong:
        raise PretrainedError(f"model.safetensors: a vocabulary concatenated at {SOURCE_VOCAB_KEY}={split} needs "
                              f"{', '.join(TABLES)} of {size} rows each (found {', '.join(wrong) or sorted(rows)})")
    bias = tensors.get("final_logits_bias")
    if bias is None or bias.numel() != size or not torch.isneginf(bias.reshape(-1)[:split]).all():
        raise PretrainedError(f"model.safetensors: final_logits_bias must be -inf at the {split} source ids "
                              f"({SOURCE_VOCAB_KEY}), or generate may write a source token; Rosetta reads only "
                              "the target rows")
    out = {name: t for name, t in tensors.items() if name not in (*TABLES, "model.shared.weight")}
    out.update({TABLES[0]: tensors[TABLES[0]][:split], TABLES[1]: tensors[TABLES[1]][split:],
                TABLES[2]: tensors[TABLES[2]][split:], "final_logits_bias": bias.reshape(1, -1)[:, split:]})
    return out


def concatenated_tables(state: dict[str, torch.Tensor], config: ModelConfig) -> dict[str, torch.Tensor]:
    """Separate vocabularies (S source, T target tokens) as Pegasus's tensors over one vocabulary of S + T ids:
    encoder table [source; 0], decoder table [0; target], lm_head [0; output], final_logits_bias [-inf; output
    bias], and model.shared (read by nothing when untied) the encoder's, so that loading reports none missing."""
    src, tgt, out = state["src_embed.token.weight"], state["tgt_embed.token.weight"], state["output.weight"]
    bias = state["output.bias"].reshape(-1)
    encoder = torch.cat([src, src.new_zeros(config.tgt_vocab_size, src.shape[1])])
    return {"model.shared.weight": encoder.clone(), TABLES[0]: encoder,
            TABLES[1]: torch.cat([tgt.new_zeros(config.src_vocab_size, tgt.shape[1]), tgt]),
            TABLES[2]: torch.cat([out.new_zeros(config.src_vocab_size, out.shape[1]), out]),
            "final_logits_bias": torch.cat([bias.new_full((config.src_vocab_size,), NEVER), bias]).reshape(1, -1)}


def weights_from_hf(tensors: dict[str, torch.Tensor], config: ModelConfig) -> dict[str, torch.Tensor]:
    """Pegasus tensors → the ``Transformer`` state dict (separate vocabularies: ``split_tables`` first); missing
    and unknown weights are named."""
    check_positions(tensors, config)
    if not config.share_embeddings:
        tensors = split_tables(tensors, config)
    return marian.weights_from_hf(tensors, config, weight_map(config), ignored=POSITIONS, name="Pegasus")


def weights_to_hf(state: dict[str, torch.Tensor], config: ModelConfig) -> dict[str, torch.Tensor]:
    """A ``Transformer`` state dict in Pegasus's layout → PegasusForConditionalGeneration's tensors (separate
    vocabularies: ``concatenated_tables``), with the position tables it computes (so that loading reports none
    missing)."""
    tensors = marian.weights_to_hf(state, config, weight_map(config))
    if not config.share_embeddings:
        tensors.update({name: t.detach().contiguous() for name, t in concatenated_tables(state, config).items()})
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
    """(source, target): tokenizer.json (``rosetta.hub.exported``; a concatenated vocabulary's target/tokenizer.json
    with its ids less S), else spiece.model; one vocabulary both sides."""
    if has_tokenizer_json(path):
        return read_tokenizers(path, hf, target_offset=source_vocab_size(hf) or 0)
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
