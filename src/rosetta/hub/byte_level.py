"""A Hugging Face byte-level BPE vocabulary (GPT-2's) behind Rosetta's ``Tokenizer`` interface.

    tokenizer.json                              → the ``tokenizers.Tokenizer`` it serialises, as it is
    vocab.json + merges.txt (+ tokenizer_config.json / special_tokens_map.json)
                                                → BPE(vocab, merges) with GPT-2's pipeline, as GPT2Tokenizer builds it:
        pre-tokenizer  ByteLevel: GPT-2's regex splits words, each UTF-8 byte becomes one of 256 symbols
                       (a space is "Ġ"); add_prefix_space from tokenizer_config.json (default false)
        model          BPE over those symbols (no unknown token: every byte is in the vocabulary)
        decoder        ByteLevel: symbols → bytes → UTF-8 text
        specials       bos / eos / unk / pad (and mask / cls / sep, when named) tokens of tokenizer_config.json,
                       else the family's defaults (GPT-2: <|endoftext|>; BART: <s> </s> <unk> <pad> <mask>), with
                       the lstrip / rstrip / single_word / normalized flags the file gives them

``encode`` adds no special token (GPT-2's tokenizer adds none either: add_bos_token is false), so ids equal
``GPT2TokenizerFast(text).input_ids``; ``decode`` skips special tokens. The ids that pad, start and end a
sequence come from the model's config.json (GPT-2: <|endoftext|> for all three).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tokenizers import AddedToken, decoders, models, pre_tokenizers
from tokenizers import Tokenizer as HFTokenizer

from rosetta.data.tokenizer import FILE_NAME, Tokenizer
from rosetta.models.pretrained import PretrainedError

VOCAB_FILE, MERGES_FILE = "vocab.json", "merges.txt"
CONFIG_FILES = ("tokenizer_config.json", "special_tokens_map.json")
# GPT2Tokenizer's special tokens when tokenizer_config.json names none: <|endoftext|> is bos, eos and unk
SPECIAL_DEFAULTS = {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
                    "pad_token": None}
NAMED_ONLY = ("mask_token", "cls_token", "sep_token")  # special when tokenizer_config.json names them
TOKEN_FLAGS = ("lstrip", "rstrip", "single_word", "normalized")  # an AddedToken's flags as the files store them


class ByteLevelTokenizer(Tokenizer):
    """A pretrained byte-level BPE vocabulary with the model's own pad / bos / eos ids (not Rosetta's <pad> <s>
    </s> at 0-2). The file's own padding and truncation are switched off: callers pad and cut."""

    def __init__(self, hf: HFTokenizer, pad_id: int, bos_id: int, eos_id: int):
        hf.no_padding()
        hf.no_truncation()
        self.hf = hf
        self.pad_id, self.bos_id, self.eos_id = pad_id, bos_id, eos_id

    @classmethod
    def load(cls, path: str | Path, pad_id: int, bos_id: int, eos_id: int,
             specials: dict[str, str | None] = SPECIAL_DEFAULTS) -> ByteLevelTokenizer:
        """The vocabulary in directory ``path`` (tokenizer.json, else vocab.json + merges.txt, whose special tokens
        default to ``specials``); a missing or unreadable one is a ``PretrainedError`` of one line."""
        return cls(read_byte_level(Path(path), specials), pad_id, bos_id, eos_id)


def read_byte_level(path: Path, specials: dict[str, str | None] = SPECIAL_DEFAULTS) -> HFTokenizer:
    """``tokenizers.Tokenizer`` of directory ``path``: tokenizer.json as saved, or built from vocab.json +
    merges.txt the way ``transformers.GPT2Tokenizer`` (or ``RobertaTokenizer``, with BART's ``specials``) builds
    it (module docstring)."""
    if (path / FILE_NAME).is_file():
        try:
            return HFTokenizer.from_file(str(path / FILE_NAME))
        except Exception as e:  # tokenizers raises a bare Exception for a damaged file
            raise PretrainedError(f"{path / FILE_NAME} is not a valid tokenizer.json ({_reason(e)}); "
                                  "copy it again") from e
    if not ((path / VOCAB_FILE).is_file() and (path / MERGES_FILE).is_file()):
        raise PretrainedError(f"{path} has no tokenizer: expected {FILE_NAME}, or {VOCAB_FILE} and {MERGES_FILE}; "
                              "save it there with AutoTokenizer.from_pretrained(NAME).save_pretrained(DIR)")
    settings = _tokenizer_settings(path)
    try:
        bpe = models.BPE.from_file(str(path / VOCAB_FILE), str(path / MERGES_FILE), continuing_subword_prefix="",
                                   end_of_word_suffix="", fuse_unk=False)
    except Exception as e:
        raise PretrainedError(f"{path / VOCAB_FILE} / {MERGES_FILE} cannot be read ({_reason(e)}); "
                              "copy them again") from e
    hf = HFTokenizer(bpe)
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=bool(settings.get("add_prefix_space", False)))
    hf.decoder = decoders.ByteLevel()
    hf.add_special_tokens(_special_tokens(settings, specials))
    return hf


def _reason(error: Exception) -> str:
    """A library's error message on one line (tokenizers' span several), or its type when it has none."""
    return " ".join(str(error).split()) or type(error).__name__


def _tokenizer_settings(path: Path) -> dict[str, Any]:
    """tokenizer_config.json over special_tokens_map.json (either may be missing)."""
    settings: dict[str, Any] = {}
    for name in reversed(CONFIG_FILES):
        file = path / name
        if file.is_file():
            try:
                settings.update(json.loads(file.read_text(encoding="utf-8")))
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise PretrainedError(f"{file} is not valid JSON ({e}); copy it again") from e
    return settings


def _special_tokens(settings: dict[str, Any], defaults: dict[str, str | None] = SPECIAL_DEFAULTS) -> list[AddedToken]:
    """The special tokens: bos / eos / unk / pad (a string or {"content": …}; ``defaults`` for those not named),
    mask / cls / sep when named, and the added tokens tokenizer_config.json lists as special — each with the flags
    (``TOKEN_FLAGS``) the file gives it, else not normalised and not stripped."""
    named = [settings.get(key, default) for key, default in defaults.items()]
    named += [settings[key] for key in NAMED_ONLY if settings.get(key)]
    named += [t for t in (settings.get("added_tokens_decoder") or {}).values() if t.get("special")]
    tokens: dict[str, dict[str, Any]] = {}
    for token in named:
        if not token:
            continue
        token = token if isinstance(token, dict) else {"content": token}
        flags = tokens.setdefault(token["content"], {"normalized": False})
        flags.update({k: bool(token[k]) for k in TOKEN_FLAGS if k in token})
    return [AddedToken(content, special=True, **flags) for content, flags in tokens.items()]
