"""A ``Transformer`` as three ONNX graphs, so that ONNX Runtime decodes one token a step.

    encoder.onnx       src_ids (B, S) int64                         → memory (B, S, D)
    cross_kv.onnx      memory (B, S, D)                             → cross_k_i, cross_v_i (B, H_i, S, d) per layer
    decoder_step.onnx  tokens (N, 1) int64, memory_mask (N, S) bool,
                       self_k_i, self_v_i (N, H_i, T, d),  cross_k_i, cross_v_i (N, H_i, S, d)
                                                                    → logits (N, V), new_self_k_i, new_self_v_i
                                                                      (N, H_i, T + 1, d)

Every batch, source and past length is a dynamic axis (T = 0 at the first step). The step graph is the model's
own ``decode_step`` traced with a cache that concatenates (``ConcatCache``): the new token's position is the
past length T (read from the cache's shape, so it stays dynamic in the graph), its keys and values are appended,
and the cross-attention keys/values come in as computed once by ``cross_kv.onnx``. The exporter is PyTorch's
TorchScript-based one (``dynamo=False``): it traces one call and turns the shapes it sees into ONNX shape ops.

``--int8``: ONNX Runtime's dynamic quantisation (``quantize_dynamic``): MatMul weights stored as int8, activations
quantised on the fly per call — the ONNX counterpart of ``torch.ao.quantization.quantize_dynamic``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from rosetta.decode.engines import ONNX_FILES, onnx_names
from rosetta.models.transformer import Transformer
from rosetta.nn.blocks import LayerCache
from rosetta.nn.stack import DecoderState

OPSET = 17


class ConcatCache:
    """A ``KVCache`` stand-in for tracing: past keys/values come in as tensors, new ones are concatenated (no
    preallocated buffer, whose Python-int bookkeeping would freeze the lengths into the graph)."""

    static = False

    def __init__(self, k: torch.Tensor, v: torch.Tensor):
        self.k, self.v = k, v  # (N, H, T, d_k), (N, H, T, d_v)

    @property
    def length(self) -> torch.Tensor | int:
        return self.k.shape[2]  # traced: a shape op of the graph

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.k, self.v = torch.cat([self.k, k], dim=2), torch.cat([self.v, v], dim=2)
        return self.k, self.v


class EncoderGraph(nn.Module):
    """src_ids (B, S) → memory (B, S, D): ``Transformer.encode`` (the key mask is rebuilt by the engine)."""

    def __init__(self, model: Transformer):
        super().__init__()
        self.model = model

    def forward(self, src_ids: torch.Tensor) -> torch.Tensor:
        return self.model.encode(src_ids)[0]


class CrossKVGraph(nn.Module):
    """memory (B, S, D) → every decoder layer's cross-attention keys and values (B, H, S, d), in layer order."""

    def __init__(self, model: Transformer):
        super().__init__()
        self.model = model

    def forward(self, memory: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = []
        for layer in self.model.decoder.layers:
            out.extend(layer.cross_attn._project_kv(memory))
        return tuple(out)


class DecoderStepGraph(nn.Module):
    """One incremental step: ``Transformer.decode_step`` on a state rebuilt from plain tensors."""

    def __init__(self, model: Transformer):
        super().__init__()
        self.model = model

    def forward(self, tokens: torch.Tensor, memory_mask: torch.Tensor, *caches: torch.Tensor
                ) -> tuple[torch.Tensor, ...]:
        n = len(self.model.decoder.layers)
        past, cross = caches[: 2 * n], caches[2 * n :]
        layers = []
        for i in range(n):
            cache = LayerCache()
            cache.self_attn = ConcatCache(past[2 * i], past[2 * i + 1])
            cache.cross_attn.set_static(cross[2 * i], cross[2 * i + 1])
            layers.append(cache)
        state = DecoderState(layers=layers, offset=past[0].shape[2], batch_size=tokens.shape[0],
                             memory_mask=memory_mask[:, None, None, :])
        logits = self.model.decode_step(tokens, state)[:, -1]  # (N, V)
        return (logits, *[t for layer in layers for t in (layer.self_attn.k, layer.self_attn.v)])


def example_inputs(model: Transformer, batch: int = 2, src_len: int = 5, past: int = 3
                   ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """(src_ids, memory_mask, self caches, cross caches) of the given sizes, each layer with its own head count
    (a pruned model's layers differ). Random values: the export traces shapes, not numbers."""
    config = model.config
    src = torch.randint(4, config.src_vocab_size, (batch, src_len))
    mask = torch.ones(batch, src_len, dtype=torch.bool)
    past_kv, cross_kv = [], []
    for layer in model.decoder.layers:
        for attn, length, out in ((layer.self_attn, past, past_kv), (layer.cross_attn, src_len, cross_kv)):
            out.append(torch.randn(batch, attn.n_heads, length, attn.d_k))
            out.append(torch.randn(batch, attn.n_heads, length, attn.d_v))
    return src, mask, past_kv, cross_kv


def _export(module: nn.Module, args: tuple, path: Path, inputs: list[str], outputs: list[str],
            axes: dict[str, dict[int, str]]) -> None:
    with warnings.catch_warnings():  # the tracer warns about every Python-side shape check it freezes
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, str(path), dynamo=False, opset_version=OPSET, input_names=inputs,
                          output_names=outputs, dynamic_axes=axes, do_constant_folding=True)


@torch.no_grad()
def export_onnx(model: Transformer, out: str | Path, int8: bool = False) -> list[Path]:
    """Write the three graphs of ``model`` (eval mode, fp32, CPU) into the directory ``out``; with ``int8`` their
    weights are quantised dynamically. Returns the files written."""
    if model.config.copy_attention:
        raise ValueError("the exported ONNX graphs have no copy gate: a copy_attention model (pointer-generator) "
                         "runs in PyTorch only (rosetta translate / serve --model RUN)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model = model.float().cpu().eval()
    src, mask, past, cross = example_inputs(model)
    names = onnx_names(len(model.decoder.layers))
    memory = model.encode(src)[0]
    kv_axes = {name: {0: "batch", 2: "src_len"} for name in names["cross"]}
    _export(EncoderGraph(model), (src,), out / ONNX_FILES["encoder"], ["src_ids"], ["memory"],
            {"src_ids": {0: "batch", 1: "src_len"}, "memory": {0: "batch", 1: "src_len"}})
    _export(CrossKVGraph(model), (memory,), out / ONNX_FILES["cross_kv"], ["memory"], names["cross"],
            {"memory": {0: "batch", 1: "src_len"}, **kv_axes})
    tokens = torch.randint(4, model.config.tgt_vocab_size, (src.shape[0], 1))
    step_axes = {"tokens": {0: "batch"}, "memory_mask": {0: "batch", 1: "src_len"}, "logits": {0: "batch"},
                 **{name: {0: "batch", 2: "past_len"} for name in names["past"]},
                 **{f"new_{name}": {0: "batch", 2: "new_len"} for name in names["past"]}, **kv_axes}
    _export(DecoderStepGraph(model), (tokens, mask, *past, *cross), out / ONNX_FILES["decoder_step"],
            names["inputs"], names["outputs"], step_axes)
    files = [out / name for name in ONNX_FILES.values()]
    if int8:
        quantize_int8(files)
    return files


def quantize_int8(files: list[Path]) -> None:
    """Replace each ONNX file by its dynamically quantised version (int8 weights, QInt8 per tensor)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    for path in files:
        tmp = path.with_suffix(".int8.onnx")
        quantize_dynamic(str(path), str(tmp), weight_type=QuantType.QInt8)
        tmp.replace(path)
