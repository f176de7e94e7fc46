"""Text classifiers after training: ``rosetta.checkpoint.model_task``, ``rosetta.decode.TextClassifier`` and
``rosetta classify`` for texts.

Every probability is checked against an independent computation: the saved model copied to float64, each text
alone (no padding, no batching), its ids built by hand (<s> + tokenizer ids + </s>), the head applied by hand
(mean of the hidden states, then the linear layer), softmax in float64.
"""

import copy
import json

import pytest
import torch
from tiny_models import LABELS, REVIEWS, tiny_classifier_dir, tiny_lm_dir
from typer.testing import CliRunner

from rosetta.checkpoint import model_task
from rosetta.cli import app
from rosetta.data.tokenizer import BOS_ID, EOS_ID
from rosetta.decode.loading import load_any
from rosetta.decode.text_classifier import TextClassifier

runner = CliRunner()
TEXTS = ["a wonderful, moving film", "terrible acting, awful script", "the story is set in Paris",
         "a boring plot", "", "clever and warm but slow", "x" * 300]


@pytest.fixture(scope="module")
def classifier():
    return TextClassifier.load(tiny_classifier_dir())


def reference(loaded, text: str) -> torch.Tensor:
    """p(label | text) in float64, the text alone, ids and head by hand."""
    model = copy.deepcopy(loaded.model).double()
    body = loaded.tokenizer.encode(text)[: loaded.info["max_length"] - 2]
    ids = torch.tensor([[BOS_ID, *body, EOS_ID]])
    with torch.no_grad():
        hidden = model(ids)[0]  # (T, D): every position is real
        logits = model.classifier(hidden.mean(0))
    return logits.softmax(-1)


def test_model_task_reads_config_and_gives_old_models_their_default():
    assert model_task({"family": "encoder", "num_labels": 2}) == "classification"
    assert model_task({"family": "encoder"}) == "embedding"
    assert model_task({"family": "encoder", "num_labels": 0, "task": "mlm"}) == "mlm"
    assert model_task({}) == "translation"  # the oldest config.json: no family either
    assert model_task({"family": "translation", "task": "summarisation"}) == "summarisation"
    assert model_task({"family": "lm"}) == "lm"
    assert model_task({"family": "vit", "num_labels": 10}) == "image-classification"
    with pytest.raises(ValueError, match="does not fit family 'lm'"):
        model_task({"family": "lm", "task": "classification"})
    with pytest.raises(ValueError, match='"task" should be a name'):
        model_task({"family": "encoder", "task": 3})
    with pytest.raises(ValueError, match="unknown model family 'cnn'"):
        model_task({"family": "cnn"})


def test_probabilities_equal_a_float64_forward_of_each_text_alone(classifier):
    predictions = classifier.classify(TEXTS, batch_size=3)  # batches of mixed lengths: padding is masked
    assert classifier.labels == LABELS
    for text, prediction in zip(TEXTS, predictions):
        expected = reference(classifier.loaded, text)
        got = torch.tensor([prediction.probabilities[label] for label in LABELS], dtype=torch.float64)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
        assert prediction.label == LABELS[int(expected.argmax())] == LABELS[prediction.index]
        assert prediction.probability == pytest.approx(float(expected.max()), abs=1e-5)


def test_the_tiny_trained_classifier_knows_its_training_sentences(classifier):
    predictions = classifier.classify([t for t, _ in REVIEWS])
    assert [p.label for p in predictions] == [LABELS[y] for _, y in REVIEWS]
    assert {p.label for p in classifier.classify(["a boring mess", "a beautiful film"])} == {"negative", "positive"}


def test_attention_gives_tokens_the_prediction_and_rows_summing_to_one(classifier):
    text = "a wonderful film"
    result = classifier.attention(text)
    ids = [BOS_ID, *classifier.tokenizer.encode(text), EOS_ID]
    assert result["tokens"] == [classifier.tokenizer.id_to_token(i) for i in ids]
    assert result["tokens"][0] == "<s>" and result["tokens"][-1] == "</s>"
    maps = torch.tensor(result["encoder"])  # (L, H, T, T)
    config = classifier.model.config
    assert maps.shape == (config.n_encoder_layers, config.n_heads, len(ids), len(ids))
    torch.testing.assert_close(maps.sum(-1), torch.ones(maps.shape[:-1]), atol=1e-5, rtol=0)
    expected = reference(classifier.loaded, text)
    assert result["label"] == LABELS[int(expected.argmax())]
    assert result["probabilities"]["positive"] == pytest.approx(float(expected[2]), abs=1e-5)


def test_other_models_are_refused_with_the_reason():
    with pytest.raises(ValueError, match="lm model .task 'lm'. without a classification head"):
        TextClassifier(load_any(tiny_lm_dir()))


def test_classify_cli_prints_labels_for_arguments_and_stdin(classifier):
    model = str(tiny_classifier_dir())
    texts = TEXTS[:3]
    expected = classifier.classify(texts)
    r = runner.invoke(app, ["classify", "--model", model, "--top-k", "2", *texts])
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert len(lines) == 3
    for line, text, prediction in zip(lines, texts, expected):
        shown, _, echoed = line.partition("\t")
        assert echoed == text
        top = sorted(prediction.probabilities.items(), key=lambda kv: -kv[1])[:2]
        assert shown == ", ".join(f"{label} ({p:.3f})" for label, p in top)
    # stdin, one text a line, when no text or "-" is given; --json: one object per line, every label's probability
    for args in ([], ["-"]):
        r = runner.invoke(app, ["classify", "--model", model, "--json", *args], input="\n".join(texts) + "\n")
        assert r.exit_code == 0, r.output
        rows = [json.loads(line) for line in r.stdout.splitlines()]
        assert [row["text"] for row in rows] == texts
        for row, prediction in zip(rows, expected):
            assert row["label"] == prediction.label and set(row["probabilities"]) == set(LABELS)
            assert row["probabilities"] == pytest.approx(prediction.probabilities, abs=1e-6)
            assert sum(row["probabilities"].values()) == pytest.approx(1, abs=1e-5)


def test_classify_cli_errors_are_clear():
    model = str(tiny_classifier_dir())
    r = runner.invoke(app, ["classify", "--model", model], input="")
    assert r.exit_code == 2 and "no texts" in r.stderr
    r = runner.invoke(app, ["classify", "--model", model, "--fit", "crop", "good"])
    assert r.exit_code == 2 and "--invert and --fit are for image models" in r.stderr
    r = runner.invoke(app, ["classify", "--model", str(tiny_lm_dir()), "good"])
    assert r.exit_code == 2 and "not supported for family 'lm'" in r.stderr
    r = runner.invoke(app, ["classify", "--model", model], input=b"caf\xe9\n")
    assert r.exit_code == 2 and "not UTF-8" in r.stderr
