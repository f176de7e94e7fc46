"""Decoding precision (``rosetta.decode.precision``): bf16 weights packed for oneDNN, int8, and what ``auto``
picks. References: ``F.linear`` in float64, the fp32 model's own search, and the rule written out."""

import copy

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
    assert not any(type(m) is nn.Linear for m in model.modules())
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


FAULTS = """
import resource, sys, torch
from rosetta.decode.allocator import keep_freed_memory
keep_freed_memory()
def faults(rows):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.ones(rows, 65001).add_(1)  # two blocks: the ones and nothing else; add_ in place
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
faults(256)
print(keep_freed_memory(), faults(256))
"""


def test_kept_memory_serves_blocks_above_32_mib_without_page_faults():
    """A 66 MB block (beam 4 × 64 sentences × 65,001 logits), freed and asked for again: with kept memory it
    comes back from the heap with its pages mapped (a few faults); with the opt-out it is mapped afresh, one
    fault per 4 KiB page (~16,000). Kept: the fewest of up to three processes — one full suite run on a fresh clone
    saw a process whose second block faulted every page (16,250; whether the setting was applied there was not
    recorded, it is now checked); 30 processes alone never did. A kept memory that does not work fails all three."""
    import os
    import subprocess
    import sys

    def faults(keep: str) -> tuple[bool, int]:
        env = {**os.environ, "ROSETTA_KEEP_FREED_MEMORY": keep}
        out = subprocess.run([sys.executable, "-c", FAULTS], env=env, capture_output=True, text=True, check=True)
        applied, count = out.stdout.split()[-2:]
        return applied == "True", int(count)

    applied, fresh = faults("0")
    assert not applied and fresh > 10_000, fresh  # the opt-out: a fresh mapping, touched page by page
    kept = []
    for _ in range(3):
        applied, count = faults("1")
        assert applied, "keep_freed_memory() was not applied (no glibc mallopt?)"
        kept.append(count)
        if count < 1_000:
            break
    assert min(kept) < 1_000, kept


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("size, threads, view", [
    ((48, 301), 2, False), ((48, 301), 3, False), ((512, 1100), 2, False), ((512, 1100), 1, False),
    ((1100, 512), 2, True), ((1100, 512), 3, False), ((300, 300), 2, True), ((300, 300), 1, True),
])
def test_packed_fp32_linear_is_the_linear_it_replaces(bias, size, threads, view):
    """``PackedLinear`` in fp32 (what fp32 decoding on a CPU runs): x Wᵀ + b within 1e-5 of float64 at 1, 4 and
    64 rows and in 3-D — one row through Wᵀ's column blocks (one per thread; 301 outputs in 2 or 3 blocks: the last
    one padded; with no more outputs than inputs and rows that split evenly, the blocks are a view of W), more rows
    through the packed W; nn.Linear's parameters (the same tensors), state dict and gradients; a weight or bias
    changed in place is packed (and cut) again; a deep copy works and computes the same."""
    assert precision.onednn_packs(torch.float32), "oneDNN packs fp32 weights on every x86-64 CPU PyTorch supports"
    torch.manual_seed(0)
    n_in, n_out = size
    linear = nn.Linear(n_in, n_out, bias=bias)
    layer = precision.PackedLinear(linear)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        check_packed_linear(layer, linear)
        blocks, _ = layer.weight_blocks()
        assert blocks.shape == (threads, n_in, -(-n_out // threads))  # the one-row path ran on the blocks
        assert (blocks.data_ptr() == layer.weight.data_ptr()) == view  # W itself, or a copy of Wᵀ
    finally:
        torch.set_num_threads(before)


def check_packed_linear(layer: nn.Module, linear: nn.Linear) -> None:
    n_in, n_out = linear.in_features, linear.out_features
    assert layer.weight is linear.weight and isinstance(layer, nn.Linear)

    def want(x, lin=linear):
        return F.linear(x.double(), lin.weight.double(), None if lin.bias is None else lin.bias.double())

    with torch.inference_mode():
        for shape in ((1, n_in), (1, 1, n_in), (4, n_in), (64, n_in), (3, 5, n_in)):
            x = torch.randn(*shape)
            got = layer(x)
            assert got.shape == (*shape[:-1], n_out)
            torch.testing.assert_close(got.double(), want(x), atol=1e-5, rtol=0)
        for x in (torch.randn(n_in, 2)[:, 0], torch.randn(n_in, 1).t()):  # one row, not contiguous
            torch.testing.assert_close(layer(x).double(), want(x), atol=1e-5, rtol=0)
    assert layer.state_dict().keys() == linear.state_dict().keys()
    for rows in (1, 2):  # gradients: plain F.linear
        x = torch.randn(rows, n_in, requires_grad=True)
        layer(x).sum().backward()
        torch.testing.assert_close(x.grad, linear.weight.sum(0).expand(rows, n_in))
    with torch.no_grad():
        linear.weight.mul_(-1)  # in place: the packed copy and the blocks are stale and made again
        if linear.bias is not None:
            linear.bias.add_(1.0)
        for rows in (1, 4):
            x = torch.randn(rows, n_in)
            torch.testing.assert_close(layer(x).double(), want(x), atol=1e-5, rtol=0)
    twin = copy.deepcopy(layer)
    with torch.no_grad():
        xs = (torch.randn(1, n_in), torch.randn(4, n_in))
        for x in xs:
            torch.testing.assert_close(twin(x), layer(x), atol=0, rtol=0)
        twin.weight[0, :] += 1.0  # sensitivity: a changed twin no longer agrees, at one row or four
        assert not any(torch.allclose(twin(x), layer(x), atol=1e-5) for x in xs)


def test_a_model_built_under_inference_mode_is_packed_and_decodes_the_same():
    """Weights made under ``torch.inference_mode`` (``with torch.inference_mode(): rosetta.load(DIR)``) keep no
    version counter; ``for_inference`` packs them all the same and the model decodes the plain model's ids, its
    layers within 1e-5 of float64 at one row and at four (it raised "Inference tensors do not track version
    counter" before)."""
    reference = tiny_model(3)
    with torch.inference_mode():
        model = tiny_model(3)
        model.load_state_dict(reference.state_dict())
        assert model.output.weight.is_inference()
        prepared = for_inference(model, "fp32")
        src = torch.randint(4, model.config.src_vocab_size, (2, 7))
        assert greedy_search(prepared, src, max_len=12) == greedy_search(reference, src, max_len=12)
        assert greedy_search(prepared, src[:1], max_len=12) == greedy_search(reference, src[:1], max_len=12)
        assert beam_search(prepared, src, beam_size=4, max_len=12) == beam_search(reference, src, beam_size=4,
                                                                                 max_len=12)
        layer = prepared.output
        assert isinstance(layer, precision.PackedLinear) or not precision.onednn_packs(torch.float32)
        for rows in (1, 4):
            x = torch.randn(rows, layer.in_features)
            want = F.linear(x.double(), layer.weight.double(), None if layer.bias is None else layer.bias.double())
            torch.testing.assert_close(layer(x).double(), want, atol=1e-5, rtol=0)


def test_fp32_decoding_packs_the_decoder_and_output_and_decodes_the_same():
    """``for_inference(model, "fp32")`` on a CPU: every Linear layer of the encoder and the decoder and the output
    layer packed (where oneDNN packs fp32); greedy and beam ids identical to the unpacked model's, the encoder's
    output and the logits within 1e-5; the state dict unchanged."""
    model = tiny_model(3)
    reference = copy.deepcopy(model)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    src = torch.randint(4, model.config.src_vocab_size, (3, 7))
    with torch.inference_mode():
        want_greedy = greedy_search(reference, src, max_len=12)
        want_beam = beam_search(reference, src, beam_size=4, max_len=12)
    prepared = for_inference(model, "fp32")
    assert prepared is model
    packed = [name for name, m in model.named_modules() if isinstance(m, precision.PackedLinear)]
    if precision.onednn_packs(torch.float32):  # elsewhere (no oneDNN) the output layer is transposed instead
        linears = {name for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
        assert "output" in packed and set(packed) == linears
        assert any(n.startswith("encoder.") for n in packed) and any(n.startswith("decoder.") for n in packed)
    with torch.inference_mode():
        assert greedy_search(model, src, max_len=12) == want_greedy
        assert beam_search(model, src, beam_size=4, max_len=12) == want_beam
        tgt = torch.randint(4, model.config.tgt_vocab_size, (3, 5))
        torch.testing.assert_close(model.encode(src)[0], reference.encode(src)[0], atol=1e-5, rtol=0)
        torch.testing.assert_close(model(src, tgt), reference(src, tgt), atol=1e-5, rtol=0)
    after = model.state_dict()
    assert after.keys() == state.keys() and all(torch.equal(after[k], state[k]) for k in state)


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


def test_fp32_decoding_of_a_language_model_packs_its_stack_and_samples_the_same():
    """A language model (``rosetta generate``, ``rosetta.load``'s Generator, the server): its whole stack is the
    decoder, so every block's Linear layers and the output layer are packed; greedy and seeded sampling give
    the ids of the unpacked model."""
    from rosetta.decode.sampling import generate
    from rosetta.models.lm import LanguageModel, gpt_config

    torch.manual_seed(0)
    model = LanguageModel(gpt_config(70, d_model=32, n_heads=4, d_ff=64, n_decoder_layers=2)).eval()
    reference = copy.deepcopy(model)

    def continuations(m):
        with torch.inference_mode():
            greedy = list(generate(m, [5, 6, 7], 12, 0.0))
            sampled = list(generate(m, [5, 6, 7], 12, 1.0, generator=torch.Generator().manual_seed(3)))
        return greedy, sampled

    want = continuations(reference)
    for_inference(model, "fp32")
    packed = {name for name, m in model.named_modules() if isinstance(m, precision.PackedLinear)}
    assert "output" in packed and {n for n in packed if n.startswith("decoder.")}
    assert continuations(model) == want
