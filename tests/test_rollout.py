"""Attention rollout (Abnar & Zuidema 2020) and the [CLS] → patch grids: against a float64 reference written
here with explicit loops, a 2-layer case worked out by hand, properties (rows sum to 1), and a real ViT."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rosetta.view.rollout import attention_rollout, cls_attention_grids, cls_rollout, patch_grid


def random_attention(batch, layers, heads, tokens, seed=0):
    """Per-layer softmax weights (B, H, T, T), peaked enough that the heads and layers differ."""
    generator = torch.Generator().manual_seed(seed)
    return [(3 * torch.randn(batch, heads, tokens, tokens, generator=generator)).softmax(-1) for _ in range(layers)]


def reference_rollout(attentions, b):
    """Rollout of example ``b``, in float64 Python loops: average heads, add I, renormalise rows, multiply."""
    n_layers, n_heads, t = len(attentions), attentions[0].shape[1], attentions[0].shape[-1]
    rollout = None
    for layer in range(n_layers):
        a = [[sum(float(attentions[layer][b, h, i, j]) for h in range(n_heads)) / n_heads + (i == j)
              for j in range(t)] for i in range(t)]
        a = [[v / sum(row) for v in row] for row in a]
        if rollout is None:
            rollout = a
        else:  # the later layer on the left: it mixes what the earlier ones produced
            rollout = [[sum(a[i][k] * rollout[k][j] for k in range(t)) for j in range(t)] for i in range(t)]
    return torch.tensor(rollout, dtype=torch.float64)


def test_rollout_equals_an_explicit_loop_reference():
    attentions = random_attention(batch=2, layers=3, heads=2, tokens=10)  # 9 patches: a 3×3 grid
    rollout = attention_rollout(attentions)
    assert rollout.shape == (2, 10, 10) and rollout.dtype == torch.float32
    for b in range(2):
        expected = reference_rollout(attentions, b)
        assert torch.allclose(rollout[b].double(), expected, atol=1e-6)
        grid = cls_rollout(attentions)[b]
        assert grid.shape == (3, 3)
        for i in range(3):
            for j in range(3):  # patch (i, j) is token 1 + 3i + j: row-major, after [CLS]
                assert float(grid[i, j]) == pytest.approx(float(expected[0, 1 + 3 * i + j]), abs=1e-6)
    # the order of the layers matters: multiplying them the other way round gives another answer
    assert not torch.allclose(attention_rollout(attentions[::-1]), rollout, atol=1e-3)
    # unbatched input (H, T, T) per layer gives the same, without the batch dimension
    assert torch.allclose(attention_rollout([a[1] for a in attentions]), rollout[1])


def test_two_layers_by_hand():
    """5 tokens ([CLS] + a 2×2 grid), 2 heads.
    Layer 1: head 0 → everyone looks at token 1, head 1 → everyone looks at itself. Mean + I, renormalised:
        token 1: e1;  every other token i: ¼ e1 + ¾ ei.
    Layer 2: both heads → everyone looks at token 4. Mean + I: token 4: e4; any other i: ½ ei + ½ e4.
    R = Â2 · Â1:  [CLS] row = ½ Â1[0] + ½ Â1[4] = ½ (¾, ¼, 0, 0, 0) + ½ (0, ¼, 0, 0, ¾) = (⅜, ¼, 0, 0, ⅜)
                  row 1    = ½ Â1[1] + ½ Â1[4] = (0, ⅝, 0, 0, ⅜)."""
    t = 5
    to_token_1 = torch.zeros(t, t)
    to_token_1[:, 1] = 1
    layer1 = torch.stack([to_token_1, torch.eye(t)])  # (H, T, T)
    to_token_4 = torch.zeros(t, t)
    to_token_4[:, 4] = 1
    layer2 = torch.stack([to_token_4, to_token_4])
    rollout = attention_rollout([layer1, layer2])
    assert rollout.shape == (5, 5)
    assert rollout[0].tolist() == pytest.approx([0.375, 0.25, 0, 0, 0.375])
    assert rollout[1].tolist() == pytest.approx([0, 0.625, 0, 0, 0.375])
    assert rollout[4].tolist() == pytest.approx([0, 0.25, 0, 0, 0.75])
    assert torch.allclose(cls_rollout([layer1, layer2]), torch.tensor([[0.25, 0.0], [0.0, 0.375]]))
    # without the residual, the plain product of the head means: [CLS] row = Ā1[4] = ½ e1 + ½ e4
    assert attention_rollout([layer1, layer2], residual=False)[0].tolist() == pytest.approx([0, 0.5, 0, 0, 0.5])
    # per layer and head, the [CLS] row over the grid (no rollout): layer 1 head 0 puts all of it on patch (0, 0)
    grids = cls_attention_grids([layer1, layer2])
    assert grids.shape == (2, 2, 2, 2)
    assert grids[0, 0].tolist() == [[1.0, 0.0], [0.0, 0.0]] and grids[0, 1].sum() == 0  # head 1: [CLS] itself
    assert grids[1, 1].tolist() == [[0.0, 0.0], [0.0, 1.0]]


@settings(max_examples=30, deadline=None)
@given(layers=st.integers(1, 5), heads=st.integers(1, 4), grid=st.integers(1, 4), seed=st.integers(0, 10_000))
def test_rows_sum_to_one_and_entries_are_probabilities(layers, heads, grid, seed):
    attentions = random_attention(2, layers, heads, grid * grid + 1, seed)
    rollout = attention_rollout(attentions)
    assert torch.allclose(rollout.sum(-1), torch.ones(2, grid * grid + 1), atol=1e-5)
    assert rollout.min() >= 0
    cls = cls_rollout(attentions)
    assert cls.shape == (2, grid, grid) and float(cls.sum(dim=(1, 2)).max()) <= 1 + 1e-5


def test_one_layer_is_half_attention_half_identity_and_identity_stays_identity():
    attentions = random_attention(1, 1, 3, 5)
    expected = 0.5 * attentions[0].mean(1) + 0.5 * torch.eye(5)
    assert torch.allclose(attention_rollout(attentions), expected, atol=1e-6)
    eye = [torch.eye(5).expand(1, 2, 5, 5)] * 4  # every token only looks at itself: nothing flows
    assert torch.equal(attention_rollout(eye), torch.eye(5)[None])


def test_grids_index_the_cls_row_row_major_and_bad_shapes_are_refused():
    attentions = random_attention(2, 3, 4, 17)  # 4×4 grid
    grids = cls_attention_grids(attentions)
    assert grids.shape == (2, 3, 4, 4, 4)
    for b, layer, head, i, j in [(0, 0, 0, 0, 0), (1, 2, 3, 3, 1), (0, 1, 2, 1, 3)]:
        assert grids[b, layer, head, i, j] == attentions[layer][b, head, 0, 1 + 4 * i + j]
    stacked = torch.stack(attentions, dim=1)  # one tensor (B, L, H, T, T) works as well
    assert torch.equal(cls_attention_grids(stacked), grids)
    with pytest.raises(ValueError, match="square grid"):
        patch_grid(torch.zeros(3, 5))
    with pytest.raises(ValueError, match="no attention layers"):
        attention_rollout([])
    with pytest.raises(ValueError, match="expected per-layer attention"):
        attention_rollout([torch.zeros(2, 3, 4)])  # (H, T, T') with T != T'


def test_rollout_of_a_trained_vit():
    pytest.importorskip("sklearn")
    from tiny_vit import tiny_vit_dir

    from rosetta.data.images import as_nchw, load_images, normalize
    from rosetta.decode.loading import load_any

    loaded = load_any(tiny_vit_dir())
    images, _ = load_images("digits", "test")
    spec = loaded.info["image"]
    with torch.no_grad():
        _, attentions = loaded.model(normalize(as_nchw(images[:4]), spec["mean"], spec["std"]), return_attention=True)
    assert len(attentions) == 2 and attentions[0].shape == (4, 4, 17, 17)
    rollout = attention_rollout(attentions)
    assert torch.allclose(rollout.sum(-1), torch.ones(4, 17), atol=1e-5)
    for b in range(2):
        assert torch.allclose(rollout[b].double(), reference_rollout(attentions, b), atol=1e-5)
    cls = cls_rollout(attentions)
    assert cls.shape == (4, 4, 4) and (cls > 0).all()
    assert not torch.allclose(cls[0], cls[1], atol=1e-3)  # different digits, different maps
