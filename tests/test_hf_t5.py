"""T5 / flan-T5 / mT5 directories in Rosetta's own Transformer (rosetta.hub.t5), against ``transformers``.

The reference is built here, offline: a tiny SentencePiece model trained on a few task-prefixed lines (T5's ids:
<pad> 0, </s> 1, <unk> 2) read by ``T5Tokenizer.from_pretrained``, and random ``T5ForConditionalGeneration``
models (d_model 32, 2 + 2 layers) in both layouts — T5 (ReLU, output tied and scaled by d^-½) and T5 v1.1 /
flan-T5 / mT5 (gated GELU, untied head) — saved with ``save_pretrained``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")
spm = pytest.importorskip("sentencepiece")

from hf_dirs import LAYOUTS, LINES, twin  # noqa: E402
from hf_dirs import T5_MAX_LENGTH as MAX_LENGTH  # noqa: E402
from hf_dirs import t5_directory as make_dir  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

import rosetta  # noqa: E402
from rosetta.checkpoint import CheckpointError  # noqa: E402
from rosetta.cli import app  # noqa: E402
from rosetta.hub.reader import read_hf  # noqa: E402

SOURCES = ["translate English to German: The cat sits.", "summarize: the children play in the park.",
           "translate German to English: Ich bin ein Student.", "Where is the mat?", "Héllo wörld ✓ 猫"]
runner = CliRunner()


@pytest.fixture(scope="module", params=list(LAYOUTS))
def t5_dir(request, tmp_path_factory) -> tuple[Path, object, object]:
    directory = make_dir(tmp_path_factory.mktemp(request.param), request.param)
    hf = transformers.T5ForConditionalGeneration.from_pretrained(directory, attn_implementation="eager").eval()
    return directory, hf, transformers.T5Tokenizer.from_pretrained(directory)


def batch(tokenizer, sources=SOURCES[:3], targets=LINES[1:4]):
    src = tokenizer(list(sources), padding=True, return_tensors="pt")
    tgt = tokenizer(text_target=list(targets), padding=True, return_tensors="pt")["input_ids"]
    decoder_in = torch.cat([torch.zeros(len(targets), 1, dtype=torch.long), tgt[:, :-1]], dim=1)
    decoder_mask = (decoder_in != 0).long()
    decoder_mask[:, 0] = 1
    return src["input_ids"], src["attention_mask"], decoder_in, decoder_mask


def logit_gap(model, hf, tokenizer) -> float:
    src, src_mask, dec, dec_mask = batch(tokenizer)
    with torch.no_grad():
        ref = hf(input_ids=src, attention_mask=src_mask, decoder_input_ids=dec, decoder_attention_mask=dec_mask)
        ours = model(src, dec)
    return float((ours - ref.logits)[dec_mask.bool()].abs().max())


def test_logits_and_attention_match_transformers(t5_dir):
    directory, hf, tokenizer = t5_dir
    loaded = read_hf(directory)
    assert loaded.family == "translation" and loaded.model.config.positional == "relative"
    assert logit_gap(loaded.model, hf, tokenizer) < 1e-5
    src, src_mask, dec, dec_mask = batch(tokenizer)
    with torch.no_grad():
        ref = hf(input_ids=src, attention_mask=src_mask, decoder_input_ids=dec, decoder_attention_mask=dec_mask,
                 output_attentions=True)
        _, maps = loaded.model(src, dec, return_attention=True)
    for ours, theirs in (("encoder", "encoder_attentions"), ("decoder", "decoder_attentions"),
                         ("cross", "cross_attentions")):
        for mine, other in zip(maps[ours], getattr(ref, theirs), strict=True):
            torch.testing.assert_close(mine, other, atol=1e-5, rtol=0)


def test_a_twin_with_one_weight_changed_fails(t5_dir, tmp_path):
    directory, hf, tokenizer = t5_dir
    changed = twin(directory, tmp_path, "decoder.block.1.layer.2.DenseReluDense.wo.weight")
    assert logit_gap(read_hf(changed).model, hf, tokenizer) > 1e-3


def test_tokenizer_ids_and_text_match_t5_tokenizer(t5_dir):
    directory, _, tokenizer = t5_dir
    ours = read_hf(directory).tokenizer
    for text in SOURCES + LINES:
        expected = tokenizer(text)["input_ids"]
        assert ours.frame_source(ours.encode(text)) == expected, text
        # (T5Tokenizer keeps the spaces left where skipped pieces were; Rosetta strips the ends)
        assert ours.decode(expected) == tokenizer.decode(expected, skip_special_tokens=True).strip(), text


@pytest.mark.parametrize("beam", [1, 4])
def test_translate_gives_the_text_generate_gives(t5_dir, beam):
    directory, hf, tokenizer = t5_dir
    enc = tokenizer(SOURCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        out = hf.generate(**enc, num_beams=beam)  # max_length etc. from generation_config.json
    expected = [text.strip() for text in tokenizer.batch_decode(out, skip_special_tokens=True)]
    lengths = (out != 0).sum(dim=1)  # generated tokens, </s> included
    assert int(lengths.max()) == MAX_LENGTH - 1, lengths  # cut at the limit
    if beam == 1 and directory.name.startswith("flan"):
        assert int(lengths.min()) < MAX_LENGTH - 1, lengths  # and ended by </s>
    assert rosetta.load(directory).translate(SOURCES, beam=beam) == expected


def test_cli_translate_and_mt5(tmp_path):
    directory = make_dir(tmp_path / "mt5", "flan-t5", model_type="mt5", seed=1)
    hf = transformers.T5ForConditionalGeneration.from_pretrained(directory).eval()  # mT5 = T5 v1.1's blocks
    tokenizer = transformers.T5Tokenizer.from_pretrained(directory)
    with torch.no_grad():
        expected = [t.strip() for t in tokenizer.batch_decode(
            hf.generate(**tokenizer(SOURCES[:1], return_tensors="pt"), num_beams=4), skip_special_tokens=True)]
    result = runner.invoke(app, ["translate", "--model", str(directory), "--beam", "4", SOURCES[0]])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == expected


def test_a_directory_without_spiece_model_is_one_line(t5_dir, tmp_path):
    directory, _, _ = t5_dir
    broken = tmp_path / "broken"
    shutil.copytree(directory, broken)
    (broken / "spiece.model").unlink()
    with pytest.raises(CheckpointError) as error:
        rosetta.load(broken)
    assert "\n" not in str(error.value) and "spiece.model not found" in str(error.value)
