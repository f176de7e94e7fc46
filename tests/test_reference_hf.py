"""Independent reference #2: Hugging Face ``MarianMTModel`` (random init from a ``MarianConfig``, no download)
with our weights copied in.

Marian is the paper's architecture as shipped by transformers: Post-LN, √d-scaled shared embeddings, sinusoidal
positions, a tied output layer (plus ``final_logits_bias``, left at zero). Differences handled here:

* its sinusoidal table puts all sines in the first half and all cosines in the second; ours interleaves them
  (the paper's layout). We overwrite its ``embed_positions.weight`` with our ``sinusoidal_encoding`` table
  — our formula is what ``test_positional`` checks against the paper.
* it has separate q/k/v projections: we copy slices of our fused ``qkv_proj`` / ``kv_proj``.
"""

import pytest
import torch

from rosetta import ModelConfig, Transformer
from rosetta.nn.positional import sinusoidal_encoding

transformers = pytest.importorskip("transformers")

V, D, H, FF, MAX_POS = 31, 16, 4, 24, 64
PAD, BOS, EOS = 0, 1, 2


def our_model(seed=0):
    torch.manual_seed(seed)
    cfg = ModelConfig(src_vocab_size=V, tgt_vocab_size=V, d_model=D, n_heads=H, d_ff=FF, n_encoder_layers=2,
                      n_decoder_layers=2, dropout=0.0, pad_id=PAD, bos_id=BOS, eos_id=EOS,
                      share_embeddings=True, tie_output=True)
    model = Transformer(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0.0, 0.1)
            elif "norm" in name:
                p.normal_(1.0, 0.2)
    return model


def split_linear(weight, bias, sizes):
    return list(zip(weight.split(sizes), bias.split(sizes)))


def copy_linear(theirs, weight, bias):
    theirs.weight.copy_(weight)
    theirs.bias.copy_(bias)


def copy_attention(ours, theirs):
    if ours.cross:
        copy_linear(theirs.q_proj, ours.q_proj.weight, ours.q_proj.bias)
        (kw, kb), (vw, vb) = split_linear(ours.kv_proj.weight, ours.kv_proj.bias, [D, D])
    else:
        (qw, qb), (kw, kb), (vw, vb) = split_linear(ours.qkv_proj.weight, ours.qkv_proj.bias, [D, D, D])
        copy_linear(theirs.q_proj, qw, qb)
    copy_linear(theirs.k_proj, kw, kb)
    copy_linear(theirs.v_proj, vw, vb)
    copy_linear(theirs.out_proj, ours.out_proj.weight, ours.out_proj.bias)


def copy_norm(ours, theirs):
    copy_linear(theirs, ours.weight, ours.bias)


def copy_ff(ours, layer):
    copy_linear(layer.fc1, ours.w1.weight, ours.w1.bias)
    copy_linear(layer.fc2, ours.w2.weight, ours.w2.bias)


def marian_from(model):
    config = transformers.MarianConfig(
        vocab_size=V, decoder_vocab_size=V, d_model=D, encoder_layers=2, decoder_layers=2,
        encoder_attention_heads=H, decoder_attention_heads=H, encoder_ffn_dim=FF, decoder_ffn_dim=FF,
        activation_function="relu", dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
        max_position_embeddings=MAX_POS, scale_embedding=True, pad_token_id=PAD, bos_token_id=BOS,
        eos_token_id=EOS, forced_eos_token_id=EOS, decoder_start_token_id=BOS,
        share_encoder_decoder_embeddings=True, tie_word_embeddings=True,
    )
    hf = transformers.MarianMTModel(config).eval()
    m = hf.model
    with torch.no_grad():
        m.shared.weight.copy_(model.src_embed.token.weight)
        for emb in (m.encoder.embed_tokens, m.decoder.embed_tokens, hf.lm_head):
            if emb.weight is not m.shared.weight:  # tied in transformers 5.x; copy in case a version does not tie
                emb.weight.copy_(model.src_embed.token.weight)
        hf.final_logits_bias.zero_()
        for positions in (m.encoder.embed_positions, m.decoder.embed_positions):
            positions.weight.copy_(sinusoidal_encoding(MAX_POS, D))  # our interleaved sin/cos layout
        for ours, theirs in zip(model.encoder.layers, m.encoder.layers):
            copy_attention(ours.self_attn, theirs.self_attn)
            copy_norm(ours.self_attn_norm, theirs.self_attn_layer_norm)
            copy_ff(ours.feed_forward, theirs)
            copy_norm(ours.feed_forward_norm, theirs.final_layer_norm)
        for ours, theirs in zip(model.decoder.layers, m.decoder.layers):
            copy_attention(ours.self_attn, theirs.self_attn)
            copy_norm(ours.self_attn_norm, theirs.self_attn_layer_norm)
            copy_attention(ours.cross_attn, theirs.encoder_attn)
            copy_norm(ours.cross_attn_norm, theirs.encoder_attn_layer_norm)
            copy_ff(ours.feed_forward, theirs)
            copy_norm(ours.feed_forward_norm, theirs.final_layer_norm)
    return hf


def padded_batch(seed=0):
    gen = torch.Generator().manual_seed(seed)
    src = torch.randint(3, V, (3, 9), generator=gen)
    tgt = torch.randint(3, V, (3, 7), generator=gen)
    tgt[:, 0] = BOS
    src[0, 5:] = PAD
    src[1, 8:] = PAD
    tgt[0, 4:] = PAD
    return src, tgt


@pytest.fixture(scope="module")
def pair():
    model = our_model()
    return model, marian_from(model)


def test_logits_match_marian(pair):
    model, hf = pair
    src, tgt = padded_batch()
    with torch.no_grad():
        out = hf(input_ids=src, attention_mask=(src != PAD).long(), decoder_input_ids=tgt,
                 decoder_attention_mask=(tgt != PAD).long())
        memory, _, _ = model.encode(src)
        ours = model(src, tgt)
    assert (memory - out.encoder_last_hidden_state).abs().max() < 1e-4  # padded positions included
    diff = (ours - out.logits).abs().max().item()
    assert diff < 1e-4, f"max abs diff {diff:.2e}"
    assert ours.abs().max() > 0.1


def test_comparison_is_sensitive_to_the_position_layout(pair):
    """With Marian's own (sines-first) table the logits must differ: the match above is not vacuous."""
    model, _ = pair
    hf = marian_from(model)
    with torch.no_grad():
        for positions in (hf.model.encoder.embed_positions, hf.model.decoder.embed_positions):
            positions.weight.copy_(positions.create_weight())
        src, tgt = padded_batch()
        theirs = hf(input_ids=src, attention_mask=(src != PAD).long(), decoder_input_ids=tgt).logits
        assert (model(src, tgt) - theirs).abs().max() > 1e-2


def test_incremental_decoding_matches_marian_cache(pair):
    """Our decode_step with its KV cache against Marian's past_key_values, token by token."""
    model, hf = pair
    src, tgt = padded_batch(seed=1)
    tgt = tgt.clamp(min=BOS)  # no padding in the prefix: both sides decode every position
    with torch.no_grad():
        enc = hf.get_encoder()(input_ids=src, attention_mask=(src != PAD).long())
        memory, memory_mask, _ = model.encode(src)
        state = model.start_decoding(memory, memory_mask)
        past = None
        for i in range(tgt.shape[1]):
            theirs = hf(encoder_outputs=enc, attention_mask=(src != PAD).long(), decoder_input_ids=tgt[:, i:i + 1],
                        past_key_values=past, use_cache=True)
            past = theirs.past_key_values
            ours = model.decode_step(tgt[:, i:i + 1], state)
            assert (ours - theirs.logits).abs().max() < 1e-4, f"step {i}"


def test_marian_own_positions_differ_only_by_layout():
    """Marian's own table is ours with columns regrouped (sines first): same numbers, other layout."""
    hf_table = transformers.models.marian.modeling_marian.MarianSinusoidalPositionalEmbedding(MAX_POS, D)
    theirs = hf_table.create_weight()
    ours = sinusoidal_encoding(MAX_POS, D)
    regrouped = torch.cat([ours[:, 0::2], ours[:, 1::2]], dim=1)
    torch.testing.assert_close(theirs, regrouped, atol=1e-5, rtol=0)
    assert not torch.allclose(theirs, ours, atol=1e-2)
