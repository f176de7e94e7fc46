"""ModelConfig: JSON round trip, presets (the paper's base size counted two ways), and validation errors
that name the offending setting."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rosetta import ModelConfig, Transformer
from rosetta.nn.config import ACTIVATIONS, NORMS, POSITIONALS, PRESETS


@settings(max_examples=20, deadline=None)
@given(
    positional=st.sampled_from(POSITIONALS),
    norm=st.sampled_from(NORMS),
    activation=st.sampled_from(ACTIVATIONS),
    norm_first=st.booleans(),
    share=st.booleans(),
    d_k=st.sampled_from([None, 4, 6]),
    dropout=st.floats(0.0, 0.9),
)
def test_json_round_trip(positional, norm, activation, norm_first, share, d_k, dropout):
    cfg = ModelConfig(src_vocab_size=50, tgt_vocab_size=50 if share else 60, d_model=24, n_heads=4,
                      positional=positional, norm=norm, activation=activation, norm_first=norm_first,
                      share_embeddings=share, d_k=d_k, d_v=d_k, dropout=dropout)
    again = ModelConfig.from_json(cfg.to_json())
    assert again == cfg
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg


def test_json_file_round_trip(tmp_path):
    cfg = ModelConfig.preset("small", src_vocab_size=100, tgt_vocab_size=120, tie_output=False, init_std=0.02)
    path = tmp_path / "model.json"
    text = cfg.to_json(path)
    assert path.read_text(encoding="utf-8").strip() == text
    assert ModelConfig.from_json(path) == cfg
    assert ModelConfig.from_json(str(path)) == cfg


def test_unknown_field_is_rejected():
    with pytest.raises(ValueError, match=r"unknown ModelConfig fields \['heads'\]"):
        ModelConfig.from_dict({"heads": 8})


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_are_valid_and_take_overrides(name):
    cfg = ModelConfig.preset(name, src_vocab_size=100, tgt_vocab_size=100, norm_first=True)
    assert cfg.d_model == PRESETS[name]["d_model"] and cfg.norm_first
    assert cfg.d_model % cfg.n_heads == 0


def test_defaults_are_the_paper_base_model():
    cfg = ModelConfig()
    assert (cfg.d_model, cfg.n_heads, cfg.d_ff, cfg.n_encoder_layers, cfg.n_decoder_layers) == (512, 8, 2048, 6, 6)
    assert cfg.head_dim_k == cfg.head_dim_v == 64
    assert not cfg.norm_first and cfg.positional == "sinusoidal" and cfg.activation == "relu"
    assert ModelConfig.preset("base", src_vocab_size=32000, tgt_vocab_size=32000) == cfg


def expected_parameter_count(cfg: ModelConfig) -> int:
    """Count by formula: embeddings + N_enc·(self-attn + FFN + 2 LN) + N_dec·(2 attn + FFN + 3 LN)."""
    d, ff = cfg.d_model, cfg.d_ff
    hk, hv = cfg.n_heads * cfg.head_dim_k, cfg.n_heads * cfg.head_dim_v
    attention = d * (2 * hk + hv) + (2 * hk + hv) + hv * d + d  # W^Q, W^K, W^V, W^O with biases
    ffn = d * ff + ff + ff * d + d
    layer_norm = 2 * d
    embeddings = cfg.src_vocab_size * d if cfg.share_embeddings else (cfg.src_vocab_size + cfg.tgt_vocab_size) * d
    output = 0 if cfg.tie_output else cfg.tgt_vocab_size * d
    encoder = cfg.n_encoder_layers * (attention + ffn + 2 * layer_norm)
    decoder = cfg.n_decoder_layers * (2 * attention + ffn + 3 * layer_norm)
    return embeddings + output + encoder + decoder


def test_base_preset_has_about_the_papers_65m_parameters():
    cfg = ModelConfig.preset("base", src_vocab_size=37000, tgt_vocab_size=37000, share_embeddings=True)
    with torch.device("meta"):  # sizes only, no memory or init time
        model = Transformer(cfg)
    n = model.num_parameters()
    assert n == expected_parameter_count(cfg) == 63_082_496
    # Table 3 of the paper reports 65M for this size; we count 63.1M (the paper's figure is rounded
    # and its count is not fully specified), so accept 60M–66M.
    assert 60e6 < n < 66e6


@pytest.mark.parametrize("overrides", [
    dict(share_embeddings=False, tie_output=False, tgt_vocab_size=47),
    dict(share_embeddings=False, tie_output=True, d_k=6, d_v=10, n_heads=3),
    dict(share_embeddings=True, tie_output=True, activation="gelu"),
])
def test_small_models_match_the_count_formula(overrides):
    cfg = ModelConfig.preset("tiny", **{"src_vocab_size": 37, "tgt_vocab_size": 37, **overrides})
    assert Transformer(cfg).num_parameters() == expected_parameter_count(cfg)


@pytest.mark.parametrize("kwargs, message", [
    (dict(d_model=10, n_heads=3), r"d_model=10 is not divisible by n_heads=3"),
    (dict(positional="alibi"),
     r"positional='alibi' is not one of \('sinusoidal', 'learned', 'rope', 'none', 'relative'\)"),
    (dict(norm="batchnorm"), r"norm='batchnorm' is not one of"),
    (dict(activation="tanh"), r"activation='tanh' is not one of"),
    (dict(share_embeddings=True, src_vocab_size=100, tgt_vocab_size=90),
     r"share_embeddings needs one shared vocabulary.*src_vocab_size=100 != tgt_vocab_size=90"),
    (dict(positional="rope", d_k=5, d_v=5), r"rotary positions need an even d_k, got 5"),
    (dict(dropout=1.0), r"dropout must be in \[0, 1\), got 1.0"),
    (dict(attention_dropout=-0.1), r"attention_dropout must be in \[0, 1\)"),
    (dict(d_model=0), r"d_model must be positive, got 0"),
    (dict(src_vocab_size=-5), r"src_vocab_size must be positive"),
    (dict(pad_id=100, src_vocab_size=100, tgt_vocab_size=100), r"pad_id=100 is outside the vocabulary"),
])
def test_bad_configuration_names_the_problem(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(**kwargs)


def test_unknown_preset_lists_the_choices():
    with pytest.raises(ValueError, match=r"unknown preset 'huge'; choose one of \['base', 'big', 'small', 'tiny'\]"):
        ModelConfig.preset("huge")


def test_explicit_head_sizes_allow_indivisible_d_model():
    cfg = ModelConfig(d_model=10, n_heads=3, d_k=4, d_v=6)
    assert (cfg.head_dim_k, cfg.head_dim_v) == (4, 6)


def test_replace_revalidates():
    cfg = ModelConfig.preset("tiny")
    assert cfg.replace(norm="rmsnorm").norm == "rmsnorm"
    with pytest.raises(ValueError, match="norm='nope'"):
        cfg.replace(norm="nope")
