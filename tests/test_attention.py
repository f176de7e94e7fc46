"""Attention: softmax(QKᵀ/√d_k)V against an independent float64 loop, its mask semantics, both code paths,
gradients (gradcheck), multi-head attention against a per-head reference, and the key/value cache."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rosetta.nn.attention import (
    EXPLICIT_TRAINING_MAX_KEYS,
    KVCache,
    MultiHeadAttention,
    causal_mask,
    explicit_trains_faster,
    padding_mask,
    scaled_dot_product_attention,
)

FAST = settings(max_examples=25, deadline=None)


@st.composite
def attention_inputs(draw, allow_empty_rows=True):
    """Random q, k, v (d_v may differ from d_k) and a boolean mask broadcast over heads."""
    b, h = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    tq, tk = draw(st.integers(1, 5)), draw(st.integers(1, 6))
    dk, dv = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    seed = draw(st.integers(0, 2**16))
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(b, h, tq, dk, generator=gen)
    k = torch.randn(b, h, tk, dk, generator=gen)
    v = torch.randn(b, h, tk, dv, generator=gen)
    mask = torch.rand(b, 1, tq, tk, generator=gen) < draw(st.floats(0.2, 1.0))
    if not allow_empty_rows:
        mask[..., 0] = True
    return q, k, v, mask


def reference_attention(q, k, v, mask):
    """Attention written out with Python floats: no torch.softmax, no matmul, float64 throughout."""
    b, h, tq, dk = q.shape
    tk, dv = k.shape[2], v.shape[3]
    out = torch.zeros(b, h, tq, dv, dtype=torch.float64)
    weights = torch.zeros(b, h, tq, tk, dtype=torch.float64)
    qd, kd, vd = q.double().tolist(), k.double().tolist(), v.double().tolist()
    m = mask.expand(b, h, tq, tk).tolist() if mask is not None else [[[[True] * tk] * tq] * h] * b
    for bi in range(b):
        for hi in range(h):
            for i in range(tq):
                allowed = [j for j in range(tk) if m[bi][hi][i][j]]
                if not allowed:
                    continue  # definition: a query with no visible key gets zeros
                scores = {j: sum(a * c for a, c in zip(qd[bi][hi][i], kd[bi][hi][j])) / math.sqrt(dk) for j in allowed}
                top = max(scores.values())
                z = sum(math.exp(s - top) for s in scores.values())
                for j in allowed:
                    p = math.exp(scores[j] - top) / z
                    weights[bi, hi, i, j] = p
                    for d in range(dv):
                        out[bi, hi, i, d] += p * vd[bi][hi][j][d]
    return out, weights


@FAST
@given(attention_inputs())
def test_both_paths_match_an_independent_reference(inputs):
    q, k, v, mask = inputs
    ref_out, ref_w = reference_attention(q, k, v, mask)
    out_math, w = scaled_dot_product_attention(q, k, v, mask, need_weights=True)
    out_fused, none = scaled_dot_product_attention(q, k, v, mask, need_weights=False)
    assert none is None
    torch.testing.assert_close(out_math.double(), ref_out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(w.double(), ref_w, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(out_fused.double(), ref_out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out_fused, out_math, atol=1e-5, rtol=1e-5)


@FAST
@given(attention_inputs())
def test_rows_sum_to_one_and_masked_keys_get_exactly_zero(inputs):
    q, k, v, mask = inputs
    _, w = scaled_dot_product_attention(q, k, v, mask, need_weights=True)
    full = mask.expand_as(w)
    assert torch.all(w[~full] == 0.0)  # exactly zero, not merely small
    live_rows = full.any(-1)
    torch.testing.assert_close(w.sum(-1)[live_rows], torch.ones(int(live_rows.sum())), atol=1e-6, rtol=0)
    assert torch.all(w.sum(-1)[~live_rows] == 0.0)
    assert torch.all(w >= 0)


@pytest.mark.parametrize("need_weights", [False, True])
def test_fully_masked_rows_give_zeros_not_nan(need_weights):
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 2, 3, 4, requires_grad=True) for _ in range(3))
    mask = torch.ones(2, 1, 3, 3, dtype=torch.bool)
    mask[0, 0, 1] = False  # query 1 of batch 0 may see nothing
    mask[1] = False  # batch 1 sees nothing at all
    out, w = scaled_dot_product_attention(q, k, v, mask, need_weights=need_weights)
    assert not out.isnan().any()
    assert torch.all(out[0, :, 1] == 0) and torch.all(out[1] == 0)
    if need_weights:
        assert torch.all(w[0, :, 1] == 0) and torch.all(w[1] == 0)
    out.sum().backward()
    for t in (q, k, v):
        assert torch.isfinite(t.grad).all()


def test_no_mask_equals_all_true_mask():
    torch.manual_seed(1)
    q, k, v = torch.randn(1, 2, 4, 8), torch.randn(1, 2, 6, 8), torch.randn(1, 2, 6, 3)
    everything = torch.ones(1, 1, 1, 6, dtype=torch.bool)
    for nw in (False, True):
        torch.testing.assert_close(scaled_dot_product_attention(q, k, v, None, need_weights=nw)[0],
                                   scaled_dot_product_attention(q, k, v, everything, need_weights=nw)[0])


def test_gradcheck_math_path_float64():
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(1, 2, 3, 4, dtype=torch.float64, generator=gen, requires_grad=True)
    k = torch.randn(1, 2, 5, 4, dtype=torch.float64, generator=gen, requires_grad=True)
    v = torch.randn(1, 2, 5, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    mask = torch.tensor([True, True, False, True, False]).view(1, 1, 1, 5)

    def fn(q, k, v):
        out, w = scaled_dot_product_attention(q, k, v, mask, need_weights=True)
        return out, w

    assert torch.autograd.gradcheck(fn, (q, k, v), eps=1e-6, atol=1e-5)
    assert torch.autograd.gradcheck(lambda q, k, v: scaled_dot_product_attention(q, k, v)[0], (q, k, v))


def test_training_takes_the_explicit_formula_on_a_cpu_only_where_it_is_faster():
    """fp32 with gradients: explicit up to EXPLICIT_TRAINING_MAX_KEYS keys, fused beyond; bf16 with gradients:
    always explicit; without gradients (decoding): always fused."""
    limit = EXPLICIT_TRAINING_MAX_KEYS
    q = torch.zeros(2, 2, 3, 8, requires_grad=True)
    assert explicit_trains_faster(q, torch.zeros(2, 2, limit, 8))
    assert not explicit_trains_faster(q, torch.zeros(2, 2, limit + 1, 8))
    assert explicit_trains_faster(q.detach().bfloat16().requires_grad_(), torch.zeros(2, 2, 4 * limit, 8))
    assert not explicit_trains_faster(q.detach(), torch.zeros(2, 2, 3, 8))
    with torch.no_grad():
        assert not explicit_trains_faster(q, torch.zeros(2, 2, 3, 8))


@pytest.mark.parametrize("keys", [EXPLICIT_TRAINING_MAX_KEYS, EXPLICIT_TRAINING_MAX_KEYS + 1])
def test_training_gradients_on_both_sides_of_the_explicit_rule_match_float64(keys):
    """The path fp32 training takes (explicit at the limit, fused one key past it): outputs and the gradients of
    q, k, v against the formula in float64, with padded keys."""
    gen = torch.Generator().manual_seed(keys)
    q, k, v = (torch.randn(2, 3, n, 8, generator=gen) for n in (5, keys, keys))
    mask = torch.ones(2, 1, 1, keys, dtype=torch.bool)
    mask[1, ..., -7:] = False
    g = torch.randn(2, 3, 5, 8, generator=gen)
    leaves = [t.clone().requires_grad_() for t in (q, k, v)]
    out, _ = scaled_dot_product_attention(*leaves, mask)
    (out * g).sum().backward()
    ref = [t.double().requires_grad_() for t in (q, k, v)]
    scores = (ref[0] @ ref[1].transpose(-2, -1) / math.sqrt(8)).masked_fill(~mask, float("-inf"))
    ref_out = torch.softmax(scores, dim=-1) @ ref[2]
    (ref_out * g.double()).sum().backward()
    torch.testing.assert_close(out.double(), ref_out, atol=1e-5, rtol=1e-5)
    for got, want in zip(leaves, ref):
        torch.testing.assert_close(got.grad.double(), want.grad, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("cross", [False, True])
def test_gradcheck_multi_head_attention_float64(cross):
    torch.manual_seed(0)
    mha = MultiHeadAttention(d_model=6, n_heads=2, d_k=2, d_v=4, cross=cross).double()
    x = torch.randn(2, 3, 6, dtype=torch.float64, requires_grad=True)
    mem = torch.randn(2, 4, 6, dtype=torch.float64, requires_grad=True)
    mask = causal_mask(3) if not cross else torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]], dtype=torch.bool)[:, None, None]
    for nw in (False, True):
        if cross:
            fn = lambda x, mem: mha(x, mem, mask=mask, need_weights=nw)[0]  # noqa: E731, B023
            assert torch.autograd.gradcheck(fn, (x, mem))
        else:
            fn = lambda x: mha(x, mask=mask, need_weights=nw)[0]  # noqa: E731, B023
            assert torch.autograd.gradcheck(fn, (x,))


def per_head_reference(mha, x, memory, mask):
    """MultiHead = Concat(head_1..head_h) W^O, head_i = Attention(x W_i^Q, m W_i^K, m W_i^V), head by head."""
    h, dk, dv = mha.n_heads, mha.d_k, mha.d_v
    if mha.cross:
        wq, bq = mha.q_proj.weight, mha.q_proj.bias
        wk, wv = mha.kv_proj.weight.split([h * dk, h * dv])
        bk, bv = mha.kv_proj.bias.split([h * dk, h * dv])
        src = memory
    else:
        wq, wk, wv = mha.qkv_proj.weight.split([h * dk, h * dk, h * dv])
        bq, bk, bv = mha.qkv_proj.bias.split([h * dk, h * dk, h * dv])
        src = x
    heads = []
    for i in range(h):
        qi = x @ wq[i * dk:(i + 1) * dk].T + bq[i * dk:(i + 1) * dk]
        ki = src @ wk[i * dk:(i + 1) * dk].T + bk[i * dk:(i + 1) * dk]
        vi = src @ wv[i * dv:(i + 1) * dv].T + bv[i * dv:(i + 1) * dv]
        scores = qi @ ki.transpose(-1, -2) / math.sqrt(dk)
        if mask is not None:
            scores = scores.masked_fill(~mask[:, 0], float("-inf"))
        heads.append(torch.softmax(scores, -1) @ vi)
    return torch.cat(heads, -1) @ mha.out_proj.weight.T + mha.out_proj.bias


@pytest.mark.parametrize("cross", [False, True])
def test_multi_head_attention_equals_per_head_formula(cross):
    torch.manual_seed(2)
    mha = MultiHeadAttention(d_model=12, n_heads=3, d_k=5, d_v=2, cross=cross)  # d_v != d_k, H·d_k != D
    for p in mha.parameters():
        torch.nn.init.normal_(p, std=0.3)
    x, mem = torch.randn(2, 4, 12), torch.randn(2, 6, 12)
    mask = causal_mask(4) if not cross else padding_mask(torch.tensor([[5, 5, 5, 5, 0, 0], [5, 5, 5, 5, 5, 5]]), 0)
    out, w = mha(x, mem if cross else None, mask=mask, need_weights=True)
    assert out.shape == (2, 4, 12) and w.shape == (2, 3, 4, 6 if cross else 4)
    torch.testing.assert_close(out, per_head_reference(mha, x, mem, mask), atol=1e-5, rtol=1e-5)
    fused, _ = mha(x, mem if cross else None, mask=mask)
    torch.testing.assert_close(fused, out, atol=1e-5, rtol=1e-5)


def test_masks():
    assert causal_mask(3).shape == (1, 1, 3, 3)
    assert causal_mask(3)[0, 0].tolist() == [[True, False, False], [True, True, False], [True, True, True]]
    ids = torch.tensor([[4, 5, 0], [4, 0, 0]])
    pm = padding_mask(ids, pad_id=0)
    assert pm.shape == (2, 1, 1, 3) and pm.dtype == torch.bool
    assert pm[:, 0, 0].tolist() == [[True, True, False], [True, False, False]]


def test_kv_cache_grows_past_its_initial_capacity_and_keeps_every_entry():
    torch.manual_seed(3)
    cache = KVCache()
    ks, vs = [], []
    for t in [1, 5, 1, 12, 1, 20, 3]:  # crosses 16, 32 and 64 positions
        k, v = torch.randn(2, 3, t, 4), torch.randn(2, 3, t, 5)
        ks.append(k)
        vs.append(v)
        got_k, got_v = cache.append(k, v)
        assert torch.equal(got_k, torch.cat(ks, 2)) and torch.equal(got_v, torch.cat(vs, 2))
    assert cache.length == 43 and cache.k.shape[2] >= 43
    k_all, v_all = cache.get()
    assert torch.equal(k_all, torch.cat(ks, 2)) and torch.equal(v_all, torch.cat(vs, 2))
    index = torch.tensor([1, 1, 0])
    cache.reorder(index)
    k_all, v_all = cache.get()
    assert torch.equal(k_all, torch.cat(ks, 2)[index]) and torch.equal(v_all, torch.cat(vs, 2)[index])
    k, v = torch.randn(3, 3, 1, 4), torch.randn(3, 3, 1, 5)
    assert torch.equal(cache.append(k, v)[0][:, :, -1:], k)


def test_self_attention_with_cache_equals_without():
    torch.manual_seed(4)
    mha = MultiHeadAttention(d_model=8, n_heads=2).eval()
    x = torch.randn(1, 7, 8)
    full, _ = mha(x, mask=causal_mask(7))
    cache, steps = KVCache(), []
    for i in range(7):
        steps.append(mha(x[:, i:i + 1], cache=cache)[0])
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-6, rtol=1e-5)


def test_cross_attention_cache_is_computed_once():
    torch.manual_seed(5)
    mha = MultiHeadAttention(d_model=8, n_heads=2, cross=True)
    x, mem = torch.randn(2, 3, 8), torch.randn(2, 4, 8)
    cache = KVCache()
    mha.precompute_kv(mem, cache)
    assert cache.static and cache.length == 4
    torch.testing.assert_close(mha(x, cache=cache)[0], mha(x, mem)[0])
    with pytest.raises(ValueError, match="needs the encoder memory"):
        mha(x)


def test_bad_masks_and_sizes_raise_clear_errors():
    q = k = v = torch.randn(2, 2, 3, 4)
    with pytest.raises(ValueError, match="must be boolean"):
        scaled_dot_product_attention(q, k, v, torch.ones(2, 1, 1, 3))
    with pytest.raises(ValueError, match=r"shape \(2, 1, 1, 4\) does not fit"):
        scaled_dot_product_attention(q, k, v, torch.ones(2, 1, 1, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="does not fit"):
        scaled_dot_product_attention(q, k, v, torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="does not fit"):
        scaled_dot_product_attention(q, k, v, torch.ones(3, 1, 1, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="d_model=10 is not divisible by n_heads=3"):
        MultiHeadAttention(d_model=10, n_heads=3)
    mha = MultiHeadAttention(d_model=10, n_heads=3, d_k=4, d_v=2)  # explicit sizes: fine
    assert mha(torch.randn(1, 2, 10))[0].shape == (1, 2, 10)


def test_kv_cache_reorders_every_step_like_a_fresh_gather():
    """Beam search reorders every layer's cache every step: the reorder gathers into a kept second buffer.
    Against plain tensors gathered with fancy indexing, across growths, repeats and batch changes."""
    gen = torch.Generator().manual_seed(6)
    cache, ref_k, ref_v = KVCache(), torch.empty(4, 2, 0, 3), torch.empty(4, 2, 0, 5)
    for step, rows in enumerate([4, 4, 4, 8, 8, 8, 8, 3, 3] + [3] * 20):  # grows past 16 and 32 positions
        if ref_k.shape[0] != rows or step % 2:  # batch changes, and every other step a same-size shuffle
            index = torch.randint(0, ref_k.shape[0], (rows,), generator=gen)
            cache.reorder(index)
            ref_k, ref_v = ref_k[index], ref_v[index]
        k, v = torch.randn(rows, 2, 1, 3, generator=gen), torch.randn(rows, 2, 1, 5, generator=gen)
        got_k, got_v = cache.append(k, v)
        ref_k, ref_v = torch.cat([ref_k, k], 2), torch.cat([ref_v, v], 2)
        assert torch.equal(got_k, ref_k) and torch.equal(got_v, ref_v), f"step {step}"


@pytest.mark.parametrize("need_weights", [False, True])
def test_cross_attention_groups_the_beams_of_a_source(need_weights):
    """W hypotheses per source against a cache of the B sources = the same queries against the cache copied
    to B·W rows (what a cache reordered by hypothesis holds); a row count that is no multiple is refused."""
    torch.manual_seed(7)
    mha = MultiHeadAttention(d_model=8, n_heads=2, cross=True).eval()
    b, w, s = 3, 4, 5
    mem = torch.randn(b, s, 8)
    mask = padding_mask(torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]]), pad_id=0)
    x = torch.randn(b * w, 1, 8)
    per_source, per_row = KVCache(), KVCache()
    mha.precompute_kv(mem, per_source)
    mha.precompute_kv(mem.repeat_interleave(w, 0), per_row)
    out, weights = mha(x, mask=mask, cache=per_source, need_weights=need_weights)
    ref, ref_weights = mha(x, mask=mask.repeat_interleave(w, 0), cache=per_row, need_weights=need_weights)
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=0)
    if need_weights:
        torch.testing.assert_close(weights, ref_weights, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="W hypotheses per source"):
        mha(torch.randn(b * w + 1, 1, 8), mask=mask, cache=per_source)
