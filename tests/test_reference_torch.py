"""Independent reference #1: torch.nn.Transformer with our weights copied in.

nn.Transformer has no embeddings or output layer, so it is fed our ``src_embed(src)`` / ``tgt_embed(tgt)``
and its decoder output goes through our ``output`` projection. Post-LN layers have no final norm in our model,
so ``ref.encoder.norm`` / ``ref.decoder.norm`` are set to None; Pre-LN models keep them (our ``final_norm``).

The main comparison runs the reference in ``.train()`` mode with dropout 0, where PyTorch takes the plain
path and every position, padded ones included, must agree. A second test runs it in ``.eval()`` (the fast
path may zero padded positions) and compares the non-padded positions only.
"""

import pytest
import torch
from torch import nn

from rosetta import ModelConfig, Transformer
from rosetta.models.transformer import padding_mask

V, D, H, FF = 29, 16, 4, 40
PAD = 0

pytestmark = [
    pytest.mark.filterwarnings("ignore:enable_nested_tensor is True:UserWarning"),
    pytest.mark.filterwarnings("ignore:The PyTorch API of nested tensors:UserWarning"),
]


def our_model(norm_first=False, activation="relu", seed=0):
    torch.manual_seed(seed)
    cfg = ModelConfig(src_vocab_size=V, tgt_vocab_size=V, d_model=D, n_heads=H, d_ff=FF, n_encoder_layers=2,
                      n_decoder_layers=3, dropout=0.0, pad_id=PAD, norm_first=norm_first, activation=activation)
    model = Transformer(cfg).eval()
    with torch.no_grad():  # biases are zero-initialised: make them non-trivial so the copy is really checked
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0.0, 0.1)
            elif "norm" in name:  # LayerNorm gains near 1, so positions stay distinguishable
                p.normal_(1.0, 0.2)
    return model


def copy_attention(ours, theirs):
    if ours.cross:
        in_w = torch.cat([ours.q_proj.weight, ours.kv_proj.weight])  # [W_q; W_k; W_v]
        in_b = torch.cat([ours.q_proj.bias, ours.kv_proj.bias])
    else:
        in_w, in_b = ours.qkv_proj.weight, ours.qkv_proj.bias
    theirs.in_proj_weight.copy_(in_w)
    theirs.in_proj_bias.copy_(in_b)
    theirs.out_proj.weight.copy_(ours.out_proj.weight)
    theirs.out_proj.bias.copy_(ours.out_proj.bias)


def copy_norm(ours, theirs):
    theirs.weight.copy_(ours.weight)
    theirs.bias.copy_(ours.bias)


def copy_ff(ours, theirs):
    theirs.linear1.weight.copy_(ours.w1.weight)
    theirs.linear1.bias.copy_(ours.w1.bias)
    theirs.linear2.weight.copy_(ours.w2.weight)
    theirs.linear2.bias.copy_(ours.w2.bias)


def reference_from(model):
    cfg = model.config
    ref = nn.Transformer(d_model=D, nhead=H, num_encoder_layers=cfg.n_encoder_layers,
                         num_decoder_layers=cfg.n_decoder_layers, dim_feedforward=FF, dropout=0.0,
                         activation=cfg.activation, layer_norm_eps=cfg.norm_eps, batch_first=True,
                         norm_first=cfg.norm_first)
    with torch.no_grad():
        for ours, theirs in zip(model.encoder.layers, ref.encoder.layers):
            copy_attention(ours.self_attn, theirs.self_attn)
            copy_norm(ours.self_attn_norm, theirs.norm1)
            copy_ff(ours.feed_forward, theirs)
            copy_norm(ours.feed_forward_norm, theirs.norm2)
        for ours, theirs in zip(model.decoder.layers, ref.decoder.layers):
            copy_attention(ours.self_attn, theirs.self_attn)
            copy_norm(ours.self_attn_norm, theirs.norm1)
            copy_attention(ours.cross_attn, theirs.multihead_attn)
            copy_norm(ours.cross_attn_norm, theirs.norm2)
            copy_ff(ours.feed_forward, theirs)
            copy_norm(ours.feed_forward_norm, theirs.norm3)
        if cfg.norm_first:
            copy_norm(model.encoder.final_norm, ref.encoder.norm)
            copy_norm(model.decoder.final_norm, ref.decoder.norm)
    if not cfg.norm_first:
        ref.encoder.norm = None
        ref.decoder.norm = None
    return ref


def padded_batch(seed=0):
    gen = torch.Generator().manual_seed(seed)
    src = torch.randint(3, V, (3, 7), generator=gen)
    tgt = torch.randint(3, V, (3, 6), generator=gen)
    tgt[:, 0] = 1
    src[0, 4:] = PAD  # trailing padding on sources and targets
    src[2, 6:] = PAD
    tgt[1, 3:] = PAD
    tgt[2, 5:] = PAD
    return src, tgt


def run_both(model, ref, src, tgt):
    causal = nn.Transformer.generate_square_subsequent_mask(tgt.shape[1], dtype=torch.bool)  # True = blocked
    if causal.dtype != torch.bool:  # older torch returns a float -inf mask
        causal = torch.isinf(causal)
    with torch.no_grad():
        src_x, tgt_x = model.src_embed(src), model.tgt_embed(tgt)
        theirs_memory = ref.encoder(src_x, src_key_padding_mask=src == PAD)
        theirs_dec = ref.decoder(tgt_x, theirs_memory, tgt_mask=causal, tgt_key_padding_mask=tgt == PAD,
                                 memory_key_padding_mask=src == PAD, tgt_is_causal=True)
        theirs = dict(memory=theirs_memory, decoder=theirs_dec, logits=model.output(theirs_dec))

        memory, memory_mask, _ = model.encode(src)
        tgt_mask = torch.ones(1, 1, tgt.shape[1], tgt.shape[1], dtype=torch.bool).tril() & padding_mask(tgt, PAD)
        dec, _ = model.decoder(model.tgt_embed(tgt), tgt_mask, memory, memory_mask)
        ours = dict(memory=memory, decoder=dec, logits=model(src, tgt))
    return ours, theirs


@pytest.mark.parametrize("norm_first, activation", [(False, "relu"), (True, "relu"), (True, "gelu")],
                         ids=["post-ln-relu (the paper)", "pre-ln-relu", "pre-ln-gelu"])
def test_matches_torch_nn_transformer_at_every_position(norm_first, activation):
    model = our_model(norm_first, activation)
    ref = reference_from(model).train()  # dropout 0: train mode only switches off the fast path
    ours, theirs = run_both(model, ref, *padded_batch())
    for key in ("memory", "decoder", "logits"):
        diff = (ours[key] - theirs[key]).abs().max().item()
        assert diff < 1e-5, f"{key}: max abs diff {diff:.2e}"
    assert ours["logits"].abs().max() > 0.1  # not trivially zero


def test_matches_eval_fast_path_on_real_tokens():
    model = our_model()
    ref = reference_from(model).eval()
    src, tgt = padded_batch(seed=1)
    ours, theirs = run_both(model, ref, src, tgt)
    src_real, tgt_real = src != PAD, tgt != PAD
    assert (ours["memory"][src_real] - theirs["memory"][src_real]).abs().max() < 1e-5
    for key in ("decoder", "logits"):
        assert (ours[key][tgt_real] - theirs[key][tgt_real]).abs().max() < 1e-5, key


def test_reference_comparison_is_sensitive():
    """A single perturbed weight must break the match — the comparison above can fail."""
    model = our_model()
    ref = reference_from(model).train()
    with torch.no_grad():
        ref.decoder.layers[1].multihead_attn.in_proj_weight[D + 3, 5] += 0.05  # one entry of W_k, cross-attn
    ours, theirs = run_both(model, ref, *padded_batch())
    assert (ours["logits"] - theirs["logits"]).abs().max() > 1e-4
    torch.testing.assert_close(ours["memory"], theirs["memory"], atol=1e-5, rtol=0)
