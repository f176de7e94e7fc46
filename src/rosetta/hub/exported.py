"""The tokenizer files of a translation model that ``rosetta export --format huggingface`` writes, and reads back.

Rosetta's tokenizers are ``tokenizers`` pipelines (BPE, characters, WordPiece: ``rosetta.data.tokenizer``), so
the export keeps them as they are, with what ``transformers`` needs around them:

    tokenizer.json            the source side's pipeline, plus a post-processor that frames a source as the encoder
                              reads it (``frame_source``: ids </s>), so ``AutoTokenizer(text).input_ids`` are the ids
                              ``rosetta translate`` feeds the encoder
    tokenizer_config.json     tokenizer_class PreTrainedTokenizerFast, the special tokens (<pad> <s> </s> <unk>)
    target/tokenizer.json     separate vocabularies only: the target side's, with its own
    target/tokenizer_config.json   tokenizer_config.json; ``AutoTokenizer.from_pretrained(DIR, subfolder="target")``
                              decodes what ``generate`` writes (the top-level tokenizer is the source vocabulary).
                              Pegasus's one concatenated vocabulary (``rosetta.hub.pegasus``): its ids + S
                              (``shift_ids``: the vocabulary, the added tokens, the post-processor's ids)

``read_tokenizers`` gives (source, target) back as Rosetta ``Tokenizer`` objects (``encode`` adds no special
token, so the post-processor does not change what Rosetta reads; a shifted target side with its ids less S
again); a tokenizer.json with other special tokens (one
``transformers`` saved for a Pegasus checkpoint) is read with the ids config.json gives.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer as HFTokenizer
from tokenizers import processors

from rosetta.data.tokenizer import FILE_NAME, Tokenizer
from rosetta.models.pretrained import PretrainedError
from rosetta.special_tokens import SPECIAL_TOKENS, UNK

TARGET_DIR = "target"  # separate vocabularies: the target side's tokenizer files, in this subfolder
CONFIG_NAME = "tokenizer_config.json"


def _framed(tokenizer: Any) -> HFTokenizer:
    """A copy of ``tokenizer``'s ``tokenizers.Tokenizer`` whose post-processor adds what ``frame_source`` adds
    around a source's ids (ids </s>; [CLS] ids [SEP] for a BERT vocabulary)."""
    hf = getattr(tokenizer, "hf", None)
    if not isinstance(hf, HFTokenizer):
        raise ValueError(f"the run's tokenizer ({type(tokenizer).__name__}) is not a tokenizers pipeline; only "
                         "Rosetta's own tokenizers (tokenizer.json) are written to a Hugging Face directory")
    copy = HFTokenizer.from_str(hf.to_str())
    framed = tokenizer.frame_source([-1])  # the -1 marks where the text's ids go
    at = framed.index(-1)
    before, after = framed[:at], framed[at + 1:]
    names = [copy.id_to_token(i) for i in before + after]
    single = " ".join([*names[:len(before)], "$A", *names[len(before):]])
    copy.post_processor = processors.TemplateProcessing(
        single=single, special_tokens=sorted({(n, i) for n, i in zip(names, before + after)}, key=lambda t: t[1]))
    copy.no_padding()
    copy.no_truncation()
    return copy


def _shift_processor(processor: dict[str, Any] | None, offset: int) -> dict[str, Any] | None:
    if processor is None or processor.get("type") == "ByteLevel":  # no ids in it
        return processor
    kind = processor.get("type")
    if kind == "TemplateProcessing":
        for token in processor["special_tokens"].values():
            token["ids"] = [i + offset for i in token["ids"]]
    elif kind == "Sequence":
        processor["processors"] = [_shift_processor(p, offset) for p in processor["processors"]]
    elif kind in ("BertProcessing", "RobertaProcessing"):
        for key in ("sep", "cls"):
            processor[key] = [processor[key][0], processor[key][1] + offset]
    else:
        raise ValueError(f"a {kind} post-processor cannot be renumbered")
    return processor


def shift_ids(tokenizer: HFTokenizer, offset: int) -> HFTokenizer:
    """A copy of ``tokenizer`` whose every id is ``offset`` more (less when negative): the vocabulary of its model
    (BPE, WordPiece, WordLevel: a token → id map), its added tokens, its post-processor's and padding's ids; the
    text it reads and writes is unchanged. ValueError for what has no id map (Unigram's list of pieces) or would
    go below 0."""
    data = json.loads(tokenizer.to_str())
    model = data.get("model") or {}
    if not isinstance(model.get("vocab"), dict):
        raise ValueError(f"a {model.get('type')} vocabulary has no token → id map to renumber")
    model["vocab"] = {token: i + offset for token, i in model["vocab"].items()}
    for token in data.get("added_tokens") or []:
        token["id"] += offset
    data["post_processor"] = _shift_processor(data.get("post_processor"), offset)
    if data.get("padding"):
        data["padding"]["pad_id"] += offset
    lowest = min([*model["vocab"].values(), *(t["id"] for t in data.get("added_tokens") or [])], default=0)
    if lowest < 0:
        raise ValueError(f"renumbered by {offset}, an id would be {lowest}")
    return HFTokenizer.from_str(json.dumps(data, ensure_ascii=False))


def fast_tokenizer_settings(hf: Any, config: Any, offset: int = 0) -> dict[str, Any]:
    """tokenizer_config.json's settings for ``AutoTokenizer`` over a tokenizer.json (``hf``, a ``tokenizers``
    Tokenizer): PreTrainedTokenizerFast with the model's pad / bos / eos tokens (their ids + ``offset``), and <unk>
    where the vocabulary has it."""
    specials = {name: hf.id_to_token(i + offset) for name, i in (("pad_token", config.pad_id),
                                                                 ("bos_token", config.bos_id),
                                                                 ("eos_token", config.eos_id))}
    if hf.token_to_id(UNK) is not None:
        specials["unk_token"] = UNK
    return {"tokenizer_class": "PreTrainedTokenizerFast", **{k: v for k, v in specials.items() if v}}


def write_settings(directory: Path, settings: dict[str, Any]) -> None:
    """``settings`` as ``directory``'s tokenizer_config.json."""
    (directory / CONFIG_NAME).write_text(json.dumps(settings, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _write_one(directory: Path, tokenizer: Any, config: Any, offset: int = 0) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    hf = _framed(tokenizer)
    if offset:
        hf = shift_ids(hf, offset)
    hf.save(str(directory / FILE_NAME))
    write_settings(directory, {**fast_tokenizer_settings(hf, config, offset), "model_max_length": config.max_len,
                               "clean_up_tokenization_spaces": False})


def write_tokenizers(out: Path, source: Any, target: Any, config: Any, target_offset: int = 0) -> None:
    """The source tokenizer in ``out``, and (separate vocabularies) the target's in ``out/target``, its ids
    + ``target_offset`` (Pegasus's concatenated vocabulary: S; then even one joint vocabulary gets a target/)."""
    _write_one(out, source, config)
    if target_offset or (target is not None and target is not source and target != source):
        _write_one(out / TARGET_DIR, source if target is None else target, config, target_offset)


def _read_one(file: Path, specials: tuple[int, int, int], shift: int = 0) -> Tokenizer:
    """tokenizer.json (its ids less ``shift``) as a Rosetta ``Tokenizer`` (<pad> <s> </s> <unk> at ids 0–3, as
    Rosetta's exports have them), else wrapped with ``specials``: config.json's pad / decoder start / eos ids."""
    from rosetta.hub.byte_level import ByteLevelTokenizer  # any tokenizer.json, with the model's own special ids

    try:
        hf = HFTokenizer.from_file(str(file))
    except Exception as e:  # tokenizers raises a bare Exception for a damaged file
        raise PretrainedError(f"{file} is not a valid tokenizer.json ({' '.join(str(e).split())}); copy it again"
                              ) from e
    if shift:
        try:
            hf = shift_ids(hf, -shift)
        except ValueError as e:
            raise PretrainedError(f"{file}: its ids do not start at the target's first id {shift} ({e})") from e
    if [hf.token_to_id(t) for t in SPECIAL_TOKENS] == list(range(len(SPECIAL_TOKENS))):
        return Tokenizer(hf)
    return ByteLevelTokenizer(hf, *specials)


def has_tokenizer_json(path: Path) -> bool:
    return (Path(path) / FILE_NAME).is_file()


def read_tokenizers(path: Path, hf_config: dict[str, Any], target_offset: int = 0) -> tuple[Tokenizer, Tokenizer]:
    """(source, target) of a directory written by ``write_tokenizers``: tokenizer.json, and target/tokenizer.json
    when the vocabularies are separate (else the same object twice); ``target_offset`` S: the target's ids are
    S more in the file (Pegasus's concatenated vocabulary) and come back less S. Each must fit config.json's
    embeddings."""
    path = Path(path)
    eos = hf_config.get("eos_token_id", 1)
    specials = tuple(i - target_offset for i in (  # config.json's ids are the target's (+ S); both sides have them
        hf_config.get("pad_token_id", 0), hf_config.get("decoder_start_token_id", 0),
        eos[0] if isinstance(eos, list) else eos))
    source = _read_one(path / FILE_NAME, specials)
    target_file = path / TARGET_DIR / FILE_NAME
    if not target_file.is_file():
        if target_offset:
            raise PretrainedError(f"{target_file} not found: config.json's vocabulary is a source and a target one "
                                  "concatenated, and the target's tokenizer lives there")
        target_file = path / FILE_NAME
    target = _read_one(target_file, specials, target_offset) if target_file != path / FILE_NAME else source
    if target_offset:
        sizes = (target_offset, hf_config["vocab_size"] - target_offset)
    else:
        sizes = (hf_config["vocab_size"], hf_config.get("decoder_vocab_size") or hf_config["vocab_size"])
    for side, tok, size, file in (("source", source, sizes[0], path / FILE_NAME),
                                  ("target", target, sizes[1], target_file)):
        if tok.vocab_size > size:
            raise PretrainedError(f"{file} has {tok.vocab_size} tokens but config.json's {side} side has {size} "
                                  "embeddings; the files belong to different models")
    return source, target
