"""``rosetta.load(PATH)`` returns the pipeline of whatever PATH holds (rosetta.decode.pipelines), checked on tiny
Hugging Face directories of each family against ``transformers`` and on a Rosetta run: the right class, and its
output equal to the reference's."""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")
pytest.importorskip("sentencepiece")

from hf_dirs import (  # noqa: E402
    ROBERTA_CORPUS,
    marian_directory,
    roberta_directory,
    roberta_reference_tokenizer,
    write_gpt2_dir,
)

import rosetta  # noqa: E402
from rosetta.checkpoint import CheckpointError  # noqa: E402
from rosetta.decode.pipelines import Embedder, FillMasker, Generator  # noqa: E402
from rosetta.decode.qa import QuestionAnswerer  # noqa: E402
from rosetta.decode.text_classifier import TextClassifier  # noqa: E402
from rosetta.decode.translator import Translator  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


def test_a_marian_directory_loads_as_a_translator(tmp_path):
    directory = marian_directory(tmp_path)
    assert isinstance(rosetta.load(directory), Translator)
    assert isinstance(rosetta.load(directory, beam=2), Translator)  # the translator's options pass through


def test_a_gpt2_directory_loads_as_a_generator_that_is_greedy_at_temperature_zero(tmp_path):
    directory = write_gpt2_dir(tmp_path / "gpt2")
    generator = rosetta.load(directory)
    assert isinstance(generator, Generator)
    hf = transformers.GPT2LMHeadModel.from_pretrained(directory).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(directory)
    ids = tokenizer("Hello world", return_tensors="pt").input_ids
    with torch.no_grad():
        out = hf.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=10,
                          min_new_tokens=10, pad_token_id=hf.config.eos_token_id)
    expected = tokenizer.decode(out[0, ids.shape[1]:])
    assert generator.generate("Hello world", max_new_tokens=10, temperature=0.0) == expected
    with pytest.raises(ValueError, match="options of translation models"):
        rosetta.load(directory, beam=4)


@pytest.mark.parametrize("name, pipeline", [("RobertaForSequenceClassification", TextClassifier),
                                            ("RobertaForQuestionAnswering", QuestionAnswerer),
                                            ("RobertaForMaskedLM", FillMasker), ("RobertaModel", Embedder)])
def test_each_encoder_head_loads_as_its_pipeline(name, pipeline, tmp_path):
    labels = {"id2label": {0: "no", 1: "yes"}, "num_labels": 2} if "Classification" in name else {}
    directory, hf = roberta_directory(tmp_path / name, name, **labels)
    loaded = rosetta.load(directory)
    assert type(loaded) is pipeline
    if pipeline is Embedder:  # the mean of RobertaModel's hidden states over real tokens
        enc = roberta_reference_tokenizer(directory)(ROBERTA_CORPUS[:3], padding=True, return_tensors="pt")
        with torch.no_grad():
            hidden = hf(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).float()
        expected = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
        torch.testing.assert_close(loaded.embed(ROBERTA_CORPUS[:3]), expected, atol=1e-5, rtol=0)
    if pipeline is FillMasker:
        assert len(loaded.fill("the cat <mask> on the mat.", top_k=2)[0]) == 2


def test_an_unknown_model_type_is_one_line(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "mamba"}')
    with pytest.raises(CheckpointError, match="unsupported Hugging Face model_type 'mamba'"):
        rosetta.load(tmp_path)
