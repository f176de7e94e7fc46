"""Building blocks against hand-written formulas: LayerNorm/RMSNorm in float64, the feed-forward variants,
embeddings (√d scale, positions, id checks) and the residual arrangement of Post-LN and Pre-LN layers."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rosetta import ModelConfig
from rosetta.nn.attention import causal_mask
from rosetta.nn.blocks import DecoderLayer, Embeddings, EncoderLayer, FeedForward, RMSNorm, make_norm
from rosetta.nn.positional import sinusoidal_encoding

FAST = settings(max_examples=20, deadline=None)


def config(**kw):
    base = dict(src_vocab_size=11, tgt_vocab_size=11, d_model=8, n_heads=2, d_ff=12,
                n_encoder_layers=1, n_decoder_layers=1, dropout=0.0)
    return ModelConfig(**{**base, **kw})


def randomize(module, std=0.5):
    torch.manual_seed(0)
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0, std)
    return module


@FAST
@given(st.integers(1, 16), st.integers(0, 2**16), st.floats(1e-6, 1e-2))
def test_rmsnorm_matches_float64_formula(d, seed, eps):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(3, d, generator=gen) * 3
    norm = RMSNorm(d, eps)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(d, generator=gen))
    expected = []
    for row in x.double().tolist():
        rms = math.sqrt(sum(v * v for v in row) / d + eps)
        expected.append([v / rms * g for v, g in zip(row, norm.weight.double().tolist())])
    torch.testing.assert_close(norm(x).double(), torch.tensor(expected, dtype=torch.float64), atol=1e-5, rtol=1e-5)


@FAST
@given(st.integers(2, 16), st.integers(0, 2**16))
def test_layernorm_matches_float64_formula(d, seed):
    gen = torch.Generator().manual_seed(seed)
    cfg = config(d_model=d, n_heads=1, norm="layernorm", norm_eps=1e-5)
    norm = make_norm(cfg)
    assert isinstance(norm, torch.nn.LayerNorm) and norm.eps == 1e-5
    with torch.no_grad():
        norm.weight.copy_(torch.randn(d, generator=gen))
        norm.bias.copy_(torch.randn(d, generator=gen))
    x = torch.randn(4, d, generator=gen) * 2 + 1
    expected = []
    for row in x.double().tolist():
        mu = sum(row) / d
        var = sum((v - mu) ** 2 for v in row) / d  # biased variance, as in the LayerNorm paper
        expected.append([(v - mu) / math.sqrt(var + 1e-5) * g + b
                         for v, g, b in zip(row, norm.weight.tolist(), norm.bias.tolist())])
    torch.testing.assert_close(norm(x).double(), torch.tensor(expected, dtype=torch.float64), atol=1e-5, rtol=1e-5)


def test_make_norm_picks_rmsnorm():
    norm = make_norm(config(norm="rmsnorm", norm_eps=1e-6))
    assert isinstance(norm, RMSNorm) and norm.eps == 1e-6


def gelu_erf(v):
    return 0.5 * v * (1 + math.erf(v / math.sqrt(2)))


def gelu_tanh(v):
    return 0.5 * v * (1 + math.tanh(math.sqrt(2 / math.pi) * (v + 0.044715 * v**3)))


def silu(v):
    return v / (1 + math.exp(-v))


@pytest.mark.parametrize("activation", ["relu", "gelu", "gelu_tanh", "swiglu"])
@pytest.mark.parametrize("bias", [True, False])
def test_feed_forward_matches_manual_computation(activation, bias):
    cfg = config(activation=activation, bias=bias)
    ff = randomize(FeedForward(cfg))
    assert (ff.w3 is not None) == (activation == "swiglu")
    x = torch.randn(2, 3, 8)

    def lin(layer, vec):
        w = layer.weight.double().tolist()
        b = layer.bias.double().tolist() if layer.bias is not None else [0.0] * len(w)
        return [sum(wi * xi for wi, xi in zip(row, vec)) + bj for row, bj in zip(w, b)]

    act = {"relu": lambda v: max(v, 0.0), "gelu": gelu_erf, "gelu_tanh": gelu_tanh}
    expected = []
    for vec in x.double().reshape(-1, 8).tolist():
        h = lin(ff.w1, vec)
        if activation == "swiglu":
            h = [silu(a) * b for a, b in zip(h, lin(ff.w3, vec))]
        else:
            h = [act[activation](a) for a in h]
        expected.append(lin(ff.w2, h))
    got = ff(x).double().reshape(-1, 8)
    torch.testing.assert_close(got, torch.tensor(expected, dtype=torch.float64), atol=1e-5, rtol=1e-5)


def test_embeddings_scale_and_add_sinusoidal_positions():
    cfg = config(d_model=8)
    emb = Embeddings(11, cfg).eval()
    ids = torch.tensor([[3, 4, 5], [10, 0, 1]])
    expected = emb.token.weight[ids] * math.sqrt(8) + sinusoidal_encoding(3, 8)
    torch.testing.assert_close(emb(ids), expected)
    expected_off = emb.token.weight[ids] * math.sqrt(8) + sinusoidal_encoding(7, 8)[4:]
    torch.testing.assert_close(emb(ids, offset=4), expected_off)


@pytest.mark.parametrize("positional", ["rope", "none"])
def test_rope_and_none_add_nothing_to_embeddings(positional):
    emb = Embeddings(11, config(positional=positional, scale_embeddings=False))
    ids = torch.tensor([[3, 4, 5]])
    assert emb.position is None
    torch.testing.assert_close(emb(ids), emb.token.weight[ids])


def test_learned_positions_are_added():
    emb = Embeddings(11, config(positional="learned", max_len=5))
    ids = torch.tensor([[1, 2]])
    torch.testing.assert_close(emb(ids, offset=2), emb.token.weight[ids] * math.sqrt(8) + emb.position.weight[2:4])


def test_check_ids_rejects_out_of_vocabulary_and_non_integer():
    emb = Embeddings(11, config())
    emb.check_ids(torch.tensor([[0, 10]]))
    with pytest.raises(ValueError, match=r"token id out of the vocabulary.*\[-1, 3\].*11 entries"):
        emb.check_ids(torch.tensor([[-1, 3]]))
    with pytest.raises(ValueError, match=r"token id out of the vocabulary.*\[0, 11\]"):
        emb.check_ids(torch.tensor([[0, 11]]))
    with pytest.raises(ValueError, match="must be an integer tensor"):
        emb.check_ids(torch.tensor([[0.0, 1.0]]))


@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_layer_residual_arrangement(norm_first):
    """Post-LN: x = Norm(x + Sublayer(x)); Pre-LN: x = x + Sublayer(Norm(x)) — composed by hand from the parts."""
    layer = randomize(DecoderLayer(config(norm_first=norm_first)), std=0.3).eval()
    x, mem = torch.randn(2, 4, 8), torch.randn(2, 5, 8)
    self_mask, mem_mask = causal_mask(4), torch.ones(2, 1, 1, 5, dtype=torch.bool)
    subs = [
        (layer.self_attn_norm, lambda h: layer.self_attn(h, mask=self_mask)[0]),
        (layer.cross_attn_norm, lambda h: layer.cross_attn(h, mem, mask=mem_mask)[0]),
        (layer.feed_forward_norm, layer.feed_forward),
    ]
    y = x
    for norm, f in subs:
        y = y + f(norm(y)) if norm_first else norm(y + f(y))
    got, attention = layer(x, self_mask, mem, mem_mask, need_weights=True)
    torch.testing.assert_close(got, y)
    assert attention["self"].shape == (2, 2, 4, 4) and attention["cross"].shape == (2, 2, 4, 5)


def test_encoder_layer_has_no_cross_attention():
    layer = EncoderLayer(config())
    assert layer.cross_attn is None and layer.cross_attn_norm is None
    out, attention = layer(torch.randn(1, 3, 8))
    assert out.shape == (1, 3, 8) and attention == {}


def test_dropout_keeps_each_element_with_probability_one_minus_p_and_is_unbiased():
    """rosetta's Dropout (16-bit halves of 32-bit draws as masks) against its definition: P(keep) = 1 − p
    within 5σ, kept elements scaled by 1/(1 − p'), neighbours (halves of one draw) uncorrelated, E = x."""
    from rosetta.nn.blocks import Dropout

    torch.manual_seed(0)
    n, p = 400_000, 0.1
    drop = Dropout(p).train()
    out = drop(torch.ones(n))
    kept = out != 0
    sigma = (p * (1 - p) / n) ** 0.5
    assert abs(float(kept.float().mean()) - (1 - p)) < 5 * sigma
    p_eff = round(p * 65536) / 65536
    assert torch.allclose(out[kept], torch.full_like(out[kept], 1 / (1 - p_eff)))
    a, b = kept[0::2].float(), kept[1::2].float()  # the two halves of each 32-bit draw
    corr = float(((a - a.mean()) * (b - b.mean())).mean() / (a.std() * b.std()))
    assert abs(corr) < 5 / (n / 2) ** 0.5
    x = torch.randn(64, 33)  # odd element count: the last draw's second half is unused
    means = torch.stack([drop(x) for _ in range(3000)]).mean(0)
    torch.testing.assert_close(means, x, atol=0.05, rtol=0)


def test_dropout_gradient_is_the_mask_and_eval_or_p0_is_the_identity():
    from rosetta.nn.blocks import Dropout

    torch.manual_seed(1)
    x = torch.randn(5, 7, requires_grad=True)
    out = Dropout(0.3).train()(x)
    out.sum().backward()
    torch.testing.assert_close(x.grad, out.detach() / x.detach(), atol=1e-5, rtol=1e-5)
    y = torch.randn(4, 4)
    assert Dropout(0.3).eval()(y) is y and Dropout(0.0).train()(y) is y
    assert not torch.any(Dropout(1.0).train()(y))
    with pytest.raises(ValueError, match=r"dropout probability must be in \[0, 1\]"):
        Dropout(1.5)
