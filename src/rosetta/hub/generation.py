"""A Hugging Face directory's decoding options (generation_config.json) as Rosetta's ``DecodeOptions`` fields.

    generation_config.json              DecodeOptions (``rosetta.decode.defaults``; the dict's keys are its fields)
    num_beams (default 1)           →   beam
    length_penalty (default 1.0)    →   length_penalty, with length_norm "hf": score / |Y|^α
    max_new_tokens, or max_length   →   max_len = max_new_tokens, or max_length − 1 (max_length counts the
      (default 20)                      decoder's start token)
    forced_eos_token_id             →   force_eos: the last token the limit allows is EOS
    forced_bos_token_id             →   force_bos: the first output token (BART: <s>, after the start token </s>)
    min_new_tokens, min_length      →   min_len = the larger of min_new_tokens and min_length − 1 (the start token)
    early_stopping (default false)  →   early_stopping ("never" is decoded as false, with a warning)
    renormalize_logits              →   renormalize
    no_repeat_ngram_size            →   no_repeat_ngram_size
    bad_words_ids [[pad]], [[start]] →  nothing to do: Rosetta's searches never produce pad, nor the decoder's start
                                        token unless it is EOS (other bans: a warning)

A directory without generation_config.json keeps these options in config.json (as ``transformers`` reads it).

config.json's ``task_specific_params`` (t5-small's, and what ``rosetta export --format huggingface`` writes for a
text-to-text run) name translation tasks and their prefixes: {"translation_en_to_de": {"prefix": "translate
English to German: "}}. ``task_specific_params`` writes a run's tasks so; ``tasks_from_params`` reads them back as
a run's ``tasks`` (corpus, src_lang, tgt_lang, prefix; the corpus None unless the name ends with it), so that
``rosetta evaluate --corpus NAME`` puts the right prefix on every source (``rosetta.tasks.text_to_text.task_for``).
Rosetta's searches with these options give what ``generate(num_beams=…)`` gives (tests/test_hf_marian.py,
tests/test_hf_bart.py).
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path
from typing import Any

from rosetta.models.pretrained import PretrainedError

GENERATION_FILE = "generation_config.json"
HF_MAX_LENGTH = 20  # ``GenerationConfig.max_length`` when a directory does not say


def read_generation_config(path: Path, hf: dict[str, Any]) -> dict[str, Any]:
    """generation_config.json of ``path``, or config.json's dict ``hf`` when there is none."""
    file = path / GENERATION_FILE
    if not file.is_file():
        return hf
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise PretrainedError(f"{file} is not valid JSON ({e}); copy it again or delete it") from e


def generation_options(path: Path, hf: dict[str, Any]) -> dict[str, Any]:
    """The ``DecodeOptions`` fields (a dict) that make Rosetta's search decode as ``generate`` does with the
    directory's generation config (the module docstring has the map)."""
    gen = read_generation_config(path, hf)
    pad = gen.get("pad_token_id", hf.get("pad_token_id"))
    start = gen.get("decoder_start_token_id", hf.get("decoder_start_token_id"))
    eos = gen.get("eos_token_id", hf.get("eos_token_id"))
    never = [[pad]] + ([[start]] if start is not None and start != eos and [start] != eos else [])
    banned = [ids for ids in gen.get("bad_words_ids") or [] if ids not in never]
    if banned:
        warnings.warn(f"{path}: bad_words_ids {banned[:4]} are not applied (Rosetta bans only the pad and start "
                      "tokens)", stacklevel=2)
    max_len = gen.get("max_new_tokens") or (gen.get("max_length") or HF_MAX_LENGTH) - 1
    early = gen.get("early_stopping", False)
    if early not in (True, False):
        warnings.warn(f"{path}: early_stopping={early!r} is decoded as early_stopping=false", stacklevel=2)
    return {
        "beam": gen.get("num_beams") or 1,
        "length_penalty": float(gen.get("length_penalty", 1.0)),
        "length_norm": "hf",
        "max_len": max(max_len, 1),
        "force_eos": gen.get("forced_eos_token_id") is not None,
        "force_bos": gen.get("forced_bos_token_id"),
        "min_len": max(gen.get("min_new_tokens") or 0, (gen.get("min_length") or 0) - 1, 0),
        "early_stopping": early is True,
        "renormalize": bool(gen.get("renormalize_logits", False)),
        "no_repeat_ngram_size": gen.get("no_repeat_ngram_size") or 0,
    }


TRANSLATION_TASK = re.compile(r"translation_([a-z]{2,3})_to_([a-z]{2,3})(?:_(.+))?")  # …_CORPUS: a second one


def task_specific_params(tasks: list[dict[str, str]]) -> dict[str, dict[str, str]]:
    """A text-to-text run's tasks → config.json's ``task_specific_params``: the prefix under the pipeline name a
    T5 user knows ("translation_en_to_de"; a second task with the same languages: "…_CORPUS")."""
    params: dict[str, dict[str, str]] = {}
    for task in tasks:
        name = f"translation_{task['src_lang']}_to_{task['tgt_lang']}"
        params[f"{name}_{task['corpus']}" if name in params else name] = {"prefix": task["prefix"]}
    return params


def tasks_from_params(hf: dict[str, Any]) -> list[dict[str, str | None]]:
    """config.json's translation ``task_specific_params`` that carry a prefix → a run's ``tasks`` (the corpus
    None unless the name ends with one); other entries (summarisation's decoding options, …) are left out."""
    tasks = []
    for name, params in (hf.get("task_specific_params") or {}).items():
        match = TRANSLATION_TASK.fullmatch(name)
        if match and isinstance(params, dict) and isinstance(params.get("prefix"), str):
            src_lang, tgt_lang, corpus = match.groups()
            tasks.append({"corpus": corpus, "src_lang": src_lang, "tgt_lang": tgt_lang, "prefix": params["prefix"]})
    return tasks
