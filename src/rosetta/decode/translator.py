"""The user-facing entry point: ``rosetta.load(DIR).translate(["I am a student."])``.

    text ─ tokenizer.encode ─ model.encode (once) ─ beam search over model.decode_step ─ tokenizer.decode
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch

from rosetta import checkpoint as ckpt
from rosetta.data.batching import pad
from rosetta.decode.allocator import keep_freed_memory
from rosetta.decode.beam import beam_search
from rosetta.decode.defaults import DecodeOptions, max_source_tokens
from rosetta.decode.folder import build, decode_options, model_config, open_folder, read_huggingface, read_tokenizers
from rosetta.decode.precision import for_inference, resolve_inference_precision
from rosetta.decode.search import greedy_search, max_positions, output_limits
from rosetta.models.pretrained import is_huggingface_dir
from rosetta.models.transformer import Transformer
from rosetta.nn.config import ModelConfig


class Translator:
    """A trained translation model with its tokenizers and decoding defaults."""

    def __init__(self, model: Transformer, src_tokenizer, tgt_tokenizer, info: dict[str, Any],
                 device: torch.device, max_src_tokens: int | None = None):
        self.model, self.src_tokenizer, self.tgt_tokenizer = model.eval(), src_tokenizer, tgt_tokenizer
        self.info, self.device = info, device
        self.config: ModelConfig = model.config
        self.decode_options = DecodeOptions.from_dict(info.get("decode"))  # the recipe's [decode], saved
        # a learned table's first rows are skipped (BART: 2), so a source has that many positions fewer
        self.max_src_tokens = max_src_tokens or max_source_tokens(max_positions(self.config))
        self.src_lang = info.get("src_lang")
        self.tgt_lang = info.get("tgt_lang")
        self.precision = "fp32"  # what ``load`` prepared the model in (``rosetta.decode.precision``)

    # ------------------------------------------------------------------ encoding
    def encode_source(self, text: str, warn: bool = True) -> list[int]:
        ids = self.src_tokenizer.encode(text)
        if len(ids) > self.max_src_tokens:
            if warn:
                warnings.warn(f"source of {len(ids)} tokens truncated to the model's limit of "
                              f"{self.max_src_tokens} tokens: {text[:40]!r}…", stacklevel=3)
            ids = ids[: self.max_src_tokens]
        return self.src_tokenizer.frame_source(ids)  # ids + </s>, or [CLS] ids [SEP] for a BERT vocabulary

    def _src_tensor(self, id_lists: list[list[int]]) -> torch.Tensor:
        return pad(id_lists, self.config.pad_id).to(self.device)

    # ------------------------------------------------------------------ translation
    @torch.inference_mode()
    def translate(self, texts: list[str], beam: int | None = None, max_length: int | None = None,
                  batch_size: int = 64, length_penalty: float | None = None,
                  no_repeat_ngram_size: int | None = None) -> list[str]:
        """Translate each text; an empty (or blank) text gives an empty translation. Order is kept.
        Options left None come from the model's saved [decode] options (``DecodeOptions``)."""
        if isinstance(texts, str):
            texts = [texts]
        options = self.decode_options
        beam = beam or options.beam
        max_length = max_length or options.max_len
        alpha = options.length_penalty if length_penalty is None else length_penalty
        ratio, offset = options.max_len_ratio, options.max_len_offset
        no_repeat = options.no_repeat_ngram_size if no_repeat_ngram_size is None else no_repeat_ngram_size
        results = [""] * len(texts)
        todo = [(i, self.encode_source(t)) for i, t in enumerate(texts) if t.strip()]
        todo.sort(key=lambda item: len(item[1]))  # similar lengths together: less padding
        for start in range(0, len(todo), batch_size):
            chunk = todo[start : start + batch_size]
            src = self._src_tensor([ids for _, ids in chunk])
            kwargs = dict(max_len=max_length, max_len_ratio=None if max_length else ratio, max_len_offset=offset,
                          no_repeat_ngram_size=no_repeat)
            for (i, _), ids in zip(chunk, self._search(src, beam, alpha, **kwargs)):
                results[i] = self.tgt_tokenizer.decode(ids)
        return results

    def _search(self, src: torch.Tensor, beam: int, alpha: float, **options: Any) -> list[list[int]]:
        """Output ids of a padded batch of sources (B, S): greedy (beam 1) or beam search over ``self.model``
        (a ``Transformer``, or an exported model's engine offering the same interface). A Hugging Face model's
        options add ``generate``'s conventions (``DecodeOptions``: force_eos, force_bos, min_len, length_norm,
        renormalize, early_stopping)."""
        hf = self.decode_options
        forced = dict(force_eos=hf.force_eos, force_bos=hf.force_bos, min_len=hf.min_len)
        if beam <= 1:
            return greedy_search(self.model, src, **forced, **options)
        return beam_search(self.model, src, beam_size=beam, length_penalty=alpha, length_norm=hf.length_norm,
                           renormalize=hf.renormalize, early_stopping=hf.early_stopping, **forced, **options)

    @torch.inference_mode()
    def attention(self, text: str, beam: int = 1) -> dict[str, Any]:
        """Translate ``text`` and return its tokens and every attention map of the teacher-forced pass.

        Returns {"source_tokens", "target_tokens", "translation", "encoder", "decoder", "cross"}; each map
        list is per layer, a nested list (H, Tq, Tk) of floats. Source tokens end with </s>; target tokens
        start with <s> (the decoder input), so row t of a decoder map is the step that produced token t+1.

        A copy model (``copy_attention``) adds, per row t: "p_gen", the probability that token t+1 was generated
        rather than copied, and "copy_from", the source position its copy distribution weighs most (the last
        layer's cross-attention averaged over heads, as ``Transformer.copy_output`` mixes it).
        """
        src_ids = self.encode_source(text)
        translation = self.translate([text], beam=beam)[0]
        forced = [] if self.decode_options.force_bos is None else [self.decode_options.force_bos]  # BART's <s>
        tgt_ids = [self.config.bos_id, *forced, *self.tgt_tokenizer.encode(translation)]
        src = self._src_tensor([src_ids])
        tgt = torch.tensor([tgt_ids], device=self.device)
        gate = getattr(self.model, "copy_gate", None)
        gates: list[torch.Tensor] = []  # the gate's logits (1, T, 1), caught on their way through the pass
        hook = gate.register_forward_hook(lambda _m, _i, out: gates.append(out)) if gate is not None else None
        try:
            _, maps = self.model(src, tgt, return_attention=True)
        finally:
            if hook is not None:
                hook.remove()
        as_lists = {kind: [layer[0].float().cpu().tolist() for layer in layers] for kind, layers in maps.items()}
        copying = {}
        if gates:
            copying = {"p_gen": torch.sigmoid(gates[-1][0, :, 0].float()).cpu().tolist(),
                       "copy_from": maps["cross"][-1][0].mean(dim=0).argmax(dim=-1).cpu().tolist()}
        return {
            "source_tokens": [self.src_tokenizer.id_to_token(i) for i in src_ids],
            "target_tokens": [self.tgt_tokenizer.id_to_token(i) for i in tgt_ids],
            "translation": translation,
            **as_lists,
            **copying,
        }


class CT2Translator(Translator):
    """A ``Translator`` whose search is CTranslate2's (``rosetta.decode.engines.CT2Engine``): the same text in,
    text out, output limits and decoding defaults; only ``_search`` differs."""

    def _search(self, src: torch.Tensor, beam: int, alpha: float, no_repeat_ngram_size: int = 0,
                **limits: Any) -> list[list[int]]:
        caps = output_limits(src, self.config.pad_id, cap=self.config.max_len, **limits)
        if self.decode_options.force_eos:  # generate's forced_eos: the last token the limit allows is EOS
            caps = (caps - 1).clamp(min=0)
        id_lists = [row[row != self.config.pad_id].tolist() for row in src.cpu()]
        return self.model.translate_ids(id_lists, caps.tolist(), beam, alpha, no_repeat_ngram_size or 0)


def load(directory: str | Path, device: str | torch.device = "cpu", int8: bool = False,
         threads: int | None = None, precision: str = "fp32", sentences: int = 64,
         beam: int | None = None) -> Translator:
    """Load a trained translation model (model dir, checkpoint dir, or training run dir), or one exported by
    ``rosetta export`` (ONNX Runtime or CTranslate2 runs it, with ``threads`` threads; default: torch's).

    ``precision``: fp32, bf16, int8 or auto (``rosetta.decode.precision``; ``int8=True`` is precision int8);
    auto decides with the rows a decoding step will hold: ``sentences`` per batch (64: a batch job's; a server
    answering one request: 1) × ``beam`` (default: the model's own).

    A broken folder (missing, truncated or corrupt files, a config.json that does not fit the weights, no
    tokenizer, pickle weights) raises ``CheckpointError`` with one line naming the file and the fix
    (``rosetta.decode.folder``).

    A Hugging Face directory (config.json with a ``model_type``) of a translation family (``rosetta.hub``:
    Marian / opus-mt) loads into Rosetta's ``Transformer`` and decodes as ``generate`` would, with the options of
    its generation_config.json (``translator_from_huggingface``)."""
    if is_huggingface_dir(directory):
        return translator_from_huggingface(directory, device, int8, precision, sentences, beam)
    path, info = open_folder(directory)
    return translator_from_folder(path, info, device, int8, threads, precision, sentences, beam)


def translator_from_folder(path: Path, info: dict[str, Any], device: str | torch.device = "cpu", int8: bool = False,
                           threads: int | None = None, precision: str = "fp32", sentences: int = 64,
                           beam: int | None = None) -> Translator:
    """``load`` of a folder ``open_folder`` has checked (``info``: its config.json): a fresh model, returned only
    when its weights and tokenizers are all read."""
    family = ckpt.model_family(info)
    if family != "translation":
        raise ValueError(f"{path} holds a {family!r} model; rosetta.load() loads translation models")
    options = decode_options(path, info)
    if info.get("format", "pytorch") != "pytorch":
        from rosetta.decode.engines import load_exported

        return load_exported(path, info, device, int8 or precision == "int8", threads)
    keep_freed_memory()  # this process decodes: reuse freed blocks instead of faulting in new pages each step
    config = model_config(path, info)
    model = build(path, lambda: Transformer(config))
    src_tok, tgt_tok = read_tokenizers(path, info)
    ckpt.load_weights(path, model, "cpu")
    return _ready(model, src_tok, tgt_tok, info, device, "int8" if int8 else precision,
                  sentences * (beam or options.beam))


def _ready(model: Transformer, src_tok, tgt_tok, info: dict[str, Any], device: str | torch.device, precision: str,
           rows: int) -> Translator:
    """The Translator of a loaded model, moved to ``device`` in ``precision`` (auto decides by the ``rows`` a
    decoding step holds)."""
    device = torch.device(device)
    precision = resolve_inference_precision(precision, device, rows)
    model = for_inference(model.to(device).eval(), precision)
    translator = Translator(model, src_tok, tgt_tok, info, device)
    translator.precision = precision
    return translator


def translator_from_huggingface(directory: str | Path, device: str | torch.device = "cpu", int8: bool = False,
                                precision: str = "fp32", sentences: int = 64, beam: int | None = None) -> Translator:
    """A Hugging Face translation directory (``rosetta.hub``'s "translation" families) as a Translator
    whose decoding options are its generation_config.json's (``generation_options``). Problems are the
    ``CheckpointError`` of ``read_huggingface``: one line naming the file and the fix."""
    from rosetta.hub.generation import generation_options

    keep_freed_memory()  # as translator_from_folder: this process decodes
    loaded = read_huggingface(directory)
    if loaded.family != "translation":
        raise ValueError(f"{directory} holds a Hugging Face {loaded.info.get('model_type')!r} model of the "
                         f"{loaded.family!r} family; rosetta.load() loads translation models (load_any reads any)")
    path = Path(loaded.info["path"])
    info = {"family": "translation", "model": loaded.model.config.to_dict(), "tokenizer": "pretrained",
            **loaded.info, "decode": generation_options(path, loaded.hf_config)}
    rows = sentences * (beam or info["decode"].get("beam", 1))
    return _ready(loaded.model, loaded.tokenizer, loaded.target_tokenizer, info, device,
                  "int8" if int8 else precision, rows)
