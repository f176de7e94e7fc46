"""BERT's task heads and DistilBERT from Hugging Face directories, through the registry (rosetta.hub).

Reference: tiny random ``transformers`` models (BertForSequenceClassification / ForQuestionAnswering /
ForMaskedLM, DistilBert base and heads) saved with ``save_pretrained``, read by transformers' own
``BertTokenizer`` built from a vocab.txt; Rosetta reads the same directory's tokenizer.json, made here with the
``tokenizers`` library. Checked: token ids equal; logits within 1e-5 (fp32); ``rosetta classify`` labels (id2label)
and probabilities, ``rosetta answer``'s span (the best start/end of HF's logits), ``rosetta fill-mask``'s top
tokens and probabilities; a twin directory with one weight changed fails each comparison; heads Rosetta has no
block for are refused in one line naming the architecture and the supported ones.
"""

import json

import pytest
import torch
from hf_dirs import cli, runner, save_wordpiece_tokenizer, twin

from rosetta.checkpoint import CheckpointError
from rosetta.cli import app
from rosetta.decode.fill_mask import masked_input
from rosetta.decode.loading import load_any
from rosetta.decode.qa import QuestionAnswerer
from rosetta.models.pretrained import tokenize

transformers = pytest.importorskip("transformers")

TOL = 1e-5
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
DIGITS, LETTERS = list("0123456789"), list("abcdefghijklmnopqrstuvwxyz")
VOCAB = (SPECIALS + "the cat sat on mat who wrote it was written by ada love ##lace in dog ran what".split()
         + list(".,?!") + DIGITS + LETTERS + [f"##{c}" for c in LETTERS + DIGITS])  # no token twice
LABELS = {0: "negative", 1: "positive", 2: "neutral"}
TEXTS = ["The cat sat on the mat.", "Ada Lovelace wrote it in 1843!", "a dog ran", "Zebra quartz, Éclair?"]
QUESTION, CONTEXT = "Who wrote it?", "It was written by Ada Lovelace in 1843. The cat sat on the mat."
MASKED = "the cat <mask> on the <mask>."
BERT = dict(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=48, max_position_embeddings=64)
DISTILBERT = dict(vocab_size=len(VOCAB), dim=32, n_layers=2, n_heads=4, hidden_dim=48, max_position_embeddings=64)


def save_tokenizer(directory) -> None:
    """tokenizer.json (BERT's WordPiece pipeline, built with ``tokenizers``) and vocab.txt (for the reference)."""
    save_wordpiece_tokenizer(directory, VOCAB, SPECIALS)


def make_dir(root, cls, seed=0, **config):
    """A random ``cls`` model (every parameter perturbed, so biases and LayerNorms matter) with its tokenizer
    files saved in ``root``; returns (directory, the HF model in eval mode)."""
    torch.manual_seed(seed)
    kind = transformers.DistilBertConfig if cls.__name__.startswith("DistilBert") else transformers.BertConfig
    hf = cls(kind(**config)).eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    hf.save_pretrained(root)
    save_tokenizer(root)
    return root, hf


def reference_tokenizer(directory):
    return transformers.BertTokenizer(str(directory / "vocab.txt"), do_lower_case=True)


@pytest.fixture(scope="module")
def bert_classifier(tmp_path_factory):
    return make_dir(tmp_path_factory.mktemp("bert-sc"), transformers.BertForSequenceClassification,
                    num_labels=3, id2label=LABELS, label2id={v: k for k, v in LABELS.items()}, **BERT)


@pytest.fixture(scope="module")
def bert_qa(tmp_path_factory):
    return make_dir(tmp_path_factory.mktemp("bert-qa"), transformers.BertForQuestionAnswering, seed=1, **BERT)


@pytest.fixture(scope="module")
def bert_mlm(tmp_path_factory):
    return make_dir(tmp_path_factory.mktemp("bert-mlm"), transformers.BertForMaskedLM, seed=2, **BERT)


# --------------------------------------------------------------------------------------------- tokenizer
def test_tokenizer_ids_equal_bert_tokenizer(bert_classifier):
    directory, _ = bert_classifier
    loaded, ref = load_any(directory), reference_tokenizer(directory)
    ids, mask, types = tokenize(loaded.tokenizer, TEXTS)
    expected = ref(TEXTS, padding=True, return_tensors="pt")
    assert torch.equal(ids, expected["input_ids"]) and torch.equal(mask, expected["attention_mask"])
    assert torch.equal(types, expected["token_type_ids"])
    pair = loaded.tokenizer.encode(QUESTION, CONTEXT)
    expected = ref(QUESTION, CONTEXT)
    assert pair.ids == expected["input_ids"] and pair.type_ids == expected["token_type_ids"]
    assert masked_input(loaded.tokenizer, MASKED)[0] == ref(MASKED.replace("<mask>", "[MASK]"))["input_ids"]


# ------------------------------------------------------------------------------- BertForSequenceClassification
def classify_diff(directory, hf) -> float:
    """Largest |p_rosetta - softmax(HF logits)| over TEXTS and labels, from ``rosetta classify --json``; the
    label names must be id2label's and the top label HF's argmax."""
    lines = [json.loads(line) for line in cli("classify", "--model", directory, "--json", *TEXTS).splitlines()]
    enc = reference_tokenizer(directory)(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = hf(**enc).logits.softmax(-1)  # (N, labels)
    diff = 0.0
    for line, text, p in zip(lines, TEXTS, expected):
        assert line["text"] == text and list(line["probabilities"]) == list(LABELS.values())
        assert line["label"] == LABELS[int(p.argmax())]
        diff = max(diff, (torch.tensor(list(line["probabilities"].values())) - p).abs().max().item())
    return diff


def test_bert_sequence_classification_cli(bert_classifier, tmp_path):
    directory, hf = bert_classifier
    loaded = load_any(directory)
    assert loaded.info["labels"] == list(LABELS.values()) and loaded.model.pooler is not None
    diff = classify_diff(directory, hf)
    print(f"BertForSequenceClassification: rosetta classify probabilities max abs diff {diff:.2e}")
    assert diff < TOL
    assert classify_diff(twin(directory, tmp_path, "classifier.weight"), hf) > 1e-3


# ------------------------------------------------------------------------------------ BertForQuestionAnswering
def hf_span(directory, hf, max_answer_len=30):
    """HF's start/end logits (T,) of [CLS] question [SEP] context [SEP] and the answer its best span gives:
    argmax of s_i + e_j over context tokens i ≤ j < i + max_answer_len, cut from CONTEXT by the offsets."""
    enc = reference_tokenizer(directory)(QUESTION, CONTEXT, return_offsets_mapping=True, return_tensors="pt")
    offsets = enc.pop("offset_mapping")[0].tolist()
    context = [k for k, s in enumerate(enc.sequence_ids(0)) if s == 1]
    with torch.no_grad():
        out = hf(**enc)
    start, end = out.start_logits[0], out.end_logits[0]
    _, i, j = max((float(start[i] + end[j]), i, j) for i in context for j in context if i <= j < i + max_answer_len)
    s, e = offsets[i][0], offsets[j][1]
    return enc["input_ids"][0], start, end, (CONTEXT[s:e].strip(), s, e)


def answer_diff(directory, hf) -> float:
    """Largest |start/end logit difference| of QuestionAnswerer against HF on the same window (whose ids must be
    HF's); ``rosetta answer --json`` must give HF's best span."""
    ids, start, end, (text, s, e) = hf_span(directory, hf)
    qa = QuestionAnswerer(load_any(directory))
    (window,) = qa.windows([QUESTION], [CONTEXT])
    assert window.ids == ids.tolist()
    ((ours_start, ours_end),) = qa.logits([window])
    got = json.loads(cli("answer", "--model", directory, "--context", CONTEXT, "--json", QUESTION))
    assert (got["answer"], got["start"], got["end"]) == (text, s, e) and text
    return max((ours_start - start).abs().max().item(), (ours_end - end).abs().max().item())


def test_bert_question_answering_cli(bert_qa, tmp_path):
    directory, hf = bert_qa
    diff = answer_diff(directory, hf)
    print(f"BertForQuestionAnswering: start/end logits max abs diff {diff:.2e}")
    assert diff < TOL
    changed = twin(directory, tmp_path, "qa_outputs.weight", delta=0.5)
    with pytest.raises(AssertionError):
        assert answer_diff(changed, hf) < TOL


# -------------------------------------------------------------------------------------------- BertForMaskedLM
def fill_mask_diff(directory, hf, top_k=5) -> float:
    """``rosetta fill-mask --json``: each <mask>'s top tokens must be HF's; returns the largest probability
    difference to softmax(HF's logits) there (the CLI rounds to 1e-6)."""
    enc = reference_tokenizer(directory)(MASKED.replace("<mask>", "[MASK]"), return_tensors="pt")
    with torch.no_grad():
        probs = hf(**enc).logits[0].softmax(-1)  # (T, V)
    rows = probs[enc["input_ids"][0] == VOCAB.index("[MASK]")]  # (M, V)
    lines = [json.loads(line) for line in cli("fill-mask", "--model", directory, "--json",
                                              "--top-k", top_k, MASKED).splitlines()]
    assert len(lines) == len(rows) == 2
    diff = 0.0
    for line, p in zip(lines, rows):
        values, indices = p.topk(top_k)
        assert [x["token"] for x in line] == [VOCAB[i] for i in indices]
        diff = max(diff, (torch.tensor([x["probability"] for x in line]) - values).abs().max().item())
    return diff


def test_bert_masked_lm_cli_and_logits(bert_mlm, tmp_path):
    directory, hf = bert_mlm
    loaded = load_any(directory)
    assert loaded.model.mlm.decoder.weight is loaded.model.embeddings.token.weight  # tied, as in BERT
    enc = reference_tokenizer(directory)(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = hf(**enc).logits  # (N, T, V)
        ours = loaded.model.mlm_logits(loaded.model(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"]))
    real = enc["attention_mask"].bool()
    logits_diff = (ours - expected)[real].abs().max().item()
    diff = fill_mask_diff(directory, hf)
    print(f"BertForMaskedLM: logits max abs diff {logits_diff:.2e}, fill-mask probabilities {diff:.2e}")
    assert logits_diff < TOL and diff < TOL
    changed = twin(directory, tmp_path, "cls.predictions.bias", index=VOCAB.index("dog"), delta=5.0)
    with pytest.raises(AssertionError):
        assert fill_mask_diff(changed, hf) < TOL


# -------------------------------------------------------------------------------------------------- DistilBERT
DISTIL_KINDS = {  # class, the output compared, the tensor the twin changes
    "base": ("DistilBertModel", "last_hidden_state", "transformer.layer.1.attention.q_lin.weight"),
    "classifier": ("DistilBertForSequenceClassification", "logits", "pre_classifier.bias"),
    "qa": ("DistilBertForQuestionAnswering", "start_logits", "qa_outputs.weight"),
    "mlm": ("DistilBertForMaskedLM", "logits", "vocab_projector.bias"),
}


def distil_diff(directory, hf, output) -> float:
    """Largest |ours - HF| of ``output`` on TEXTS (padded batch, real positions only for per-token outputs)."""
    enc = reference_tokenizer(directory)(TEXTS, padding=True, return_tensors="pt")
    ids, mask = enc["input_ids"], enc["attention_mask"]
    model = load_any(directory).model
    with torch.no_grad():
        expected = getattr(hf(input_ids=ids, attention_mask=mask), output)
        if output == "logits" and model.classifier is not None:
            return (model.classify(ids, mask) - expected).abs().max().item()
        hidden = model(ids, mask)  # (N, T, D)
        if output == "start_logits":
            hidden = model.span_logits(hidden)[0]
        elif output == "logits":
            hidden = model.mlm_logits(hidden)
    return (hidden - expected)[mask.bool()].abs().max().item()


@pytest.mark.parametrize("kind", DISTIL_KINDS)
def test_distilbert_equals_transformers(kind, tmp_path):
    name, output, changed = DISTIL_KINDS[kind]
    extra = dict(num_labels=3, id2label=LABELS) if kind == "classifier" else {}
    directory, hf = make_dir(tmp_path / "model", getattr(transformers, name), **DISTILBERT, **extra)
    loaded = load_any(directory)
    assert loaded.model.config.type_vocab_size == 0 and loaded.model.pooler is None
    diff = distil_diff(directory, hf, output)
    print(f"{name}: {output} max abs diff {diff:.2e}")
    assert diff < TOL
    assert distil_diff(twin(directory, tmp_path, changed), hf, output) > 1e-3
    if kind == "classifier":  # the CLI too, with id2label's names
        assert loaded.info["labels"] == list(LABELS.values()) and loaded.model.pre_classifier is not None
        assert classify_diff(directory, hf) < TOL


# ------------------------------------------------------------------------------------------ unsupported heads
@pytest.mark.parametrize("name", ["BertForTokenClassification", "BertForMultipleChoice",
                                  "DistilBertForTokenClassification"])
def test_unsupported_heads_are_refused_in_one_line(name, tmp_path):
    config = DISTILBERT if name.startswith("DistilBert") else BERT
    directory, _ = make_dir(tmp_path, getattr(transformers, name), **config)
    with pytest.raises(CheckpointError) as error:
        load_any(directory)
    message = str(error.value)
    assert "\n" not in message and f"unsupported architecture {name}" in message
    assert ("DistilBertForQuestionAnswering" if name.startswith("DistilBert") else "BertForMaskedLM") in message
    result = runner.invoke(app, ["classify", "--model", str(directory), "--json", "a cat"])
    assert result.exit_code == 2 and f"unsupported architecture {name}" in result.output
