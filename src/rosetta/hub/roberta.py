"""RoBERTa (``model_type: roberta``) into ``EncoderModel``: BERT's blocks, positions counted from pad + 1.

RoBERTa (Liu et al. 2019) is BERT's architecture trained differently; what differs in the checkpoint:

* positions: token t (0-based) reads row ``pad_token_id + 1 + t`` of the position table (fairseq's layout,
  514 rows for 512 tokens): the ``position_offset`` flag on the shared embeddings. (Hugging Face numbers only
  the non-pad tokens; with right padding, the only padding Rosetta makes, the real tokens' rows are the same.)
* one token type (``type_vocab_size = 1``), <s> … </s> framing, byte-level BPE (``tokenizer.json``);
* heads, Hugging Face name (``roberta.`` dropped) → BERT's, then read as BERT's (``rosetta.hub.bert``):

      RobertaForMaskedLM                lm_head.dense / layer_norm / bias     → cls.predictions.transform.dense /
                                                                                .LayerNorm / cls.predictions.bias
                                        (lm_head.decoder: the word embeddings, tied)
      RobertaForSequenceClassification  classifier.dense                      → pooler.dense  (tanh(W h_<s>))
                                        classifier.out_proj                   → classifier
      RobertaForQuestionAnswering       qa_outputs                            → qa_outputs

  RoBERTa's classification head is dense → tanh → out_proj on the <s> vector, which is BERT's pooler followed
  by its classifier: the same blocks, other names.

The way back (``config_to_hf`` / ``weights_to_hf``): BERT's (``rosetta.hub.bert``) with ``model_type: roberta``, the
encoder under ``roberta.`` and the heads renamed as above, for an encoder whose positions start at pad_token_id + 1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rosetta.hub import bert
from rosetta.hub.bert import BERT_HEADS, check_architectures, encoder_with_heads, with_heads
from rosetta.hub.registry import register_hf
from rosetta.models.encoder import EncoderModel
from rosetta.models.pretrained import PretrainedError, config_from_hf, convert_bert_weights, load_tokenizer
from rosetta.nn.config import ModelConfig

ROBERTA_ARCHITECTURES = ("RobertaModel", "RobertaForMaskedLM", "RobertaForSequenceClassification",
                         "RobertaForQuestionAnswering")
TO_BERT = {  # RoBERTa head prefixes → BERT's (the rest of each name is kept)
    "lm_head.dense.": "cls.predictions.transform.dense.",
    "lm_head.layer_norm.": "cls.predictions.transform.LayerNorm.",
    "classifier.dense.": "pooler.dense.",
    "classifier.out_proj.": "classifier.",
}
IGNORED = ("lm_head.decoder.weight", "lm_head.decoder.bias", "embeddings.position_ids")  # tied / HF buffers


def _bert_name(name: str) -> str | None:
    """A RoBERTa tensor name as BERT's (None: not read — tied to another tensor, or a buffer)."""
    name = name.removeprefix("roberta.")
    if name in IGNORED:
        return None
    if name == "lm_head.bias":
        return "cls.predictions.bias"
    for old, new in TO_BERT.items():
        if name.startswith(old):
            return new + name.removeprefix(old)
    return name


def roberta_config(hf: dict[str, Any]) -> ModelConfig:
    """A RoBERTa config.json → BERT's ``ModelConfig`` with positions offset by pad_token_id + 1."""
    if hf.get("model_type") != "roberta":
        raise PretrainedError(f"not a RoBERTa config.json: model_type={hf.get('model_type')!r}")
    pad = hf.get("pad_token_id", 1)
    config = config_from_hf({**hf, "model_type": "bert", "pad_token_id": pad})
    return config.replace(position_offset=pad + 1)


def config_to_hf(config: ModelConfig) -> dict[str, Any]:
    """An ``EncoderModel``'s ``ModelConfig`` in RoBERTa's layout (BERT's, positions from pad + 1) → config.json."""
    hf = bert.bert_hf_config(config, "RoBERTa", position_offset=config.pad_id + 1)
    return {**hf, "model_type": "roberta", "architectures": ["RobertaModel"]}


def weights_to_hf(state, config: ModelConfig):
    """``EncoderModel`` state dict → RobertaModel / Roberta…For… tensors: BERT's names, then ``TO_BERT`` backwards."""
    classifier = "classifier.weight" in state
    tensors = {}
    for name, tensor in bert.weights_to_hf(state, config).items():
        name = "lm_head.bias" if name == "cls.predictions.bias" else name
        if classifier and name.startswith("bert.pooler.dense."):  # dense → tanh → out_proj: the pooler
            name = "classifier.dense." + name.removeprefix("bert.pooler.dense.")
        elif name.startswith("classifier."):
            name = "classifier.out_proj." + name.removeprefix("classifier.")
        for roberta, bert_name in TO_BERT.items():
            if bert_name.startswith("cls.") and name.startswith(bert_name):
                name = roberta + name.removeprefix(bert_name)
        tensors[name.replace("bert.", "roberta.", 1) if name.startswith("bert.") else name] = tensor
    return tensors


@register_hf("roberta", family="encoder")
class Roberta:
    config_from_hf = staticmethod(roberta_config)
    config_to_hf = staticmethod(config_to_hf)
    weights_to_hf = staticmethod(weights_to_hf)

    @staticmethod
    def build(config: ModelConfig, hf: dict[str, Any], names: set[str]) -> EncoderModel:
        check_architectures(hf, ROBERTA_ARCHITECTURES)
        heads = {BERT_HEADS.get(n, n) for n in map(_bert_name, names) if n is not None}
        return encoder_with_heads(config, hf, heads, pooler="pooler.dense.weight" in heads)

    @staticmethod
    def weights_from_hf(tensors, config: ModelConfig):
        tensors = {b: v for k, v in tensors.items() if (b := _bert_name(k)) is not None}
        heads = {BERT_HEADS[k]: tensors.pop(k) for k in list(tensors) if k in BERT_HEADS}
        return with_heads(convert_bert_weights(tensors, config.n_encoder_layers), heads)

    @staticmethod
    def tokenizers(path: Path, hf: dict[str, Any]):
        """tokenizer.json (byte-level BPE, <s> … </s>), padded with config.json's pad token (<pad> = 1)."""
        tokenizer = load_tokenizer(path)
        pad = hf.get("pad_token_id", 1)
        tokenizer.enable_padding(pad_id=pad, pad_token=tokenizer.id_to_token(pad) or "<pad>")
        return tokenizer, None
