"""Decoding precision (``rosetta.decode.precision``): bf16 weights packed for oneDNN, int8, and what ``auto``
picks. References: ``F.linear`` in float64, the fp32 model's own search, and the rule written out."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import rosetta.decode.precision as precision
from rosetta import ModelConfig, Transformer
from rosetta.decode import beam_search, for_inference, greedy_search, resolve_inference_precision

# oneDNN packs bf16 weights only on CPUs with AVX-512 (BW, VL, DQ) or AVX-NE-CONVERT: elsewhere (AVX2-only CPUs)
# the packed layer must refuse with a clear error, and that is what these tests check there instead.
PACKS = precision.onednn_packs_bf16()


def refuses_to_pack(linear: nn.Linear) -> bool:
    """On a CPU that cannot pack: PackedLinear refuses in one clear line (True); elsewhere False."""
    if PACKS:
        return False
    with pytest.raises(RuntimeError, match="AVX-512 .* or AVX-NE-CONVERT; this one has neither"):
        precision.PackedLinear(linear)
    return True


def tiny_model(seed: int = 0) -> Transformer:
    torch.manual_seed(seed)
    config = ModelConfig.preset("tiny", src_vocab_size=50, tgt_vocab_size=60, dropout=0.0)
    return Transformer(config).eval()


@pytest.mark.parametrize("shape", [(1, 16), (3, 1, 16), (40, 2, 16)])
@pytest.mark.parametrize("bias", [True, False])
def test_packed_linear_equals_a_float64_linear(shape, bias):
    """The packed bf16 layer computes x Wᵀ + b with bf16 inputs: within bf16 rounding of the float64 result
    on the same (bf16-rounded) numbers, for any leading shape."""
    torch.manual_seed(1)
    linear = nn.Linear(16, 24, bias=bias).to(torch.bfloat16)
    if refuses_to_pack(linear):
        return
    x = torch.randn(*shape).to(torch.bfloat16)
    got = precision.PackedLinear(linear)(x)
    b = None if linear.bias is None else linear.bias.double()
    want = F.linear(x.double(), linear.weight.double(), b)
    assert got.shape == (*shape[:-1], 24) and got.dtype == torch.bfloat16
    torch.testing.assert_close(got.double(), want, atol=0.05, rtol=0.02)
    assert not torch.equal(got.double(), torch.zeros_like(want))  # sensitivity: it computed something


def test_pack_linears_replaces_every_bf16_linear_and_nothing_else():
    model = tiny_model().to(torch.bfloat16)
    if refuses_to_pack(model.output):
        assert precision.can_pack_bf16() is False  # so for_inference never packs here
        return
    n_linear = sum(isinstance(m, nn.Linear) for m in model.modules())
    precision.pack_linears(model)
    assert sum(isinstance(m, precision.PackedLinear) for m in model.modules()) == n_linear > 0
    assert not any(isinstance(m, nn.Linear) for m in model.modules())
    assert any(isinstance(m, nn.Embedding) for m in model.modules())


@pytest.mark.parametrize("packed", [False, True])
def test_bf16_model_decodes_like_the_fp32_model(packed, monkeypatch):
    """bf16 copy (packed or plain): same shapes, logits within bf16 error of fp32, and greedy / beam outputs
    that mostly agree with fp32 (a random model's near-ties may flip); the fp32 model is left untouched."""
    if packed and refuses_to_pack(tiny_model().to(torch.bfloat16).output):
        return
    monkeypatch.setattr(precision, "can_pack_bf16", lambda: packed)
    model = tiny_model(2)
    before = [p.clone() for p in model.parameters()]
    bf16 = for_inference(model, "bf16")
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert any(isinstance(m, precision.PackedLinear) for m in bf16.modules()) is packed
    src = torch.randint(4, 50, (6, 9))
    with torch.inference_mode():
        memory, mask, _ = model.encode(src)
        memory16, mask16, _ = bf16.encode(src)
        tgt = torch.randint(4, 60, (6, 5))
        logits = model.decode(tgt, memory, mask)[0]
        logits16 = bf16.decode(tgt, memory16, mask16)[0]
    assert logits16.dtype == torch.bfloat16
    torch.testing.assert_close(logits16.float(), logits, atol=0.15, rtol=0.05)
    g32, g16 = greedy_search(model, src, max_len=8), greedy_search(bf16, src, max_len=8)
    b32, b16 = beam_search(model, src, beam_size=3, max_len=8), beam_search(bf16, src, beam_size=3, max_len=8)
    assert sum(a == b for a, b in zip(g32 + b32, g16 + b16)) >= 8  # of 12


def test_int8_copy_quantises_the_linears_and_keeps_the_config():
    model = tiny_model(3)
    q = for_inference(model, "int8")
    assert q.config == model.config
    assert not any(type(m) is nn.Linear for m in q.modules())
    assert any(type(m) is nn.Linear for m in model.modules())  # the original is not quantised
    src = torch.randint(4, 50, (4, 7))
    assert len(greedy_search(q, src, max_len=6)) == 4


@pytest.mark.parametrize("native", [False, True])
@pytest.mark.parametrize("rows", [1, 7, 8, 256])
def test_auto_picks_bf16_on_a_cpu_only_where_native_and_the_batch_is_big(native, rows, monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: native)
    want = "bf16" if native and rows >= precision.BF16_MIN_ROWS else "fp32"
    assert resolve_inference_precision("auto", torch.device("cpu"), rows) == want
    for explicit in ("fp32", "bf16", "int8"):
        assert resolve_inference_precision(explicit, torch.device("cpu"), rows) == explicit


def test_bad_precisions_are_refused_clearly():
    with pytest.raises(ValueError, match="precision must be one of auto, fp32, bf16, int8"):
        resolve_inference_precision("fp16", torch.device("cpu"))
    with pytest.raises(ValueError, match="int8 dynamic quantization runs on the CPU only"):
        resolve_inference_precision("int8", torch.device("cuda"))


def test_keep_freed_memory_applies_once_and_can_be_refused(monkeypatch):
    """glibc's mallopt accepts the settings (this test runs on glibc Linux, as CI does); the opt-out works."""
    import platform

    from rosetta.decode import allocator

    allocator.keep_freed_memory.cache_clear()
    monkeypatch.setenv("ROSETTA_KEEP_FREED_MEMORY", "0")
    assert allocator.keep_freed_memory() is False
    allocator.keep_freed_memory.cache_clear()
    monkeypatch.delenv("ROSETTA_KEEP_FREED_MEMORY")
    assert allocator.keep_freed_memory() is (platform.libc_ver()[0] == "glibc")


def test_the_transposed_output_layer_computes_the_linear_it_replaces():
    """``TransposedLinear`` (fp32 decoding's output layer on a CPU) against the float64 product x Wᵀ + b."""
    from rosetta.decode.precision import TransposedLinear

    torch.manual_seed(0)
    for bias in (True, False):
        linear = torch.nn.Linear(48, 301, bias=bias)
        layer = TransposedLinear(linear)
        x = torch.randn(3, 5, 48)
        expected = x.double() @ linear.weight.double().t() + (linear.bias.double() if bias else 0)
        assert torch.allclose(layer(x).double(), expected, atol=1e-5, rtol=0)
        assert torch.equal(layer.weight, linear.weight) and layer.weight_t.is_contiguous()
        assert layer(x).shape == (3, 5, 301)
        state, original = layer.state_dict(), linear.state_dict()  # what exports read: nn.Linear's names
        assert state.keys() == original.keys() and all(torch.equal(state[k], original[k]) for k in state)
