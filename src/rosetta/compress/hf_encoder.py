"""``rosetta export --format huggingface`` of an encoder (``EncoderModel``): BERT, RoBERTa or DistilBERT with its head.

Which family (``model_type``), from the layout alone — a run fine-tuned from a Hugging Face directory and
Rosetta's own BERT-layout encoders (MLM pretraining, a classifier from scratch) take the same road:

    position_offset > 0 (positions from pad + 1)                              →  roberta
    a pre_classifier (ReLU(W h_[CLS])), or no token types, no pooler, ε 1e-12 →  distilbert
    anything else                                                             →  bert

each family's ``config_to_hf`` refusing, in one line naming the flag, what its blocks do not compute (Pre-LN,
rotary / sinusoidal positions, RMSNorm, no biases, pruned heads, …: ``rosetta.hub.bert.check_layout``).
Which class (config.json's ``architectures``, so the Auto classes pick it), from the head:

    a classifier read through BERT's pooler tanh(W h_[CLS])   →  …ForSequenceClassification (id2label, label2id:
                                                                 the run's labels); RoBERTa's classifier.dense
                                                                 is that pooler; DistilBERT's pre_classifier
    qa_outputs (the span head)                                →  …ForQuestionAnswering
    the MLM head (decoder tied to the word embeddings)        →  …ForMaskedLM
    none (an embedding model)                                 →  …Model (``AutoModel``)

A classifier that reads the mean of its tokens (the classification task's default) has no Hugging Face head:
refused (``REFUSED``), saying to fine-tune with ``[model] pooler = true`` or to keep it a Rosetta model
(``rosetta.load``, ``rosetta serve``: --format onnx / ctranslate2 take translation models only). So is a model
with two heads (a Hugging Face class has one).

Tokenizer: the run's tokenizer.json (a Hugging Face checkpoint's own WordPiece / byte-level BPE, framing
[CLS] … [SEP] or <s> … </s>; a Rosetta tokenizer gets the <s> … </s> post-processor that ``encode_texts``
applies), truncating at the run's max_length and padding with the model's pad id, and a tokenizer_config.json:
``BertTokenizerFast`` with a vocab.txt when the pipeline is BERT's own (WordPiece, BertNormalizer,
BertPreTokenizer; do_lower_case / strip_accents / tokenize_chinese_chars from its normalizer), else
``PreTrainedTokenizerFast``, naming only special tokens the vocabulary has. ``AutoTokenizer`` then gives the
run's ids.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rosetta import checkpoint as ckpt
from rosetta.decode.loading import LoadedModel
from rosetta.hub.bert import ELSEWHERE

REFUSED = {
    "mean": "this classifier reads the mean of its tokens (config.json \"pooler\": false) and "
            "BertForSequenceClassification the pooled [CLS] token: there is no Hugging Face head for it; fine-tune "
            f"with [model] pooler = true (BERT's [CLS] pooler), or {ELSEWHERE}",
    "heads": f"a Hugging Face model class has one head; {ELSEWHERE}",
}
CLASSES = {"bert": "Bert", "roberta": "Roberta", "distilbert": "DistilBert"}
HEADS = {"classifier": "ForSequenceClassification", "qa_outputs": "ForQuestionAnswering", "mlm": "ForMaskedLM",
         None: "Model"}
SPECIALS = {"cls_token": ("[CLS]", "<s>"), "sep_token": ("[SEP]", "</s>"), "unk_token": ("[UNK]", "<unk>"),
            "mask_token": ("[MASK]", "<mask>")}  # the first that the vocabulary has


def model_type(model) -> str:
    """The Hugging Face family of an ``EncoderModel`` (module docstring's first table)."""
    config = model.config
    if config.position_offset:
        return "roberta"
    if model.pre_classifier is not None or (config.type_vocab_size == 0 and model.pooler is None
                                            and config.norm_eps == 1e-12):
        return "distilbert"
    return "bert"


def head(model) -> str | None:
    """The one head of ``model`` ("classifier", "qa_outputs", "mlm") or None; ValueError for a mean-pooled
    classifier or two heads (``REFUSED``)."""
    heads = [name for name in ("classifier", "qa_outputs", "mlm") if getattr(model, name) is not None]
    if len(heads) > 1:
        raise ValueError(f"this encoder has {len(heads)} heads ({', '.join(heads)}): {REFUSED['heads']}")
    if heads == ["classifier"] and model.pooler is None and model.pre_classifier is None:
        raise ValueError(REFUSED["mean"])
    return heads[0] if heads else None


def hf_config(loaded: LoadedModel, kind: str, which: str | None) -> dict[str, Any]:
    """config.json: the checkpoint's own (when config.json records one), the family's ``config_to_hf``, the class
    of the head and, for a classifier, id2label / label2id from the run's labels."""
    from rosetta.hub.registry import hf_family
    from rosetta.hub.runs import recorded

    model, record = loaded.model, recorded(loaded.info) or {}
    base = record.get("config", {}) if record.get("model_type") == kind else {}
    config = {**base, **hf_family(kind).config_to_hf(model.config),
              "architectures": [CLASSES[kind] + HEADS[which]]}
    for key in ("id2label", "label2id", "num_labels"):
        config.pop(key, None)
    if which == "classifier":
        names = [str(x) for x in loaded.info.get("labels") or []]
        labels = names if len(names) == model.num_labels else [str(i) for i in range(model.num_labels)]
        config.update(id2label=dict(enumerate(labels)), label2id={name: i for i, name in enumerate(labels)})
    return config


def export_encoder(loaded: LoadedModel, out: Path) -> None:
    """Write ``loaded`` (family "encoder") into ``out``: config.json, model.safetensors, the tokenizer files."""
    from safetensors.torch import save_file

    from rosetta.hub.registry import hf_family
    from rosetta.models.pretrained import WEIGHTS_FILE

    model = loaded.model
    try:
        which, kind = head(model), model_type(model)
        config = hf_config(loaded, kind, which)  # ValueError naming the flag when the layout is not the family's
        state = model.state_dict()
        if which in ("qa_outputs", "mlm"):  # their classes have no pooler: an unused one stays behind
            state = {k: v for k, v in state.items() if not k.startswith("pooler.")}
        tensors = hf_family(kind).weights_to_hf(state, model.config)  # ValueError: a tensor with no counterpart
    except ValueError as e:
        raise ValueError(f"{loaded.info.get('path', 'this encoder')}: cannot export it to Hugging Face: {e}") from None
    (out / ckpt.CONFIG_FILE).write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    save_file(tensors, str(out / WEIGHTS_FILE), metadata={"format": "pt"})
    write_tokenizer(loaded, out)


def write_tokenizer(loaded: LoadedModel, out: Path) -> None:
    """tokenizer.json, tokenizer_config.json (and vocab.txt for BERT's pipeline): module docstring."""
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import processors

    from rosetta.data.tokenizer import Tokenizer
    from rosetta.hub.exported import write_settings

    tokenizer, config = loaded.tokenizer, loaded.model.config
    hf = HFTokenizer.from_str(tokenizer.to_str())  # a Hugging Face checkpoint's own, as the run read it, or …
    if isinstance(tokenizer, Tokenizer):  # … Rosetta's: encode adds nothing, encode_texts frames <s> … </s>
        bos, eos = tokenizer.id_to_token(tokenizer.bos_id), tokenizer.id_to_token(tokenizer.eos_id)
        hf.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A {eos}", pair=f"{bos} $A {eos} $B:1 {eos}:1",
            special_tokens=[(bos, tokenizer.bos_id), (eos, tokenizer.eos_id)])
    # the run's max_length, else the shorter of the file's limit and the model's positions
    limits = [(hf.truncation or {}).get("max_length"), config.max_len - config.position_offset]
    max_length = loaded.info.get("max_length") or min(x for x in limits if x)
    hf.enable_truncation(max_length)
    pad = hf.id_to_token(config.pad_id)
    hf.enable_padding(pad_id=config.pad_id, pad_token=pad)
    hf.save(str(out / "tokenizer.json"))
    specials = {key: next((t for t in names if hf.token_to_id(t) is not None), None)
                for key, names in SPECIALS.items()}
    specials = {"pad_token": pad, **{k: v for k, v in specials.items() if v}}
    if model_type(loaded.model) == "roberta" and "cls_token" in specials and "sep_token" in specials:
        specials.update(bos_token=specials["cls_token"], eos_token=specials["sep_token"])
    settings = {"tokenizer_class": "PreTrainedTokenizerFast", **specials, "model_max_length": max_length}
    normalizer = json.loads(hf.to_str()).get("normalizer") or {}
    if (type(hf.model).__name__ == "WordPiece" and normalizer.get("type") == "BertNormalizer"
            and type(hf.pre_tokenizer).__name__ == "BertPreTokenizer" and len(specials) == 5):
        settings.update(tokenizer_class="BertTokenizerFast", do_lower_case=normalizer["lowercase"],
                        strip_accents=normalizer["strip_accents"],
                        tokenize_chinese_chars=normalizer["handle_chinese_chars"])
        vocab = sorted(hf.get_vocab(with_added_tokens=True).items(), key=lambda item: item[1])
        if [i for _, i in vocab] == list(range(len(vocab))):  # BertTokenizer (use_fast=False) reads it too
            (out / "vocab.txt").write_text("".join(f"{t}\n" for t, _ in vocab), encoding="utf-8")
    write_settings(out, settings)
