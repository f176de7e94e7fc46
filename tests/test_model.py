"""The whole encoder–decoder: causality, permutation equivariance, incremental decoding equal to the full
forward for every variant, beam reordering, weight sharing, attention maps, and input errors."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rosetta import ModelConfig, Transformer
from rosetta.nn.attention import causal_mask

V = 23
FAST = settings(max_examples=20, deadline=None)


def make_model(seed=0, **overrides):
    torch.manual_seed(seed)
    base = dict(src_vocab_size=V, tgt_vocab_size=V, d_model=16, n_heads=2, d_ff=32,
                n_encoder_layers=2, n_decoder_layers=2, dropout=0.0, max_len=64)
    return Transformer(ModelConfig(**{**base, **overrides})).eval()


MODEL = make_model()


def batch(seed=0, b=3, s=6, t=5):
    """src with trailing padding on some rows (pad id 0) and tgt_in starting with BOS (1)."""
    gen = torch.Generator().manual_seed(seed)
    src = torch.randint(3, V, (b, s), generator=gen)
    tgt = torch.randint(3, V, (b, t), generator=gen)
    tgt[:, 0] = 1
    src[0, s - 2:] = 0
    if b > 2:
        src[2, s - 1:] = 0
    return src, tgt


@FAST
@given(st.integers(0, 4), st.integers(0, 2**16))
def test_logits_up_to_t_ignore_tokens_after_t(t, seed):
    src, tgt = batch(seed)
    gen = torch.Generator().manual_seed(seed + 1)
    changed = tgt.clone()
    changed[:, t + 1:] = torch.randint(3, V, (3, tgt.shape[1] - t - 1), generator=gen)
    with torch.no_grad():
        a, b = MODEL(src, tgt), MODEL(src, changed)
    torch.testing.assert_close(a[:, : t + 1], b[:, : t + 1], atol=1e-5, rtol=1e-5)


def test_changing_token_t_does_change_logits_at_t():
    """The causality test above must not pass vacuously: the present token matters."""
    src, tgt = batch()
    changed = tgt.clone()
    changed[:, 2] = (changed[:, 2] + 1 - 3) % (V - 3) + 3
    with torch.no_grad():
        diff = (MODEL(src, tgt) - MODEL(src, changed)).abs().amax(-1)
    assert torch.all(diff[:, :2] < 1e-5) and torch.all(diff[:, 2:] > 1e-4)


NO_POS = make_model(positional="none")


@FAST
@given(st.permutations(range(6)), st.integers(0, 2**16))
def test_encoder_without_positions_is_permutation_equivariant(perm, seed):
    src, _ = batch(seed)
    perm = torch.tensor(perm)
    with torch.no_grad():
        memory, mask, _ = NO_POS.encode(src)
        memory_p, mask_p, _ = NO_POS.encode(src[:, perm])
    torch.testing.assert_close(memory_p, memory[:, perm], atol=1e-5, rtol=1e-5)
    assert torch.equal(mask_p, mask[..., perm])


def test_encoder_with_positions_is_not_permutation_equivariant():
    src = torch.tensor([[3, 4, 5, 6]])
    with torch.no_grad():
        memory = MODEL.encode(src)[0]
        swapped = MODEL.encode(src[:, [1, 0, 2, 3]])[0]
    assert (swapped - memory[:, [1, 0, 2, 3]]).abs().max() > 1e-3


def test_source_padding_does_not_change_logits():
    src, tgt = batch(b=1)
    src = src[:, :4]
    padded = torch.cat([src, torch.zeros(1, 5, dtype=torch.long)], 1)
    with torch.no_grad():
        torch.testing.assert_close(MODEL(padded, tgt), MODEL(src, tgt), atol=1e-5, rtol=1e-5)


def incremental_logits(model, src, tgt, chunks):
    memory, memory_mask, _ = model.encode(src)
    state = model.start_decoding(memory, memory_mask)
    out, start = [], 0
    for size in chunks:
        out.append(model.decode_step(tgt[:, start:start + size], state))
        start += size
    assert start == tgt.shape[1] and state.offset == start
    return torch.cat(out, 1)


VARIANTS = {
    "post-ln": {},
    "pre-ln": dict(norm_first=True),
    "rmsnorm": dict(norm="rmsnorm", norm_first=True),
    "swiglu": dict(activation="swiglu"),
    "gelu": dict(activation="gelu"),
    "rope": dict(positional="rope"),
    "learned": dict(positional="learned"),
    "dk-ne-dv": dict(d_k=6, d_v=4),
    "untied-separate": dict(tie_output=False, share_embeddings=False, tgt_vocab_size=31),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("chunks", [[1] * 7, [3, 1, 2, 1]], ids=["one-token-steps", "several-tokens-per-step"])
def test_cached_decoding_equals_full_forward(variant, chunks):
    model = make_model(seed=1, **VARIANTS[variant])
    src, tgt = batch(seed=2, t=7)
    with torch.no_grad():
        full = model(src, tgt)
        steps = incremental_logits(model, src, tgt, chunks)
    torch.testing.assert_close(steps, full, atol=1e-5, rtol=1e-5)


def test_cache_grows_past_its_initial_capacity():
    model = make_model(seed=3, positional="rope")
    src, tgt = batch(seed=3, t=40)  # the self-attention cache starts with 16 slots
    with torch.no_grad():
        full = model(src, tgt)
        steps = incremental_logits(model, src, tgt, [1] * 20 + [17, 3])
    torch.testing.assert_close(steps, full, atol=1e-5, rtol=1e-5)


def test_decoder_state_reorder_equals_decoding_the_reordered_batch():
    model = make_model(seed=4)
    src, tgt = batch(seed=4, t=6)
    index = torch.tensor([2, 0, 0, 1])  # beam search: hypotheses duplicated, dropped, permuted
    with torch.no_grad():
        memory, memory_mask, _ = model.encode(src)
        state = model.start_decoding(memory, memory_mask)
        for i in range(3):
            model.decode_step(tgt[:, i:i + 1], state)
        state.reorder(index)
        after = torch.cat([model.decode_step(tgt[index, i:i + 1], state) for i in range(3, 6)], 1)
        expected = model(src[index], tgt[index])[:, 3:]
    torch.testing.assert_close(after, expected, atol=1e-5, rtol=1e-5)


def test_d_v_different_from_d_k_forward_and_backward():
    model = make_model(seed=5, d_model=12, n_heads=3, d_k=5, d_v=7).train()
    src, tgt = batch(seed=5)
    logits = model(src, tgt)
    assert logits.shape == (3, 5, V)
    assert model.encoder.layers[0].self_attn.qkv_proj.weight.shape == (3 * 5 + 3 * 5 + 3 * 7, 12)
    assert model.decoder.layers[0].cross_attn.out_proj.weight.shape == (12, 3 * 7)
    torch.nn.functional.cross_entropy(logits.reshape(-1, V), tgt.reshape(-1)).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_share_embeddings_and_tie_output_share_one_tensor():
    shared = make_model(share_embeddings=True, tie_output=True)
    assert shared.src_embed.token.weight is shared.tgt_embed.token.weight is shared.output.weight
    tied = make_model(share_embeddings=False, tie_output=True)
    assert tied.output.weight is tied.tgt_embed.token.weight
    assert tied.src_embed.token.weight is not tied.tgt_embed.token.weight
    separate = make_model(share_embeddings=False, tie_output=False)
    assert separate.output.weight is not separate.tgt_embed.token.weight
    d = 16
    assert tied.num_parameters() - shared.num_parameters() == V * d
    assert separate.num_parameters() - tied.num_parameters() == V * d
    # sharing survives training: one gradient step moves all views together
    opt = torch.optim.SGD(shared.parameters(), lr=0.1)
    src, tgt = batch()
    shared.train()(src, tgt).sum().backward()
    opt.step()
    assert shared.src_embed.token.weight.data_ptr() == shared.output.weight.data_ptr()


def test_return_attention_shapes():
    model = make_model(n_encoder_layers=3, n_decoder_layers=2)
    src, tgt = batch(s=6, t=5)
    with torch.no_grad():
        logits, attention = model(src, tgt, return_attention=True)
        plain = model(src, tgt)
    torch.testing.assert_close(logits, plain, atol=1e-5, rtol=1e-5)
    assert set(attention) == {"encoder", "decoder", "cross"}
    assert len(attention["encoder"]) == 3 and len(attention["decoder"]) == 2 and len(attention["cross"]) == 2
    assert all(w.shape == (3, 2, 6, 6) for w in attention["encoder"])
    assert all(w.shape == (3, 2, 5, 5) for w in attention["decoder"])
    assert all(w.shape == (3, 2, 5, 6) for w in attention["cross"])
    # padding and causality show up in the maps
    assert torch.all(attention["cross"][0][0, :, :, 4:] == 0)  # row 0 has 2 padded source positions
    assert torch.all(attention["decoder"][1][..., causal_mask(5)[0, 0] == 0] == 0)


def test_explicit_masks_equal_default_masks():
    src, tgt = batch()
    with torch.no_grad():
        default = MODEL(src, tgt)
        explicit = MODEL(src, tgt, src_mask=src != 0, tgt_mask=causal_mask(5).expand(3, 1, 5, 5))
    torch.testing.assert_close(explicit, default)


def test_bad_inputs_raise_clear_errors():
    src, tgt = batch()
    with pytest.raises(ValueError, match=r"token id out of the vocabulary: ids span \[-1"):
        MODEL(torch.full((1, 3), -1), tgt[:1])
    with pytest.raises(ValueError, match=rf"token id out of the vocabulary.*{V}\]"):
        MODEL(src, torch.full((3, 5), V))
    with pytest.raises(ValueError, match="must be boolean"):
        MODEL(src, tgt, src_mask=(src != 0).float())
    with pytest.raises(ValueError, match=r"mask of shape \(3, 1, 1, 5\) does not fit .* 6\)"):  # S is 6
        MODEL(src, tgt, src_mask=torch.ones(3, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"mask of shape \(6,\) does not fit"):
        MODEL(src, tgt, src_mask=torch.ones(6, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"mask of shape \(5, 5\) does not fit"):
        MODEL(src, tgt, tgt_mask=torch.ones(5, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"mask of shape \(1, 1, 4, 4\) does not fit"):
        MODEL(src, tgt, tgt_mask=causal_mask(4))
    with pytest.raises(ValueError, match=r"mask of shape \(3, 5, 5, 5\) does not fit"):  # 5 heads, model has 2
        MODEL(src, tgt, tgt_mask=torch.ones(3, 5, 5, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="must be boolean"):
        MODEL(src, tgt, tgt_mask=causal_mask(5).long())
    learned = make_model(positional="learned", max_len=8)
    learned(src, tgt[:, :4])
    with pytest.raises(ValueError, match=r"longer than the learned position table \(max_len=8\)"):
        learned(torch.randint(3, V, (1, 9)), tgt[:1])


@pytest.mark.parametrize("scale_embeddings, expected_std", [(True, 64**-0.5), (False, 1.0)])
def test_token_embeddings_enter_with_unit_variance(scale_embeddings, expected_std):
    """init_weights: N(0, d^-½) token vectors times the √d scale, or N(0, 1) vectors when there is no scale (T5);
    either way a token enters the residual stream with unit variance. The relative-bias table stays N(0, d^-½)."""
    torch.manual_seed(0)
    config = ModelConfig(src_vocab_size=3000, tgt_vocab_size=3000, d_model=64, n_heads=4, d_ff=128,
                         n_encoder_layers=1, n_decoder_layers=1, scale_embeddings=scale_embeddings,
                         positional="relative", share_embeddings=True)
    model = Transformer(config)
    token = model.src_embed.token.weight
    assert token.std().item() == pytest.approx(expected_std, rel=0.02)
    vectors = model.src_embed.token(torch.arange(3000)) * model.src_embed.scale
    assert vectors.pow(2).mean().item() == pytest.approx(1.0, rel=0.03)
    tables = [m.weight for name, m in model.named_modules() if isinstance(m, torch.nn.Embedding) and m is not
              model.src_embed.token and m is not model.tgt_embed.token]
    assert tables and all(t.std().item() < 0.3 for t in tables)  # bias tables: N(0, 64^-½) = 0.125
