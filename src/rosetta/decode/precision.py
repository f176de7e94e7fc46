"""The numbers a model decodes with: fp32, bf16 weights, or int8 (dynamic quantisation).

    fp32   the trained model as it is, but on a CPU its Linear layers (the encoder's, the decoder's, the output
           layer) also hold their weights packed once into oneDNN's blocked layout (``PackedLinear``, ``pack_decoding``)
    bf16   a copy whose weights and activations are bfloat16 (norms, softmax and the search's scores still
           accumulate in float32); pays only where the hardware multiplies bf16 natively (a GPU, or a CPU with
           AVX-512 BF16 / AMX). Converting the weights once is what makes it pay: autocast would cast every
           weight again at every decoding step. On such a CPU every Linear also gets its weight packed once
           into oneDNN's blocked layout (``PackedLinear``), which a plain bf16 ``F.linear`` re-packs per call.
    int8   a copy whose Linear layers hold int8 weights and quantise activations on the fly (CPU only)

``auto`` is bf16 where it is native and the batch is big enough for it to be faster, fp32 elsewhere
(``resolve_inference_precision``).
"""

from __future__ import annotations

import copy
import functools
import warnings

import torch
from torch import nn
from torch.nn import functional as F

from rosetta.hardware import cpu_has_native_bf16

INFERENCE_PRECISIONS = ("auto", "fp32", "bf16", "int8")


def quantize_int8(model: nn.Module) -> nn.Module:
    """Dynamic int8 quantization of every Linear layer (weights int8, activations quantized on the fly)."""
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():  # torch.ao's dynamic quantisation is deprecated in favour of torchao
        warnings.simplefilter("ignore")
        quantized = quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
    if hasattr(model, "config"):
        quantized.config = model.config
    return quantized


def column_blocks(weight: torch.Tensor, bias: torch.Tensor | None, parts: int):
    """Wᵀ cut into ``parts`` blocks of c = ⌈out / parts⌉ columns, (parts, in, c), and b as (parts, 1, c) — the layout
    ``times_blocks`` multiplies one row by.

    Two ways to hold the same blocks, chosen by shape (measured one product at a time, 2 threads, AVX2, weights
    coming from memory as in a decoding step): where W has at least as many inputs as outputs and its rows split
    evenly, a view of W itself — block p is rows p·c … (p+1)·c − 1 of W read transposed, nothing copied (512 × 2048:
    289–304 → 208–212 µs; 256 × 1024: 90–101 → 64–65; 512 × 512: 80–99 → 70–80); otherwise a contiguous copy of Wᵀ
    cut into columns, the last block padded with zero columns (2048 × 512: 245–248 µs as a view → 204–211 copied;
    1536 × 512: 197–227 → 177–178)."""
    n_out, n_in = weight.shape
    weight, bias = weight.detach(), None if bias is None else bias.detach()
    width = -(-n_out // parts)
    if n_in >= n_out and width * parts == n_out:  # W's rows, p·c … (p+1)·c − 1 per block: a view
        return weight.view(parts, width, n_in).transpose(1, 2), None if bias is None else bias.view(parts, 1, width)
    pad = width * parts - n_out
    blocks = F.pad(weight.t(), (0, pad)).reshape(n_in, parts, width).permute(1, 0, 2).contiguous()
    return blocks, None if bias is None else F.pad(bias, (0, pad)).view(parts, 1, width)


def times_blocks(x: torch.Tensor, blocks: torch.Tensor, bias: torch.Tensor | None, n_out: int) -> torch.Tensor:
    """One row x (…, in) times Wᵀ held as column blocks (``column_blocks``): y = [x B₁ + b₁, …, x B_P + b_P], one
    batched product whose P blocks PyTorch's CPU kernels share among its threads (a matrix–vector product is one
    thread's work in every BLAS call PyTorch makes), → (…, out)."""
    parts, n_in, width = blocks.shape
    rows = x.view(1, 1, n_in).expand(parts, 1, n_in)  # the same row for every block: (P, 1, in), no copy
    y = torch.bmm(rows, blocks) if bias is None else torch.baddbmm(bias, rows, blocks)  # (P, 1, c)
    y = y.view(*x.shape[:-1], parts * width)
    return y if parts * width == n_out else y[..., :n_out]


def version(tensor: torch.Tensor) -> int | None:
    """How many times ``tensor`` was changed in place (its version counter); None for a tensor made under
    ``torch.inference_mode`` (a model built or loaded there), which keeps no counter."""
    return None if tensor.is_inference() else tensor._version


class PackedLinear(nn.Linear):
    """y = x Wᵀ + b — an ``nn.Linear`` (the same parameters, state dict and gradients) whose inference calls on a
    CPU multiply by W packed once into oneDNN's blocked layout for this CPU.

    ``F.linear`` hands the CPU a plain row-major W at every call: in bf16 oneDNN reorders it into its blocked layout
    each time, in fp32 the BLAS reads W's rows at a few rows of x — at decoding sizes (a few to a few hundred rows a
    step) both are a large part of the call. Packing once is what PyTorch's own compiler does when it freezes a CPU
    model (inductor's mkldnn weight prepacking); the two ops used here are the ones it emits. Measured (AVX2,
    2 threads, fp32, 65,001 × 512 output layer): 4 rows 25 → 8 ms, 64 rows 59 → 32 ms, 256 rows 207 → 138 ms
    against ``x @ Wᵀ``; 512 × 2048 at 4 rows 0.34 → 0.14 ms.

    One row in fp32 (greedy decoding of one sentence) takes another layout: every BLAS PyTorch calls computes a
    matrix–vector product on one thread, and oneDNN's packed product pays its fixed cost per call; there Wᵀ is held
    cut into one block of columns per thread (``column_blocks``) and multiplied as one batched product
    (``times_blocks``), which the threads share. Measured in whole greedy steps at one sentence (AVX2, 2 threads,
    against plain ``F.linear`` for small W and Wᵀ for the output layer): opus-mt's shape 16.6 → 14.8 ms, the
    ``small`` model the same within this VM's noise (RESULTS.md, issue 21). Where W has no more outputs than
    inputs, the blocks are a view of W (``column_blocks``).

    The packed copy is made from ``weight`` at once, the blocks at the first one-row call; each again whenever
    ``weight`` changes (its version counter) or, for the blocks, the number of threads does. Calls that record
    gradients, run off the CPU, in another dtype, or under tracing / ONNX export take plain ``F.linear``. Weights
    made under ``torch.inference_mode`` keep no version counter: changed in place, they are not packed again. Copies
    (``copy.deepcopy``, pickling) leave both behind: oneDNN's opaque tensor has no storage to copy. The price is
    memory: W is held twice, three times once a single row has been decoded if W has more outputs than inputs.
    """

    ROWS_HINT = 64  # oneDNN picks its blocking for about this many rows; 64 measured best from 1 to 256

    def __init__(self, linear: nn.Linear):
        nn.Module.__init__(self)
        if linear.weight.dtype == torch.bfloat16 and not onednn_packs(torch.bfloat16):
            raise RuntimeError("packed bf16 weights need oneDNN and a CPU with AVX-512 (BW, VL, DQ) or "
                               "AVX-NE-CONVERT; this one has neither: decode in bf16 unpacked, fp32 or int8")
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight, self.bias = linear.weight, linear.bias  # the same Parameters: nothing copied
        self._packed, self._packed_key = None, None
        self._blocks, self._blocks_key = None, None
        with torch.no_grad():
            self.packed_weight()  # now rather than in the first request

    def packed_weight(self) -> torch.Tensor:
        """W in oneDNN's layout (opaque), packed again if ``weight`` changed since the last call."""
        weight = self.weight
        key = (weight.data_ptr(), version(weight), weight.dtype)
        if self._packed is None or self._packed_key != key:
            self._packed = torch.ops.mkldnn._reorder_linear_weight(weight.detach(), self.ROWS_HINT)
            self._packed_key = key
        return self._packed

    def weight_blocks(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(Wᵀ as one block of columns per thread, b likewise) — ``column_blocks`` — made again if ``weight`` or
        ``bias`` changed, or the number of threads did, since the last call."""
        weight, bias = self.weight, self.bias
        key = (weight.data_ptr(), version(weight), bias is not None and (bias.data_ptr(), version(bias)),
               torch.get_num_threads())
        if self._blocks_key != key:
            self._blocks = column_blocks(weight, bias, key[-1])
            self._blocks_key = key
        return self._blocks

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (…, in) → (…, out)
        weight = self.weight
        if (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)
                or not x.is_cpu or x.dtype != weight.dtype or not onednn_packs(x.dtype)
                or torch.jit.is_tracing() or torch.compiler.is_compiling() or torch.onnx.is_in_onnx_export()):
            return F.linear(x, weight, self.bias)
        if x.numel() == self.in_features and x.dtype == torch.float32:  # one row
            return times_blocks(x, *self.weight_blocks(), self.out_features)
        bias = self.bias
        return torch.ops.mkldnn._linear_pointwise(x, self.packed_weight(), None if bias is None else bias.detach(),
                                                  "none", [], "")

    def __getstate__(self):  # deepcopy and pickle: without the opaque packed copy or the blocks (made again)
        return {**super().__getstate__(), "_packed": None, "_packed_key": None, "_blocks": None,
                "_blocks_key": None}

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, packed {str(self.weight.dtype).removeprefix('torch.')}"


@functools.cache
def onednn_packs(dtype: torch.dtype) -> bool:
    """Whether oneDNN can pack a ``dtype`` weight on this CPU at all (fp32: any x86 CPU oneDNN runs on; bf16: needs
    AVX-512 (BW, VL, DQ) or AVX-NE-CONVERT, which AVX2-only CPUs lack). Asked once, by packing an 8 × 8 matrix."""
    if not (torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")):
        return False
    try:
        torch.ops.mkldnn._reorder_linear_weight(torch.zeros(8, 8, dtype=dtype), 1)
    except RuntimeError:
        return False
    return True


def onednn_packs_bf16() -> bool:
    """``onednn_packs(torch.bfloat16)``."""
    return onednn_packs(torch.bfloat16)


def can_pack_bf16() -> bool:
    """Whether ``for_inference`` packs bf16 weights here: oneDNN can (``onednn_packs_bf16``) and the CPU
    multiplies bf16 natively (elsewhere packing would only speed up an emulation)."""
    return cpu_has_native_bf16() and onednn_packs_bf16()


def pack_linears(model: nn.Module, dtype: torch.dtype = torch.bfloat16) -> nn.Module:
    """Replace every ``nn.Linear`` of ``model`` (CPU) whose weight is ``dtype`` by a ``PackedLinear``, in place;
    returns it."""
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if type(child) is nn.Linear and child.weight.dtype == dtype:
                setattr(module, name, PackedLinear(child))
    return model


# Rows per decoding step (sentences × beam) from which bf16 is faster than fp32 on a CPU with native bf16
# (Xeon with AMX, 2 threads, the ``small`` model, packed weights: greedy 0.7× at 1 row, 0.9× at 4, 1.2× at 8,
# 1.5× at 32; beam 4: 0.9× at 1 sentence, 1.2× at 2). Below it oneDNN's fixed cost per bf16 call dominates.
BF16_MIN_ROWS = 8


def resolve_inference_precision(precision: str, device: torch.device, rows: int = BF16_MIN_ROWS) -> str:
    """``auto`` → "bf16" where it decodes faster than fp32: on a CUDA GPU with bf16, and on a CPU with
    native bf16 when a step decodes at least ``BF16_MIN_ROWS`` rows (``rows`` = batch size × beam: a batch job
    decodes many, a server answering one request at a time few); "fp32" elsewhere. Other names are checked
    and returned (ValueError for an unknown one, or int8 off the CPU)."""
    if precision not in INFERENCE_PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(INFERENCE_PRECISIONS)}, got {precision!r}")
    if precision == "int8" and device.type != "cpu":
        raise ValueError("int8 dynamic quantization runs on the CPU only; use precision fp32/bf16 or device cpu")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if device.type == "cpu" and cpu_has_native_bf16() and rows >= BF16_MIN_ROWS else "fp32"


class TransposedLinear(nn.Module):
    """y = x Wᵀ + b with Wᵀ stored contiguous, (in, out), instead of nn.Linear's W (out, in).

    Decoding multiplies a few rows by the output layer at every step; on a CPU that product reads Wᵀ faster than W
    (65,001 × 512, 2 threads, AVX2: 6.0 against 11.2 ms for one row, 55 against 63 ms for 64; measured). A copy made
    once for inference: ``weight`` (a view of it), ``bias`` and the state dict read like nn.Linear's."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.register_buffer("weight_t", linear.weight.detach().t().contiguous(), persistent=False)  # (in, out)
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().clone(), persistent=False)

    @property
    def weight(self) -> torch.Tensor:
        return self.weight_t.t()  # (out, in), as nn.Linear's

    def _save_to_state_dict(self, destination, prefix, keep_vars):  # nn.Linear's names and layout
        destination[prefix + "weight"] = self.weight if keep_vars else self.weight.detach()
        if self.bias is not None:
            destination[prefix + "bias"] = self.bias if keep_vars else self.bias.detach()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features)  # (N, in)
        y = rows @ self.weight_t if self.bias is None else torch.addmm(self.bias, rows, self.weight_t)
        return y.view(*x.shape[:-1], self.out_features)


def transpose_output(model: nn.Module) -> nn.Module:
    """``model`` with its ``output`` Linear (an encoder–decoder's or LM's vocabulary projection) replaced by a
    ``TransposedLinear`` holding the same numbers; anything else is left as it is."""
    if isinstance(getattr(model, "output", None), nn.Linear):
        model.output = TransposedLinear(model.output)
    return model


def pack_decoding(model: nn.Module) -> nn.Module:
    """An fp32 model on a CPU, in place, as it decodes fastest: the Linear layers of its ``encoder`` and ``decoder``
    and its ``output`` layer packed (``PackedLinear``) where oneDNN packs fp32, else only the output layer transposed
    (``TransposedLinear``). The encoder runs once per batch, on many rows: packed, opus-mt-en-zh's encoder took 18.3
    instead of 28.6 ms for one 25-token sentence and 638 instead of 680 ms for 64 (AVX2, 2 threads, paired). The
    numbers: RESULTS.md, issue 21 (opus-mt-en-zh's shape against CTranslate2 float32)."""
    if not onednn_packs(torch.float32):
        return transpose_output(model)
    for part in ("encoder", "decoder"):
        stack = getattr(model, part, None)
        if isinstance(stack, nn.Module):
            pack_linears(stack, torch.float32)
    if type(getattr(model, "output", None)) is nn.Linear and model.output.weight.dtype == torch.float32:
        model.output = PackedLinear(model.output)
    return model


def for_inference(model: nn.Module, precision: str = "fp32") -> nn.Module:
    """``model`` ready to decode in ``precision`` (see the module docstring): fp32 returns it with its decoding
    step's layers packed on a CPU (``pack_decoding``; in place: same parameters, W also held packed), bf16 and
    int8 return a converted copy (the original keeps its fp32 weights). Resolve ``auto`` first."""
    if precision not in ("fp32", "bf16", "int8"):
        raise ValueError(f"for_inference takes fp32, bf16 or int8, got {precision!r} (resolve auto first: "
                         "resolve_inference_precision)")
    if precision == "fp32":
        cpu = next(model.parameters()).device.type == "cpu"
        return pack_decoding(model) if cpu else model
    device = next(model.parameters()).device
    if precision == "int8":
        resolve_inference_precision(precision, device)  # int8 off the CPU: a clear ValueError
        return quantize_int8(copy.deepcopy(model).eval())
    converted = copy.deepcopy(model).to(torch.bfloat16).eval()
    return pack_linears(converted) if device.type == "cpu" and can_pack_bf16() else converted
