"""The output layer fused with the label-smoothed loss (``linear_label_smoothed_nll``) against the formula
written out in float64 with autograd (logits = h Wᵀ, log-softmax, (1−ε)·NLL + ε·uniform CE, pad ignored) and
against PyTorch's own ``F.cross_entropy``."""

import pytest
import torch
import torch.nn.functional as F

from rosetta.train.losses import linear_label_smoothed_nll

PAD = 0


def reference(hidden, weight, target, smoothing):
    """Float64, unfused, autograd: (loss, nll, ∂loss/∂hidden, ∂loss/∂W)."""
    h = hidden.detach().double().requires_grad_()
    w = weight.detach().double().requires_grad_()
    log_probs = torch.log_softmax(h @ w.t(), dim=-1)
    keep = target != PAD
    nll = -log_probs.gather(1, target[:, None]).squeeze(1)
    loss = ((1 - smoothing) * nll - smoothing * log_probs.mean(-1))[keep].sum()
    loss.backward()
    return loss.detach(), nll[keep].sum().detach(), h.grad, w.grad


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3])
@pytest.mark.parametrize("chunk_rows", [1, 7, 64, None])
def test_equals_the_unfused_formula_in_float64(smoothing, chunk_rows):
    gen = torch.Generator().manual_seed(0)
    n, d, v = 37, 16, 50  # 37 rows: chunks of 7 leave a remainder
    hidden, weight = torch.randn(n, d, generator=gen), torch.randn(v, d, generator=gen) * 0.3
    target = torch.randint(1, v, (n,), generator=gen)
    target[::5] = PAD
    h, w = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
    loss, nll, count = linear_label_smoothed_nll(h, w, target, PAD, smoothing, chunk_rows)
    (loss * 0.5).backward()  # the backward scales by the incoming gradient
    ref_loss, ref_nll, ref_dh, ref_dw = reference(hidden, weight, target, smoothing)
    assert count == int((target != PAD).sum())
    torch.testing.assert_close(loss.double(), ref_loss, atol=1e-4, rtol=1e-6)
    torch.testing.assert_close(nll.double(), ref_nll, atol=1e-4, rtol=1e-6)
    torch.testing.assert_close(h.grad.double(), 0.5 * ref_dh, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(w.grad.double(), 0.5 * ref_dw, atol=1e-6, rtol=1e-5)
    assert not torch.any(h.grad[target == PAD])  # padding rows get no gradient


def test_no_smoothing_is_pytorchs_cross_entropy_and_shapes_may_be_3d():
    gen = torch.Generator().manual_seed(1)
    hidden, weight = torch.randn(3, 5, 8, generator=gen), torch.randn(20, 8, generator=gen)
    target = torch.randint(1, 20, (3, 5), generator=gen)
    target[0, 3:] = PAD
    loss, nll, count = linear_label_smoothed_nll(hidden, weight, target, PAD, 0.0)
    want = F.cross_entropy((hidden @ weight.t()).flatten(0, 1), target.flatten(), ignore_index=PAD,
                           reduction="sum")
    torch.testing.assert_close(loss, want, atol=1e-4, rtol=1e-6)
    torch.testing.assert_close(nll, want, atol=1e-4, rtol=1e-6)
    assert count == 13


def test_bf16_hidden_is_within_bf16_rounding_and_weight_grad_keeps_its_dtype():
    gen = torch.Generator().manual_seed(2)
    hidden, weight = torch.randn(40, 16, generator=gen), torch.randn(30, 16, generator=gen) * 0.3
    target = torch.randint(1, 30, (40,), generator=gen)
    h, w = hidden.to(torch.bfloat16).requires_grad_(), weight.clone().requires_grad_()
    loss, _, _ = linear_label_smoothed_nll(h, w, target, PAD, 0.1)
    loss.backward()
    ref_loss, _, ref_dh, ref_dw = reference(hidden, weight, target, 0.1)
    assert h.grad.dtype == torch.bfloat16 and w.grad.dtype == torch.float32
    torch.testing.assert_close(loss.double(), ref_loss, rtol=2e-2, atol=0)
    torch.testing.assert_close(h.grad.double(), ref_dh, atol=3e-2, rtol=5e-2)
    torch.testing.assert_close(w.grad.double(), ref_dw, atol=3e-2, rtol=5e-2)


@pytest.mark.parametrize("t5_output", [False, True])
def test_a_transformers_features_and_output_weight_give_its_loss(t5_output):
    """What the translation task trains on: features_only + the output weight = the logits' loss (also with
    T5's d^-½ scale before the tied output layer); gradients reach every parameter alike."""
    from rosetta import ModelConfig, Transformer
    from rosetta.train.losses import label_smoothed_nll

    torch.manual_seed(3)
    config = ModelConfig.preset("tiny", src_vocab_size=40, tgt_vocab_size=45, dropout=0.0,
                                scale_decoder_output=t5_output)
    model = Transformer(config)
    src, tgt_in = torch.randint(4, 40, (3, 6)), torch.randint(4, 45, (3, 5))
    tgt_out = torch.randint(4, 45, (3, 5))
    tgt_out[1, 3:] = config.pad_id
    fused, _, _ = linear_label_smoothed_nll(model(src, tgt_in, features_only=True), model.output.weight, tgt_out,
                                            config.pad_id, 0.1)
    fused.backward()
    fused_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    plain, _, _ = label_smoothed_nll(model(src, tgt_in), tgt_out, config.pad_id, 0.1)
    plain.backward()
    torch.testing.assert_close(fused, plain, atol=1e-4, rtol=1e-6)
    for got, p in zip(fused_grads, model.parameters()):
        torch.testing.assert_close(got, p.grad, atol=1e-5, rtol=1e-4)


def test_under_autocast_the_products_run_in_bf16_and_gradients_come_back_in_fp32():
    gen = torch.Generator().manual_seed(4)
    hidden, weight = torch.randn(40, 16, generator=gen), torch.randn(30, 16, generator=gen) * 0.3
    target = torch.randint(1, 30, (40,), generator=gen)
    h, w = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, _, _ = linear_label_smoothed_nll(h, w, target, PAD, 0.1)
    loss.backward()
    ref_loss, _, ref_dh, _ = reference(hidden, weight, target, 0.1)
    exact, _, _ = linear_label_smoothed_nll(hidden, weight, target, PAD, 0.1)
    assert h.grad.dtype == w.grad.dtype == torch.float32
    torch.testing.assert_close(loss.double(), ref_loss, rtol=2e-2, atol=0)
    torch.testing.assert_close(h.grad.double(), ref_dh, atol=3e-2, rtol=5e-2)
    assert float(loss) != float(exact)  # sensitivity: bf16 products, not the fp32 path
