"""Positional information: the sinusoidal table against the paper's formula in float64 Python math,
the learned table's limits, and rotary embeddings (relative-offset property, complex-number reference)."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rosetta.nn.positional import (
    LearnedPositionalEmbedding,
    RotaryEmbedding,
    SinusoidalPositionalEncoding,
    embedding_scale,
    sinusoidal_encoding,
)

FAST = settings(max_examples=25, deadline=None)


def paper_table(seq_len, d_model):
    """PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(pos / 10000^(2i/d)), with Python's math."""
    rows = []
    for pos in range(seq_len):
        row = []
        for col in range(d_model):
            two_i = col - col % 2
            angle = pos / 10000 ** (two_i / d_model)
            row.append(math.sin(angle) if col % 2 == 0 else math.cos(angle))
        rows.append(row)
    return torch.tensor(rows, dtype=torch.float64).reshape(seq_len, d_model)


@FAST
@given(st.integers(0, 60), st.integers(1, 40))
def test_sinusoidal_table_equals_the_formula(seq_len, d_model):
    table = sinusoidal_encoding(seq_len, d_model)
    assert table.shape == (seq_len, d_model) and table.dtype == torch.float32
    torch.testing.assert_close(table.double(), paper_table(seq_len, d_model), atol=1e-7, rtol=0)


@pytest.mark.parametrize("d_model", [1, 7, 513])
def test_odd_d_model_has_one_more_sine_column(d_model):
    table = sinusoidal_encoding(5, d_model).double()
    torch.testing.assert_close(table, paper_table(5, d_model), atol=1e-7, rtol=0)
    assert torch.all(table[0, 0::2] == 0) and torch.all(table[0, 1::2] == 1)  # sin 0, cos 0


def test_sinusoidal_known_values():
    table = sinusoidal_encoding(3, 4)
    # column 0/1: angle = pos; column 2/3: angle = pos / 10000^(2/4) = pos / 100
    expected = [[0, 1, 0, 1],
                [math.sin(1), math.cos(1), math.sin(0.01), math.cos(0.01)],
                [math.sin(2), math.cos(2), math.sin(0.02), math.cos(0.02)]]
    torch.testing.assert_close(table, torch.tensor(expected, dtype=torch.float32))


def test_sinusoidal_module_regrows_and_offsets():
    module = SinusoidalPositionalEncoding(d_model=6, initial_len=4)
    torch.testing.assert_close(module(3, offset=2), sinusoidal_encoding(5, 6)[2:])
    torch.testing.assert_close(module(10, offset=5), sinusoidal_encoding(15, 6)[5:])  # beyond the initial 4
    assert module.table.shape[0] >= 15
    assert not list(module.parameters())  # nothing trainable
    with pytest.raises(ValueError, match="d_model > 0"):
        sinusoidal_encoding(4, 0)


def test_learned_positions_rows_and_limit():
    module = LearnedPositionalEmbedding(max_len=8, d_model=4)
    torch.testing.assert_close(module(3, offset=5), module.weight[5:8])
    assert module.weight.requires_grad
    with pytest.raises(ValueError, match=r"9 positions is longer than the learned position table \(max_len=8\)"):
        module(4, offset=5)


def rotary_reference(x, offset):
    """Rotate-half RoPE as complex multiplication: z_j = x_j + i·x_{j+d/2}, z_j ← z_j · e^{i·pos·θ_j}."""
    d = x.shape[-1]
    theta = torch.tensor([10000.0 ** (-2 * j / d) for j in range(d // 2)], dtype=torch.float64)
    pos = torch.arange(offset, offset + x.shape[-2], dtype=torch.float64)
    z = torch.complex(x[..., : d // 2].double(), x[..., d // 2:].double())
    z = z * torch.polar(torch.ones(len(pos), d // 2, dtype=torch.float64), torch.outer(pos, theta))
    return torch.cat([z.real, z.imag], -1)


def test_rotary_equals_complex_rotation():
    torch.manual_seed(0)
    rope = RotaryEmbedding(8)
    x = torch.randn(2, 3, 5, 8)
    for offset in (0, 7):
        torch.testing.assert_close(rope(x, offset).double(), rotary_reference(x, offset), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(rope(x).norm(dim=-1), x.norm(dim=-1))  # a rotation keeps lengths


@FAST
@given(st.integers(0, 50), st.integers(0, 50), st.integers(0, 200), st.sampled_from([2, 4, 8, 16]),
       st.integers(0, 2**16))
def test_rotary_scores_depend_only_on_relative_offset(m, n, shift, head_dim, seed):
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(1, 1, 1, head_dim, generator=gen, dtype=torch.float64)
    k = torch.randn(1, 1, 1, head_dim, generator=gen, dtype=torch.float64)
    rope = RotaryEmbedding(head_dim)

    def score(pq, pk):
        return float((rope(q, pq) * rope(k, pk)).sum())

    # float32 angles inside the module: tolerance for positions up to 250
    assert score(m, n) == pytest.approx(score(m + shift, n + shift), abs=1e-3 * head_dim)


def test_rotary_position_zero_is_identity_and_odd_size_rejected():
    x = torch.randn(1, 2, 1, 6)
    torch.testing.assert_close(RotaryEmbedding(6)(x, 0), x)
    with pytest.raises(ValueError, match="even per-head size, got 5"):
        RotaryEmbedding(5)


def test_embedding_scale():
    assert embedding_scale(512) == pytest.approx(math.sqrt(512))
