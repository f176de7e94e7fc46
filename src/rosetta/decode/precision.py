"""The numbers a model decodes with: fp32, bf16 weights, or int8 (dynamic quantisation).

    fp32   the trained model as it is, but on a CPU its output layer stored transposed (``TransposedLinear``)
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


class PackedLinear(nn.Module):
    """y = x Wᵀ + b, inference only, with W (bf16) packed once into oneDNN's blocked layout for this CPU.

    A bf16 ``F.linear`` on the CPU hands oneDNN a plain row-major W, which oneDNN reorders into its blocked
    layout on every call; at decoding sizes (a few to a few hundred rows per step) that reorder is a large
    part of the call. Packing once is what PyTorch's own compiler does when it freezes a CPU model (inductor's
    mkldnn weight prepacking); the two ops used here are the ones it emits.
    """

    def __init__(self, linear: nn.Linear, rows_hint: int = 64):
        super().__init__()
        if not onednn_packs_bf16():
            raise RuntimeError("packed bf16 weights need oneDNN and a CPU with AVX-512 (BW, VL, DQ) or "
                               "AVX-NE-CONVERT; this one has neither: decode in bf16 unpacked, fp32 or int8")
        self.in_features, self.out_features = linear.in_features, linear.out_features
        weight = linear.weight.detach()
        self.packed = torch.ops.mkldnn._reorder_linear_weight(weight, rows_hint)  # opaque: not a parameter
        self.bias = None if linear.bias is None else linear.bias.detach()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (…, in) → (…, out)
        return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, packed bf16"


@functools.cache
def onednn_packs_bf16() -> bool:
    """Whether oneDNN can pack a bf16 weight on this CPU at all: its packing needs AVX-512 (BW, VL, DQ) or
    AVX-NE-CONVERT, which AVX2-only CPUs lack. Asked once, by packing an 8 × 8 matrix."""
    if not (torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")):
        return False
    try:
        torch.ops.mkldnn._reorder_linear_weight(torch.zeros(8, 8, dtype=torch.bfloat16), 1)
    except RuntimeError:
        return False
    return True


def can_pack_bf16() -> bool:
    """Whether ``for_inference`` packs bf16 weights here: oneDNN can (``onednn_packs_bf16``) and the CPU
    multiplies bf16 natively (elsewhere packing would only speed up an emulation)."""
    return cpu_has_native_bf16() and onednn_packs_bf16()


def pack_linears(model: nn.Module) -> nn.Module:
    """Replace every bf16 ``nn.Linear`` of ``model`` (CPU) by a ``PackedLinear``, in place; returns it."""
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, nn.Linear) and child.weight.dtype == torch.bfloat16:
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


def for_inference(model: nn.Module, precision: str = "fp32") -> nn.Module:
    """``model`` ready to decode in ``precision`` (see the module docstring): fp32 returns it with its output layer
    transposed on a CPU (in place: the model decodes from now on), bf16 and int8 return a converted copy (the
    original keeps its fp32 weights). Resolve ``auto`` first."""
    if precision not in ("fp32", "bf16", "int8"):
        raise ValueError(f"for_inference takes fp32, bf16 or int8, got {precision!r} (resolve auto first: "
                         "resolve_inference_precision)")
    if precision == "fp32":
        cpu = next(model.parameters()).device.type == "cpu"
        return transpose_output(model) if cpu else model
    device = next(model.parameters()).device
    if precision == "int8":
        resolve_inference_precision(precision, device)  # int8 off the CPU: a clear ValueError
        return quantize_int8(copy.deepcopy(model).eval())
    converted = copy.deepcopy(model).to(torch.bfloat16).eval()
    return pack_linears(converted) if device.type == "cpu" and can_pack_bf16() else converted
