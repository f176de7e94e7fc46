"""T5, flan-T5 and mT5 (``model_type: t5`` / ``mt5``) into the encoder–decoder ``Transformer``.

The layout is flags on the shared blocks and its maps live with the model (``rosetta.models.t5``):
``t5_config_from_hf`` (relative position buckets, unscaled attention, RMSNorm Pre-LN, ReLU or gated GELU, tied
and scaled or untied output, pad = decoder start) and ``t5_weights_from_hf`` (q, k, v fused; one relative-bias
table per stack), and their inverses ``t5_config_to_hf`` / ``t5_weights_to_hf``, the way back of a model
fine-tuned from a T5 directory (``rosetta export --format huggingface``). What this module adds is the
tokenizer and the registration:

    spiece.model (SentencePiece)   →  ``SentencePieceVocabTokenizer`` numbering pieces by the model's own ids
                                      (pad 0, </s> 1, <unk> 2), source and target alike; a source ends with </s>
    tokenizer.json, no spiece.model →  the tokenizer of a Rosetta run in T5's layout that ``rosetta export
                                      --format huggingface`` wrote (``rosetta.hub.exported.read_tokenizers``:
                                      Rosetta's ids, <pad> 0 <s> 1 </s> 2 <unk> 3; config.json's decoder start <s>)

T5's sentinel tokens (``<extra_id_0>`` … at the top of the vocabulary) are special tokens: decoding skips them,
as ``skip_special_tokens`` does; written inside a text they are not read as one token (span-corruption inputs
are not what ``translate`` takes). A task is chosen by its prefix, as T5 was trained:
``rosetta translate --model t5-small "translate English to German: The house is wonderful."``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rosetta.data.sentencepiece import SentencePieceVocabTokenizer
from rosetta.hub.exported import has_tokenizer_json, read_tokenizers
from rosetta.hub.registry import register_hf
from rosetta.models.pretrained import PretrainedError
from rosetta.models.t5 import t5_config_from_hf, t5_config_to_hf, t5_weights_from_hf, t5_weights_to_hf
from rosetta.nn.config import ModelConfig

SPIECE = "spiece.model"


def t5_tokenizer(path: Path, hf: dict[str, Any]) -> SentencePieceVocabTokenizer:
    """The directory's spiece.model, its pieces numbered by their SentencePiece ids."""
    import sentencepiece

    file = path / SPIECE
    if not file.is_file():
        raise PretrainedError(f"{file} not found: a T5 directory holds its SentencePiece model as {SPIECE}")
    try:
        spm = sentencepiece.SentencePieceProcessor(model_file=str(file))
    except (RuntimeError, OSError) as e:
        raise PretrainedError(f"{file} is not a SentencePiece model ({str(e).splitlines()[0]}); copy it again"
                              ) from e
    if spm.get_piece_size() > hf["vocab_size"]:
        raise PretrainedError(f"{file} has {spm.get_piece_size()} pieces but config.json's model has "
                              f"{hf['vocab_size']} embeddings; the files belong to different models")
    vocab = {spm.id_to_piece(i): i for i in range(spm.get_piece_size())}
    try:
        return SentencePieceVocabTokenizer(spm, vocab)
    except ValueError as e:
        raise PretrainedError(f"{file}: {e} (T5 numbers <pad> 0, </s> 1, <unk> 2)") from e


def _register(model_type: str) -> None:
    @register_hf(model_type, family="translation")
    class T5:
        config_from_hf = staticmethod(t5_config_from_hf)

        @staticmethod
        def weights_from_hf(tensors, config: ModelConfig):
            return t5_weights_from_hf(tensors, config)

        @staticmethod
        def config_to_hf(config: ModelConfig) -> dict[str, Any]:
            return t5_config_to_hf(config, model_type)

        weights_to_hf = staticmethod(t5_weights_to_hf)

        @staticmethod
        def tokenizers(path: Path, hf: dict[str, Any]):
            if not (path / SPIECE).is_file() and has_tokenizer_json(path):  # a Rosetta run's export
                return read_tokenizers(path, hf)
            tokenizer = t5_tokenizer(path, hf)
            return tokenizer, tokenizer


for _type in ("t5", "mt5"):  # mT5 is T5 v1.1's layout (gated GELU, untied head) with a 250k vocabulary
    _register(_type)
