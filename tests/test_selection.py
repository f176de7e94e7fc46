"""The two-pass row selections the searches use (``rosetta.decode.selection``) against PyTorch's own ``max`` /
``topk`` and a brute-force ranking in float64: exact indices, ties, rows with a tail past the last whole chunk,
banned (−∞) entries, short rows that take the direct path."""

from __future__ import annotations

import pytest
import torch

from rosetta.decode.selection import CHUNK, argmax_rows, topk_rows

WIDTHS = [4 * CHUNK, 4 * CHUNK + 1, 8000, 65_001, 50_257, 10 * CHUNK - 1, 37]


def brute_force_first_max(x: torch.Tensor) -> list[int]:
    rows = x.double().tolist()
    return [max(range(len(r)), key=lambda j: (r[j], -j)) for r in rows]  # largest, then the smallest index


@pytest.mark.parametrize("width", WIDTHS)
def test_argmax_rows_is_the_first_maximum(width):
    torch.manual_seed(width)
    x = torch.randn(9, width)
    x[1, :] = -float("inf")  # a row with nothing allowed: index 0, as max
    x[2, width - 1] = 50.0  # the maximum in the tail (when there is one)
    x[3, [5, width // 2, width - 1]] = 50.0  # tied maxima: the first one
    x[4, :] = 1.0  # all equal: 0
    x[5, ::CHUNK] = 30.0  # tied maxima, one per chunk
    x[6, width - 2 :] = 40.0  # tied in the tail
    x[7, 3] = 40.0  # … and the same value earlier
    x[7, width - 1] = 40.0
    x[8, :: 2] = -float("inf")  # banned half
    got = argmax_rows(x)
    assert got.tolist() == brute_force_first_max(x) == x.max(dim=-1).indices.tolist()
    assert got.dtype == torch.long and got.shape == (9,)


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("k", [1, 2, 8])
def test_topk_rows_is_topk(width, k):
    torch.manual_seed(k * width)
    x = torch.randn(6, width)
    x[1, width - 3 :] = 20.0 + torch.arange(3.0)  # the best ones in the tail
    x[2, torch.randperm(width)[: 3 * k]] = -float("inf")  # banned entries
    x[3, ::CHUNK] = 10.0 + torch.arange(len(range(0, width, CHUNK)), dtype=torch.float)  # best one per chunk
    x[4, :CHUNK] = 10.0 + torch.arange(float(min(CHUNK, width)))  # all of the best in one chunk
    values, indices = topk_rows(x, k)
    want_values, want_indices = x.topk(min(k, width), dim=1)
    assert torch.equal(values, want_values)
    assert torch.equal(indices, want_indices)  # no ties among the k best here: the same indices
    assert torch.equal(x.gather(1, indices), values)
    ranked = x.double().sort(dim=1, descending=True).values[:, : min(k, width)]
    assert torch.equal(values.double(), ranked)


def test_topk_rows_with_ties_keeps_the_values():
    """Equal values may come in another order than ``topk``'s, but the values are the same and every index holds
    its value."""
    torch.manual_seed(0)
    x = torch.randint(0, 5, (16, 4 * 8 * CHUNK + 7)).float()
    values, indices = topk_rows(x, 8)
    assert torch.equal(values, x.topk(8, dim=1).values)
    assert torch.equal(x.gather(1, indices), values)
    assert all(len(set(row)) == 8 for row in indices.tolist())  # distinct entries


def test_a_wrong_selection_would_be_caught():
    """Sensitivity: the comparisons above tell a selection that skips the tail or takes the last maximum."""
    x = torch.randn(3, 4 * CHUNK + 5)
    x[:, -1] = 99.0
    full = (x.shape[1] // CHUNK) * CHUNK
    assert not torch.equal(x[:, :full].max(dim=-1).indices, argmax_rows(x))
    x[0, [1, 2]] = 100.0
    last_maximum = x.shape[1] - 1 - int(x[0].flip(0).argmax())
    assert argmax_rows(x)[0] == 1 and last_maximum == 2
