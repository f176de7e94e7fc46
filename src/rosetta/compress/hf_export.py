"""``rosetta export --format huggingface``: a Rosetta model → a directory ``transformers``' Auto classes read.

    vit          ViTForImageClassification: config.json (``hf_vit_config``, id2label from the run's labels),
                 model.safetensors (``hf_vit_state_dict``: our fused qkv split into query, key, value) and
                 preprocessor_config.json (ViTImageProcessor: resize to the model's size, rescale 1/255, the run's
                 mean and std), so ``AutoModelForImageClassification`` and ``AutoImageProcessor`` read it
    lm           GPT2LMHeadModel (``rosetta.hub.gpt2``: learned positions, Pre-LN, GELU, tied output — other layouts
                 are refused by its ``config_to_hf`` with the flag that differs) and the run's own tokenizer.json
                 with a tokenizer_config.json naming PreTrainedTokenizerFast and the special tokens, so
                 ``AutoTokenizer`` gives the same ids
    translation  (``rosetta.compress.hf_translation``; its ``TARGETS`` picks the family by the positions) the same
                 function as MarianMTModel (Post-LN; joint or separate vocabularies) or
                 PegasusForConditionalGeneration (Pre-LN, Rosetta's default recipes; a joint vocabulary, or separate
                 ones concatenated into one: target ids + S), for ``AutoModelForSeq2SeqLM``: zero biases where ours
                 has none, the residual stream permuted when the model's sinusoid is interleaved (theirs is all
                 sines, then all cosines); a run in T5's layout (relative positions, RMSNorm Pre-LN, no biases, one
                 shared table: configs/t5-multitask.toml) as T5ForConditionalGeneration (``t5_config_to_hf`` /
                 ``t5_weights_to_hf`` through the T5 family; the run's own pad / decoder start <s> / eos ids; a
                 text-to-text run's prefixes in config.json's ``task_specific_params``). Each with the run's
                 tokenizer.json (target/tokenizer.json for a separate target vocabulary) framing a source as
                 ``rosetta translate`` does (ids </s>), and a generation_config.json from the run's [decode]
    encoder      (``rosetta.compress.hf_encoder``) BERT, RoBERTa (positions from pad + 1) or DistilBERT (no token
                 types) by the layout, the class by the head: a classifier read through BERT's [CLS] pooler →
                 …ForSequenceClassification (id2label from the run's labels), the span head →
                 …ForQuestionAnswering, the MLM head → …ForMaskedLM, none → …Model (``AutoModel``); the run's
                 tokenizer.json with a tokenizer_config.json (BertTokenizerFast and a vocab.txt for BERT's
                 WordPiece pipeline, else PreTrainedTokenizerFast), so ``AutoTokenizer`` gives the same ids

A model fine-tuned from a Hugging Face checkpoint (``[model] pretrained = DIR``: Marian, Pegasus, GPT-2, BART,
T5 / mT5, …) goes back to its checkpoint's family when that family has a way back (``config_to_hf``,
``weights_to_hf``; T5's are ``rosetta.models.t5.t5_config_to_hf`` / ``t5_weights_to_hf``: relative positions, RMSNorm
and gated FFNs included), with the checkpoint's own tokenizer files (T5: spiece.model); an encoder goes through its
exporter (its head decides the class), which starts from the recorded config.json when there is one.

Refused, with the reason, in one line: an encoder classifier that reads the mean of its tokens (``REFUSED``:
BertForSequenceClassification reads the pooled [CLS]; fine-tune with ``[model] pooler = true``), an encoder with
two heads, encoder layouts BERT's blocks do not compute (``rosetta.hub.bert.check_layout``:
Pre-LN, rotary / sinusoidal positions, RMSNorm, no biases, pruned heads, …), translation layouts neither
Marian nor Pegasus computes (``hf_translation.REQUIRED``: rotary / learned positions, RMSNorm, gated FFNs,
copy_attention, pruned heads, …) and relative positions with a flag T5 lacks (``rosetta.models.t5.FIXED``: biases,
LayerNorm, Post-LN, scaled attention, separate vocabularies, …), each naming the flag. The directory is written
beside OUT and renamed into place when complete; ``rosetta`` reads it back too (``rosetta.load(OUT)``, ``rosetta
translate --model OUT``).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from rosetta import checkpoint as ckpt
from rosetta.compress.hf_encoder import REFUSED, export_encoder
from rosetta.decode.loading import LoadedModel, load_any

__all__ = ["EXPORTERS", "REFUSED", "export_huggingface"]


def _vit(loaded: LoadedModel, out: Path) -> None:
    from safetensors.torch import save_file

    from rosetta.hub.vit import PREPROCESSOR_FILE
    from rosetta.models.pretrained import WEIGHTS_FILE
    from rosetta.models.vit import hf_vit_config, hf_vit_state_dict

    model, image = loaded.model, loaded.model.image
    labels = [str(x) for x in loaded.info.get("labels") or range(model.num_labels)]
    config = {**hf_vit_config(model), "id2label": dict(enumerate(labels)),
              "label2id": {name: i for i, name in enumerate(labels)}}
    (out / ckpt.CONFIG_FILE).write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    save_file(hf_vit_state_dict(model), str(out / WEIGHTS_FILE), metadata={"format": "pt"})
    processor = {"image_processor_type": "ViTImageProcessor", "do_resize": True,
                 "size": {"height": image.image_size, "width": image.image_size}, "resample": 3,  # bicubic
                 "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
                 "image_mean": list(image.mean), "image_std": list(image.std)}
    (out / PREPROCESSOR_FILE).write_text(json.dumps(processor, indent=2) + "\n", encoding="utf-8")


def _gpt2(loaded: LoadedModel, out: Path) -> None:
    from rosetta.hub.exported import fast_tokenizer_settings, write_settings
    from rosetta.hub.gpt2 import save_gpt2

    save_gpt2(loaded.model, out)  # ValueError naming the flag when the layout is not GPT-2's
    tokenizer = loaded.tokenizer
    tokenizer.save(out)
    write_settings(out, fast_tokenizer_settings(getattr(tokenizer, "hf", tokenizer), loaded.model.config))


def _way_back(loaded: LoadedModel):
    """The ``HFFamily`` a model fine-tuned from a Hugging Face checkpoint came from, when that family has a way
    back (``config_to_hf`` and ``weights_to_hf``); None for any other model, and for an encoder, whose head
    decides the class (``export_encoder``)."""
    from rosetta.hub.registry import hf_family
    from rosetta.hub.runs import recorded

    record = recorded(loaded.info)
    if not record or loaded.family == "encoder":
        return None
    spec = hf_family(record.get("model_type"))
    return spec if spec.config_to_hf is not None and spec.weights_to_hf is not None else None


def _recorded(loaded: LoadedModel, out: Path) -> None:
    """A model fine-tuned from a Hugging Face checkpoint, back in that checkpoint's family: its config.json with
    the sizes and flags ``config_to_hf`` gives, the weights through ``weights_to_hf``, and the checkpoint's
    tokenizer, processor and generation files that the run copied (``rosetta.hub.runs``)."""
    from safetensors.torch import save_file

    from rosetta.hub.runs import copy_tokenizer_files, recorded
    from rosetta.models.pretrained import WEIGHTS_FILE

    spec, model = _way_back(loaded), loaded.model
    config = {**recorded(loaded.info)["config"], **spec.config_to_hf(model.config)}
    (out / ckpt.CONFIG_FILE).write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    save_file(spec.weights_to_hf(model.state_dict(), model.config), str(out / WEIGHTS_FILE), metadata={"format": "pt"})
    copy_tokenizer_files(loaded.info["path"], out)


def _translation(loaded: LoadedModel, out: Path) -> None:
    from rosetta.compress.hf_translation import export_translation

    export_translation(loaded, out)  # ValueError naming the flag when neither Marian, Pegasus nor T5 computes it


EXPORTERS: dict[str, Any] = {"vit": _vit, "lm": _gpt2, "translation": _translation, "encoder": export_encoder}


def export_huggingface(model_dir: str | Path, out: str | Path) -> Path:
    """Write the Rosetta model in ``model_dir`` as a Hugging Face directory ``out`` (new or empty)."""
    out = Path(out)
    if out.exists() and not (out.is_dir() and not any(out.iterdir())):
        raise ValueError(f"{out} exists and is not empty; choose a new --out directory")
    loaded = load_any(model_dir)
    if loaded.info.get("source") == "huggingface":
        raise ValueError(f"{model_dir} already is a Hugging Face directory")
    exporter = _recorded if _way_back(loaded) is not None else EXPORTERS.get(loaded.family)
    if exporter is None:
        raise ValueError(f"{model_dir}: cannot export a {loaded.family!r} model to Hugging Face: it has no Hugging "
                         "Face counterpart")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        exporter(loaded, tmp)
        if out.exists():
            out.rmdir()
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
