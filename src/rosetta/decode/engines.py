"""Engines for exported translation models: ONNX Runtime and CTranslate2 behind the ``Translator`` interface.

``rosetta export`` (``rosetta.compress.export``) writes a directory that ``rosetta.load`` reads like any model:
config.json (the model's own, plus "format", "exported_from", "quantization"), the tokenizer(s), manifest.json
and the engine's files. This module is the one place that names those files and the ONNX graphs' inputs.

    format        files                                            search
    onnx          encoder.onnx       src_ids (B, S) → memory (B, S, D)            Rosetta's greedy / beam search
                  cross_kv.onnx      memory → per decoder layer keys, values      (``rosetta.decode.search``,
                                     (B, H, S, d), computed once per source        ``rosetta.decode.beam``) run
                  decoder_step.onnx  one token (N, 1), its position = the past     over ``OnnxTransformer``
                                     length, the caches → logits (N, V) and the
                                     self-attention caches one position longer
    ctranslate2   ctranslate2/       CTranslate2's model.bin, vocabularies          CTranslate2's own
                                                                                  (``translate_batch``)

``OnnxTransformer`` offers what the search functions call on a ``Transformer`` (``config``, ``encode``,
``start_decoding``, ``decode_step``, a state with ``reorder`` / ``select_beams``), so greedy and beam search exist
once and an ONNX model decodes exactly as the PyTorch one does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from rosetta.nn.attention import padding_mask
from rosetta.nn.config import ModelConfig

FORMATS = ("onnx", "ctranslate2")
ONNX_FILES = {"encoder": "encoder.onnx", "cross_kv": "cross_kv.onnx", "decoder_step": "decoder_step.onnx"}
CT2_DIR = "ctranslate2"


def onnx_names(n_layers: int) -> dict[str, list[str]]:
    """Input and output names of the decoder-step graph with ``n_layers`` decoder layers."""
    past = [f"{kind}_{i}" for i in range(n_layers) for kind in ("self_k", "self_v")]
    cross = [f"{kind}_{i}" for i in range(n_layers) for kind in ("cross_k", "cross_v")]
    return {"past": past, "cross": cross, "inputs": ["tokens", "memory_mask", *past, *cross],
            "outputs": ["logits", *[f"new_{name}" for name in past]]}


def _threads(threads: int | None) -> int:
    return threads or torch.get_num_threads()


class ExportedModelError(ValueError):
    """An exported model asked for something only the PyTorch model has (attention maps, weights)."""


class _NoAttention:
    """Attention maps need the PyTorch model: the exported graphs return logits only."""

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        raise ExportedModelError(
            f"this is a {self.format} export: it computes translations, not attention maps; use the PyTorch model "
            f"it was exported from ({self.info.get('exported_from')}) for attention")


# ---------------------------------------------------------------------------------------------- ONNX Runtime
class OnnxState:
    """The decoding state of ``OnnxTransformer``: numpy caches per decoder layer, and the source key mask."""

    def __init__(self, self_kv: list[np.ndarray], cross_kv: list[np.ndarray], memory_mask: np.ndarray):
        self.self_kv, self.cross_kv, self.memory_mask = self_kv, cross_kv, memory_mask  # (N, H, T, d) …, (N, S)
        self.batch_size = memory_mask.shape[0]

    def reorder(self, index: torch.Tensor) -> None:
        """Keep batch rows ``index`` (as ``DecoderState.reorder``)."""
        rows = index.cpu().numpy()
        self.self_kv = [a[rows] for a in self.self_kv]
        self.cross_kv = [a[rows] for a in self.cross_kv]
        self.memory_mask = self.memory_mask[rows]
        self.batch_size = len(rows)

    def select_beams(self, rows: torch.Tensor, sentences: torch.Tensor | None = None) -> None:
        """As ``DecoderState.select_beams``, but the exported step graph takes one source row per hypothesis:
        while the rows stay as many and no sentence left, only the self-attention caches move; otherwise
        everything follows ``rows``."""
        if sentences is None and rows.numel() == self.batch_size:
            index = rows.cpu().numpy()
            self.self_kv = [a[index] for a in self.self_kv]
        else:
            self.reorder(rows)


class OnnxTransformer(_NoAttention):
    """The three ONNX graphs of an exported ``Transformer``, run by ONNX Runtime on the CPU."""

    format = "onnx"

    def __init__(self, directory: str | Path, config: ModelConfig, info: dict[str, Any], threads: int | None = None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = _threads(threads), 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.sessions = {name: ort.InferenceSession(str(Path(directory) / file), options,
                                                    providers=["CPUExecutionProvider"])
                         for name, file in ONNX_FILES.items()}
        self.config, self.info = config, info
        self.names = onnx_names(config.n_decoder_layers)

    def eval(self) -> OnnxTransformer:
        return self

    def encode(self, src_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list]:
        """src (B, S) → memory (B, S, D), its key mask (B, 1, 1, S) and no attention weights."""
        (memory,) = self.sessions["encoder"].run(None, {"src_ids": src_ids.cpu().numpy()})
        return torch.from_numpy(memory), padding_mask(src_ids, self.config.pad_id), []

    def start_decoding(self, memory: torch.Tensor, memory_mask: torch.Tensor, src_ids=None) -> OnnxState:
        """Cross-attention keys/values of every decoder layer, once; empty self-attention caches (``src_ids``:
        the searches pass them for a copy model; an exported model has no copy gate)."""
        cross = self.sessions["cross_kv"].run(None, {"memory": memory.numpy()})
        n, config = memory.shape[0], self.config
        heads = [config.attention_heads("decoder", i) for i in range(config.n_decoder_layers)]  # pruned: differ
        empty = [np.zeros((n, h, 0, d), dtype=np.float32) for h in heads for d in (config.head_dim_k,
                                                                                 config.head_dim_v)]
        return OnnxState(empty, cross, memory_mask[:, 0, 0, :].cpu().numpy())

    def decode_step(self, tokens: torch.Tensor, state: OnnxState) -> torch.Tensor:
        """Feed one token per row (N, 1) → logits (N, 1, V); the self-attention caches grow by one position."""
        if tokens.shape != (state.batch_size, 1):
            raise ValueError(f"the ONNX decoder step takes one token per row ({state.batch_size}, 1), "
                             f"got {tuple(tokens.shape)}")
        feeds = {"tokens": tokens.cpu().numpy(), "memory_mask": state.memory_mask,
                 **dict(zip(self.names["past"], state.self_kv)), **dict(zip(self.names["cross"], state.cross_kv))}
        logits, *state.self_kv = self.sessions["decoder_step"].run(None, feeds)
        return torch.from_numpy(logits)[:, None, :]


# ---------------------------------------------------------------------------------------------- CTranslate2
class CT2Engine(_NoAttention):
    """A CTranslate2 model with Rosetta's vocabularies: token ids in, token ids out (CTranslate2 searches).

    Mapping of the decoding options: beam → ``beam_size``; the output limit is CTranslate2's one
    ``max_decoding_length`` per call (the longest allowed in the batch), then each output is cut at its own
    limit (exact for greedy search: a greedy output is a prefix of the longer one). CTranslate2 normalises a
    beam's score by |Y|^α, not GNMT's ((5 + |Y|) / 6)^α, so beam outputs with α ≠ 0 may differ from Rosetta's.
    """

    format = "ctranslate2"

    def __init__(self, directory: str | Path, config: ModelConfig, info: dict[str, Any], src_tok, tgt_tok,
                 device: str = "cpu", compute_type: str = "default", threads: int | None = None):
        import ctranslate2

        self.translator = ctranslate2.Translator(str(Path(directory) / CT2_DIR), device=device,
                                                 compute_type=compute_type, intra_threads=_threads(threads))
        self.config, self.info = config, info
        self.src_tokens = [src_tok.id_to_token(i) for i in range(src_tok.vocab_size)]
        self.tgt_tok = tgt_tok
        self.banned = [[tgt_tok.id_to_token(i)] for i in sorted({config.pad_id, config.bos_id})]  # as Rosetta's

    def eval(self) -> CT2Engine:
        return self

    def translate_ids(self, id_lists: list[list[int]], limits: list[int], beam: int, length_penalty: float,
                      no_repeat_ngram_size: int = 0) -> list[list[int]]:
        """Source ids (each ending in EOS) → output ids (no BOS/EOS), at most ``limits[i]`` tokens each."""
        tokens = [[self.src_tokens[i] for i in ids] for ids in id_lists]
        results = self.translator.translate_batch(
            tokens, beam_size=beam, length_penalty=length_penalty if beam > 1 else 0.0,
            max_decoding_length=max(limits), min_decoding_length=0, max_input_length=0,
            no_repeat_ngram_size=no_repeat_ngram_size, suppress_sequences=self.banned)
        return [[self.tgt_tok.token_to_id(t) for t in r.hypotheses[0]][:limit] for r, limit in zip(results, limits)]


def engine_files(path: Path, fmt: str) -> list[Path]:
    """The files the engine of a ``fmt`` export in ``path`` opens (CTranslate2's folder: its model.bin)."""
    if fmt == "onnx":
        return [path / file for file in ONNX_FILES.values()]
    return [path / CT2_DIR / "model.bin"]


def load_exported(path: Path, info: dict[str, Any], device: str | torch.device = "cpu", int8: bool = False,
                  threads: int | None = None):
    """A ``Translator`` over the exported model in ``path`` (its config.json is ``info``, checked by
    ``rosetta.decode.folder.open_folder``); a missing or unreadable engine file is a ``CheckpointError``."""
    from rosetta.checkpoint import CheckpointError
    from rosetta.decode.folder import model_config, one_line, read_tokenizers
    from rosetta.decode.translator import CT2Translator, Translator

    fmt, device = info.get("format"), torch.device(device)
    if fmt not in FORMATS:
        raise CheckpointError(f"{path / 'config.json'} says format {fmt!r}; known export formats: "
                              f"{', '.join(FORMATS)} (or none: a PyTorch model)")
    config = model_config(path, info)
    src_tok, tgt_tok = read_tokenizers(path, info)
    if fmt == "onnx" and device.type != "cpu":
        raise ValueError(f"{path} is an ONNX export, run by ONNX Runtime on the CPU; use --device cpu")
    if fmt == "onnx" and int8:
        raise ValueError(f"{path} is an ONNX export: int8 is chosen when exporting "
                         "(rosetta export --format onnx --int8), not when loading; drop --int8")
    again = f"export the model again (rosetta export --model {info.get('exported_from') or 'MODEL'} --format {fmt})"
    for file in engine_files(path, fmt):
        if not file.is_file():
            raise CheckpointError(f"{file} is missing: a {fmt} export needs it; {again}")
    try:
        if fmt == "onnx":
            return Translator(OnnxTransformer(path, config, info, threads), src_tok, tgt_tok, info, device)
        compute_type = "int8" if int8 else "default"  # default: as stored (export --quantization)
        engine = CT2Engine(path, config, info, src_tok, tgt_tok, device.type, compute_type, threads)
    except Exception as e:  # ONNX Runtime and CTranslate2 raise their own types for a file they cannot read
        raise CheckpointError(f"{path}: {fmt} cannot load it ({one_line(e)}); if its files are damaged, {again}"
                              ) from None
    return CT2Translator(engine, src_tok, tgt_tok, info, device)
