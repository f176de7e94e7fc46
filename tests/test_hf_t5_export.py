"""The way back for T5: a run fine-tuned from a Hugging Face T5 directory (``[model] pretrained = DIR``), exported with
``rosetta export --format huggingface``, is a directory ``AutoModelForSeq2SeqLM`` reads with the run's outputs.

Both layouts of ``hf_dirs.t5_directory``: T5 (ReLU, head tied and scaled by d^-½) and T5 v1.1 / flan-T5 (gated
GELU, untied head — transformers ≥ 5 keeps it untied because lm_head.weight, moved by training, differs from
shared.weight). Each run trains a few steps at a real learning rate, so the exported weights are not the
checkpoint's.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")
pytest.importorskip("sentencepiece")

from hf_dirs import DE, EN, t5_directory, twin  # noqa: E402
from test_hf_finetune import losses, train, training  # noqa: E402

import rosetta  # noqa: E402
from rosetta.compress.hf_export import export_huggingface  # noqa: E402
from rosetta.decode.loading import load_any  # noqa: E402
from rosetta.hub.reader import read_hf  # noqa: E402
from rosetta.models.t5 import t5_config_to_hf  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")
PREFIX = "translate English to German: "
SOURCES = [PREFIX + s for s in ("The cat sits.", "I am a student who likes green apples.",
                                "Where is the train station?", "They play football in the park.", "Hello wörld café!")]


def fine_tune(root: Path, layout: str, steps: int, lr: float, **directory) -> tuple[Path, Path]:
    """(a tiny T5 directory of ``layout``, a run of ``steps`` fine-tuned from it at learning rate ``lr``)."""
    t5_dir = t5_directory(root / "checkpoint", layout, **directory)
    files = {}
    for name, lines in (("train_src", [PREFIX + s for s in EN]), ("train_tgt", DE),
                        ("valid_src", [PREFIX + s for s in EN[:4]]), ("valid_tgt", DE[:4])):
        files[name] = str(root / name)
        Path(files[name]).write_text("\n".join(lines) + "\n", encoding="utf-8")
    recipe = {"data": {"task": "translation", "src_lang": "en", "tgt_lang": "de", "max_length": 64, **files},
              "model": {"pretrained": str(t5_dir)}, "train": training(steps, lr)}
    return t5_dir, train(recipe, root / "run")


@pytest.fixture(scope="module", params=["t5", "flan-t5"])
def exported(request, tmp_path_factory) -> tuple[Path, Path, Path]:
    """(the T5 directory, the run fine-tuned from it, its Hugging Face export)."""
    root = tmp_path_factory.mktemp(request.param)
    t5_dir, run = fine_tune(root, request.param, steps=8, lr=5e-4)
    seen = losses(run)
    assert len(seen) == 8 and sum(seen[-3:]) < sum(seen[:3])  # it learned: the weights moved
    return t5_dir, run, export_huggingface(run, root / "hf")


def logits(model, tokenizer, hf: bool) -> torch.Tensor:
    """Teacher-forced logits of SOURCES[:3] → DE[:3] (the decoder starts with <pad> = 0), real positions only."""
    src = tokenizer(SOURCES[:3], padding=True, return_tensors="pt")
    tgt = tokenizer(text_target=DE[:3], padding=True, return_tensors="pt")["input_ids"]
    dec = torch.cat([torch.zeros(len(tgt), 1, dtype=torch.long), tgt[:, :-1]], dim=1)
    real = dec != 0
    real[:, 0] = True
    with torch.no_grad():
        if hf:
            out = model(**src, decoder_input_ids=dec, decoder_attention_mask=real.long()).logits
        else:
            out = model(src["input_ids"], dec)
    return out[real]


def test_the_export_is_a_t5_directory_with_the_runs_logits_and_generations(exported):
    t5_dir, run, out = exported
    assert (out / "spiece.model").read_bytes() == (t5_dir / "spiece.model").read_bytes()
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "t5" and "huggingface" not in config
    hf = transformers.AutoModelForSeq2SeqLM.from_pretrained(out).eval()
    assert type(hf).__name__ == "T5ForConditionalGeneration"
    tokenizer = transformers.T5Tokenizer.from_pretrained(out)
    ours = load_any(run).model.eval()
    expected = logits(ours, tokenizer, hf=False)
    assert float((logits(hf, tokenizer, hf=True) - expected).abs().max()) < 1e-5
    original = transformers.AutoModelForSeq2SeqLM.from_pretrained(t5_dir).eval()
    assert float((logits(original, tokenizer, hf=True) - expected).abs().max()) > 1e-3  # fine-tuned, not the start

    translator = rosetta.load(run)
    enc = tokenizer(SOURCES, padding=True, return_tensors="pt")
    assert [translator.encode_source(s) for s in SOURCES] == tokenizer(SOURCES)["input_ids"]
    for beam in (1, 4):
        with torch.no_grad():
            ids = hf.generate(**enc, num_beams=beam)  # generation_config.json copied from the checkpoint
        # (T5Tokenizer keeps the spaces left where skipped pieces were; Rosetta strips the ends)
        texts = [t.strip() for t in tokenizer.batch_decode(ids, skip_special_tokens=True)]
        assert translator.translate(SOURCES, beam=beam) == texts
        if beam == 1:  # greedy: the same ids, not only the same text (generate's: <pad> first, cut at </s>)
            options = translator.decode_options
            ours = translator._search(translator._src_tensor([translator.encode_source(s) for s in SOURCES]), 1,
                                      0.0, max_len=options.max_len, no_repeat_ngram_size=options.no_repeat_ngram_size)
            theirs = [(row[1:] + [1]).index(1) for row in ids.tolist()]
            assert ours == [row[1:end + 1] for row, end in zip(ids.tolist(), theirs)]


def test_the_export_reads_back_into_rosetta_unchanged(exported):
    _, run, out = exported
    tokenizer = transformers.T5Tokenizer.from_pretrained(out)
    back, ours = read_hf(out).model.eval(), load_any(run).model.eval()
    assert back.config.tie_output == ours.config.tie_output and back.config.activation == ours.config.activation
    torch.testing.assert_close(logits(back, tokenizer, hf=False), logits(ours, tokenizer, hf=False), atol=1e-6, rtol=0)
    assert rosetta.load(out).translate(SOURCES, beam=1) == rosetta.load(run).translate(SOURCES, beam=1)


def test_a_twin_with_one_weight_changed_fails(exported, tmp_path):
    _, run, out = exported
    changed = twin(out, tmp_path, "decoder.block.1.layer.2.DenseReluDense.wo.weight")
    tokenizer = transformers.T5Tokenizer.from_pretrained(out)
    hf = transformers.AutoModelForSeq2SeqLM.from_pretrained(changed).eval()
    gap = logits(hf, tokenizer, hf=True) - logits(load_any(run).model.eval(), tokenizer, hf=False)
    assert float(gap.abs().max()) > 1e-3


@pytest.mark.parametrize("flag, value", [("scale_attention", True), ("norm", "layernorm"), ("bias", True),
                                         ("activation", "gelu_tanh"), ("scale_decoder_output", False),
                                         ("src_vocab_size", 7), ("d_v", 4)])
def test_a_layout_t5_cannot_express_is_one_line_naming_the_flag(exported, flag, value):
    t5_dir, _, _ = exported
    config = read_hf(t5_dir).model.config
    if flag == "scale_decoder_output" and not config.tie_output:
        value = True
    with pytest.raises(ValueError) as error:
        t5_config_to_hf(dataclasses.replace(config, **{flag: value}))
    assert "\n" not in str(error.value) and flag in str(error.value)


def test_an_mt5_run_goes_back_to_mt5(tmp_path):
    _, run = fine_tune(tmp_path, "flan-t5", steps=1, lr=0.0, model_type="mt5", seed=1)
    out = export_huggingface(run, tmp_path / "hf")
    assert json.loads((out / "config.json").read_text())["model_type"] == "mt5"
    hf = transformers.AutoModelForSeq2SeqLM.from_pretrained(out).eval()
    assert type(hf).__name__ == "MT5ForConditionalGeneration"
    tokenizer = transformers.T5Tokenizer.from_pretrained(out)
    gap = logits(hf, tokenizer, hf=True) - logits(load_any(run).model.eval(), tokenizer, hf=False)
    assert float(gap.abs().max()) < 1e-5
