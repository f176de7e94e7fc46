"""RoBERTa from Hugging Face directories (rosetta.hub.roberta): BERT's blocks with positions offset by pad + 1.

Reference: tiny random ``transformers`` RoBERTa models (base, ForSequenceClassification, ForQuestionAnswering,
ForMaskedLM) saved with ``save_pretrained``, tokenised by transformers' own slow ``RobertaTokenizer`` from the
vocab.json + merges.txt of a byte-level BPE trained here; Rosetta reads the same directory's tokenizer.json.
Checked: token ids (with padding, pairs and <mask>) equal; hidden states, every layer's attention weights and
each head's logits within 1e-5 (fp32); ``rosetta classify`` (id2label names) and ``rosetta fill-mask``; a twin
with one weight changed fails each comparison, and so does the same model read without the position offset.
"""

import json

import pytest
import torch
from hf_dirs import cli, twin
from hf_dirs import roberta_directory as make_dir
from hf_dirs import roberta_reference_tokenizer as reference_tokenizer

from rosetta.checkpoint import CheckpointError
from rosetta.decode.fill_mask import masked_input
from rosetta.decode.loading import load_any
from rosetta.models.pretrained import tokenize

transformers = pytest.importorskip("transformers")

TOL = 1e-5
TEXTS = ["The cat sat on the mat.", "Ada Lovelace wrote it in 1843!", "a dog ran", "Zebra quartz, Éclair? 猫🐱 x"]
LABELS = {0: "negative", 1: "positive", 2: "neutral"}
MASKED = "the cat <mask> on the <mask>."
KINDS = {  # class, the output compared, the tensor the twin changes
    "base": ("RobertaModel", "last_hidden_state", "encoder.layer.1.attention.self.query.weight"),
    "classifier": ("RobertaForSequenceClassification", "logits", "classifier.out_proj.bias"),
    "qa": ("RobertaForQuestionAnswering", "start_logits", "qa_outputs.weight"),
    "mlm": ("RobertaForMaskedLM", "logits", "lm_head.bias"),
}


def diff_to_hf(model, hf, directory, output) -> float:
    """Largest |ours - HF| of ``output`` on TEXTS (padded batch; real positions only for per-token outputs)."""
    enc = reference_tokenizer(directory)(TEXTS, padding=True, return_tensors="pt")
    ids, mask = enc["input_ids"], enc["attention_mask"]
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


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return make_dir(tmp_path_factory.mktemp("roberta"), "RobertaModel")


def test_tokenizer_ids_equal_roberta_tokenizer(base):
    directory, _ = base
    loaded, ref = load_any(directory), reference_tokenizer(directory)
    ids, mask, _ = tokenize(loaded.tokenizer, TEXTS)
    expected = ref(TEXTS, padding=True, return_tensors="pt")
    assert torch.equal(ids, expected["input_ids"]) and torch.equal(mask, expected["attention_mask"])
    assert (ids == 1).any() and ids[0, 0] == 0  # padded with <pad> = 1, framed by <s> = 0
    assert loaded.tokenizer.encode(TEXTS[0], TEXTS[1]).ids == ref(TEXTS[0], TEXTS[1])["input_ids"]  # </s></s>
    assert masked_input(loaded.tokenizer, MASKED)[0] == ref(MASKED)["input_ids"]
    assert loaded.tokenizer.decode(ids[3].tolist()) == ref.decode(expected["input_ids"][3], skip_special_tokens=True)


@pytest.mark.parametrize("kind", KINDS)
def test_roberta_equals_transformers(kind, tmp_path):
    name, output, changed = KINDS[kind]
    extra = dict(num_labels=3, id2label=LABELS, label2id={v: k for k, v in LABELS.items()}) \
        if kind == "classifier" else {}
    directory, hf = make_dir(tmp_path / "model", name, seed=len(kind), **extra)
    model = load_any(directory).model
    assert model.config.position_offset == 2 and model.config.type_vocab_size == 1
    diff = diff_to_hf(model, hf, directory, output)
    print(f"{name}: {output} max abs diff {diff:.2e}")
    assert diff < TOL
    assert diff_to_hf(load_any(twin(directory, tmp_path, changed)).model, hf, directory, output) > 1e-3
    unshifted = load_any(directory).model
    unshifted.embeddings.position_offset = 0  # read as BERT: positions from 0
    assert diff_to_hf(unshifted, hf, directory, output) > 1e-3


def test_every_layers_attention_equals_transformers(base):
    directory, hf = base
    enc = reference_tokenizer(directory)(TEXTS, padding=True, return_tensors="pt")
    hf.set_attn_implementation("eager")  # the explicit softmax, whose weights transformers returns
    with torch.no_grad():
        expected = hf(**enc, output_attentions=True).attentions
        _, ours = load_any(directory).model(enc["input_ids"], enc["attention_mask"], return_attention=True)
    real = enc["attention_mask"].bool()  # queries at real tokens (HF's padded rows differ: other positions)
    assert len(ours) == len(expected) == 2
    for a, b in zip(ours, expected):
        assert (a - b).permute(0, 2, 1, 3)[real].abs().max().item() < TOL


def test_roberta_classify_and_fill_mask_cli(tmp_path):
    directory, hf = make_dir(tmp_path / "cls", "RobertaForSequenceClassification", num_labels=3, id2label=LABELS,
                             label2id={v: k for k, v in LABELS.items()})
    lines = [json.loads(line) for line in cli("classify", "--model", directory, "--json", *TEXTS).splitlines()]
    enc = reference_tokenizer(directory)(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = hf(**enc).logits.softmax(-1)
    for line, p in zip(lines, expected):
        assert list(line["probabilities"]) == list(LABELS.values()) and line["label"] == LABELS[int(p.argmax())]
        assert (torch.tensor(list(line["probabilities"].values())) - p).abs().max().item() < TOL
    directory, hf = make_dir(tmp_path / "mlm", "RobertaForMaskedLM", seed=3)
    ref = reference_tokenizer(directory)
    enc = ref(MASKED, return_tensors="pt")
    with torch.no_grad():
        probs = hf(**enc).logits[0].softmax(-1)[enc["input_ids"][0] == ref.mask_token_id]  # (2, V)
    lines = [json.loads(line) for line in cli("fill-mask", "--model", directory, "--json", "--top-k", 3,
                                              MASKED).splitlines()]
    assert len(lines) == 2
    for line, p in zip(lines, probs):
        values, indices = p.topk(3)
        assert [x["token"] for x in line] == ref.convert_ids_to_tokens(indices.tolist())
        assert (torch.tensor([x["probability"] for x in line]) - values).abs().max().item() < TOL


def test_unsupported_roberta_heads_are_refused_in_one_line(tmp_path):
    directory, _ = make_dir(tmp_path, "RobertaForTokenClassification")
    with pytest.raises(CheckpointError) as error:
        load_any(directory)
    assert "\n" not in str(error.value) and "unsupported architecture RobertaForTokenClassification" in str(error.value)
    assert "RobertaForMaskedLM" in str(error.value)


def test_a_question_context_pair_gives_transformers_span_logits(tmp_path):
    """A pair as Rosetta's QA windows give it (BERT's segments: the context is type 1) and as
    RobertaForQuestionAnswering reads it (one token type: RoBERTa's tokenizer returns none): the same logits."""
    directory, hf = make_dir(tmp_path / "qa", "RobertaForQuestionAnswering", seed=7)
    loaded = load_any(directory)
    question, context = "who wrote it?", "Ada Lovelace wrote it in 1843."
    ids, mask, types = tokenize(loaded.tokenizer, [(question, context)])
    enc = reference_tokenizer(directory)(question, context, return_tensors="pt")
    assert torch.equal(ids, enc["input_ids"])
    types[0, int((ids[0] == 2).nonzero()[0]) + 1 :] = 1  # after the question's </s>: the context, as QA windows
    with torch.no_grad():
        start, end = loaded.model.span_logits(loaded.model(ids, mask, types))
        ref = hf(**enc)
    assert max((start - ref.start_logits).abs().max().item(), (end - ref.end_logits).abs().max().item()) < TOL
