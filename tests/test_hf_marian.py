"""Marian (opus-mt) directories in Rosetta's own Transformer, checked against ``transformers``' MarianMTModel.

The reference is built here, offline: two tiny SentencePiece models trained on a few dozen English / German
lines, a vocab.json of their pieces, ``MarianTokenizer`` from those files, and a random ``MarianMTModel``
(d_model 32, 2 + 2 layers, swish, scaled embeddings, a random ``final_logits_bias``) saved with
``save_pretrained`` next to a generation_config.json as opus-mt ships one.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import warnings
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")
spm = pytest.importorskip("sentencepiece")

from hf_dirs import DE, MAX_LENGTH, marian_directory  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from transformers import MarianMTModel, MarianTokenizer  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

import rosetta  # noqa: E402
from rosetta.checkpoint import CheckpointError  # noqa: E402
from rosetta.cli import app  # noqa: E402
from rosetta.hub.marian import config_from_hf, config_to_hf, weights_to_hf  # noqa: E402
from rosetta.hub.reader import read_hf  # noqa: E402
from rosetta.models.transformer import Transformer  # noqa: E402

SOURCES = ["The cat sits.", "I am a student who likes green apples.", "Where is the train station?",
           "They play football in the park.", "My mother reads a letter.", "Hello wörld café!", "Kind teacher."]
MIXED = ["Héllo wörld, café crème!", "Emoji 😀 and 🚀 here.", "Unknown ß€ŋ ✓ chars", "  spaces   around  ",
         "日本語 text", ">>deu<< The cat.", "</s> inside <unk> text", ""]
runner = CliRunner()


@pytest.fixture(scope="module")
def marian_dir(tmp_path_factory) -> Path:
    return marian_directory(tmp_path_factory.mktemp("opus-mt-tiny"))


@pytest.fixture(scope="module")
def reference(marian_dir):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tokenizer = MarianTokenizer.from_pretrained(marian_dir)
    model = MarianMTModel.from_pretrained(marian_dir, attn_implementation="eager").eval()
    return model, tokenizer


def _batch(tokenizer, sources=SOURCES[:4], targets=DE[:4]):
    """A padded batch: source ids and mask, decoder inputs (<pad> = start, then the target, right-padded)."""
    src = tokenizer(list(sources), padding=True, return_tensors="pt")
    tgt = tokenizer(text_target=list(targets), padding=True, return_tensors="pt")["input_ids"]
    pad = tokenizer.pad_token_id
    decoder_in = torch.cat([torch.full((len(targets), 1), pad), tgt[:, :-1]], dim=1)
    decoder_mask = (decoder_in != pad).long()
    decoder_mask[:, 0] = 1
    return src["input_ids"], src["attention_mask"], decoder_in, decoder_mask


def _max_logit_gap(model, reference, tokenizer) -> float:
    src, src_mask, dec, dec_mask = _batch(tokenizer)
    with torch.no_grad():
        ref = reference(input_ids=src, attention_mask=src_mask, decoder_input_ids=dec,
                        decoder_attention_mask=dec_mask).logits
        ours = model(src, dec)
    return float((ours - ref)[dec_mask.bool()].abs().max())


# ------------------------------------------------------------------------------------------ 1. numbers
def test_logits_and_every_attention_map_match_transformers(marian_dir, reference):
    hf, tokenizer = reference
    loaded = read_hf(marian_dir)
    assert loaded.family == "translation" and loaded.model.config.sinusoidal_layout == "halves"
    src, src_mask, dec, dec_mask = _batch(tokenizer)
    assert (src_mask == 0).any() and (dec_mask == 0).any()  # the batch is padded on both sides
    with torch.no_grad():
        ref = hf(input_ids=src, attention_mask=src_mask, decoder_input_ids=dec, decoder_attention_mask=dec_mask,
                 output_attentions=True)
        logits, maps = loaded.model(src, dec, return_attention=True)
    real = dec_mask.bool()
    torch.testing.assert_close(logits[real], ref.logits[real], atol=1e-5, rtol=0)
    for ours, theirs in (("encoder", "encoder_attentions"), ("decoder", "decoder_attentions"),
                         ("cross", "cross_attentions")):
        assert len(maps[ours]) == 2
        for mine, other in zip(maps[ours], getattr(ref, theirs)):
            torch.testing.assert_close(mine, other, atol=1e-5, rtol=0)


def test_cached_incremental_decoding_equals_teacher_forcing(marian_dir, reference):
    _, tokenizer = reference
    model = read_hf(marian_dir).model
    src, _, dec, _ = _batch(tokenizer, SOURCES[:2], DE[:2])
    dec = dec[:, :6]  # no padding in the first six positions of these two targets
    with torch.no_grad():
        forced = model(src, dec)
        memory, memory_mask, _ = model.encode(src)
        state = model.start_decoding(memory, memory_mask, src)
        steps = torch.cat([model.decode_step(dec[:, t : t + 1], state) for t in range(dec.shape[1])], dim=1)
    torch.testing.assert_close(steps, forced, atol=1e-5, rtol=0)


def test_a_twin_with_one_weight_changed_fails_the_comparison(marian_dir, reference, tmp_path):
    hf, tokenizer = reference
    assert _max_logit_gap(read_hf(marian_dir).model, hf, tokenizer) < 1e-5
    tensors = load_file(marian_dir / "model.safetensors")
    for name, change in (("model.decoder.layers.1.fc2.weight", "nudge"),
                         ("model.encoder.layers.0.self_attn.q_proj.weight", "swap")):
        twin = tmp_path / change
        shutil.copytree(marian_dir, twin)
        changed = dict(tensors)
        if change == "nudge":
            changed[name] = tensors[name].clone()
            changed[name][3, 5] += 0.05
        else:  # W^Q and W^K of one layer exchanged
            key = name.replace("q_proj", "k_proj")
            changed[name], changed[key] = tensors[key], tensors[name]
        save_file(changed, twin / "model.safetensors", metadata={"format": "pt"})
        assert _max_logit_gap(read_hf(twin).model, hf, tokenizer) > 1e-3, change


# ------------------------------------------------------------------------------------------ 2. translations
@pytest.mark.parametrize("beam, length_penalty", [(1, None), (4, None), (4, 0.6), (4, 2.0)])
def test_translate_gives_the_text_generate_gives(marian_dir, reference, beam, length_penalty):
    hf, tokenizer = reference
    batch = tokenizer(SOURCES, padding=True, return_tensors="pt")
    extra = {} if length_penalty is None else {"length_penalty": length_penalty}
    with torch.no_grad():
        out = hf.generate(**batch, num_beams=beam, **extra)  # max_length etc. from generation_config.json
    expected = tokenizer.batch_decode(out, skip_special_tokens=True)
    lengths = (out != tokenizer.pad_token_id).sum(dim=1)
    if beam == 4 and length_penalty is None:  # outputs that end early and outputs cut at max_length
        assert int(lengths.min()) < MAX_LENGTH - 1 and int(lengths.max()) == MAX_LENGTH - 1
    translator = rosetta.load(marian_dir)
    assert translator.decode_options.beam == 4 and translator.decode_options.length_norm == "hf"
    assert translator.translate(SOURCES, beam=beam, length_penalty=length_penalty) == expected


def test_beam_search_differs_from_greedy_somewhere(marian_dir):
    translator = rosetta.load(marian_dir)
    assert translator.translate(SOURCES, beam=1) != translator.translate(SOURCES, beam=4)


def test_cli_translate_prints_what_generate_gives(marian_dir, reference):
    hf, tokenizer = reference
    text = SOURCES[1]
    with torch.no_grad():
        expected = tokenizer.batch_decode(hf.generate(**tokenizer([text], return_tensors="pt"), num_beams=4),
                                          skip_special_tokens=True)[0]
    result = runner.invoke(app, ["translate", "--model", str(marian_dir), "--beam", "4", text])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [expected]


# ------------------------------------------------------------------------------------------ 3. tokenizer
def test_tokenizer_ids_and_text_match_marian_tokenizer(marian_dir, reference):
    _, tokenizer = reference
    loaded = read_hf(marian_dir)
    src, tgt = loaded.tokenizer, loaded.target_tokenizer
    unk = tokenizer.unk_token_id
    for text in MIXED + SOURCES:
        ids = tokenizer(text)["input_ids"]
        assert src.frame_source(src.encode(text)) == ids, text
        assert tgt.encode(text) + [tgt.eos_id] == tokenizer(text_target=text)["input_ids"], text
        assert src.decode(ids) == tokenizer.decode(ids, skip_special_tokens=True), text
    assert unk in tokenizer("Emoji 😀")["input_ids"] and unk in tokenizer(text_target="grüne Äpfel")["input_ids"]
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):  # any ids, special ones among them
        ids = torch.randint(0, src.vocab_size, (12,), generator=generator).tolist()
        assert tgt.decode(ids) == tokenizer.decode(ids, skip_special_tokens=True), ids
    assert src.vocab_size == tokenizer.vocab_size and src.pad_id == tokenizer.pad_token_id
    assert [src.id_to_token(i) for i in tokenizer("The cat.")["input_ids"]] == \
        tokenizer.convert_ids_to_tokens(tokenizer("The cat.")["input_ids"])


# ------------------------------------------------------------------------------------------ 4. broken directories
def _break(directory: Path, how: str) -> None:
    config = json.loads((directory / "config.json").read_text())
    if how == "unknown model_type":
        (directory / "config.json").write_text(json.dumps({**config, "model_type": "marianne"}))
    elif how == "missing source.spm":
        (directory / "source.spm").unlink()
    elif how == "pickle only":
        (directory / "model.safetensors").unlink()
        (directory / "pytorch_model.bin").write_bytes(b"\x80\x04not really a pickle")
    elif how == "truncated safetensors":
        data = (directory / "model.safetensors").read_bytes()
        (directory / "model.safetensors").write_bytes(data[: len(data) // 2])
    elif how == "wrong shapes":
        (directory / "config.json").write_text(json.dumps({**config, "encoder_ffn_dim": 48, "decoder_ffn_dim": 48}))


BROKEN = {"unknown model_type": "marianne", "missing source.spm": "source.spm", "pickle only": "pytorch_model.bin",
          "truncated safetensors": "truncated", "wrong shapes": "shapes do not match"}


@pytest.mark.parametrize("how", list(BROKEN))
def test_a_broken_directory_is_one_line_without_traceback(marian_dir, tmp_path, how):
    directory = tmp_path / "broken"
    shutil.copytree(marian_dir, directory)
    _break(directory, how)
    with pytest.raises(CheckpointError) as error:
        rosetta.load(directory)
    message = str(error.value)
    assert "\n" not in message and BROKEN[how] in message, message
    result = runner.invoke(app, ["translate", "--model", str(directory), "Hello."])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.output.strip().startswith("error:") and len(result.output.strip().splitlines()) == 1


# ------------------------------------------------------------------------------------------ 5. the way back
def test_a_rosetta_marian_model_goes_back_to_a_directory_transformers_reads(marian_dir, tmp_path):
    hf_config = json.loads((marian_dir / "config.json").read_text())
    config = config_from_hf(hf_config)
    torch.manual_seed(1)
    model = Transformer(config).eval()
    with torch.no_grad():
        model.output.bias.normal_(0, 0.5)
    out = tmp_path / "back"
    out.mkdir()
    (out / "config.json").write_text(json.dumps(config_to_hf(config)))
    save_file(weights_to_hf(model.state_dict(), config), out / "model.safetensors", metadata={"format": "pt"})
    hf = MarianMTModel.from_pretrained(out).eval()
    src = torch.tensor([[5, 9, 14, 3, 0], [7, 8, 0, config.pad_id, config.pad_id]])
    dec = torch.tensor([[config.pad_id, 4, 11, 6], [config.pad_id, 12, 10, 2]])
    with torch.no_grad():
        ref = hf(input_ids=src, attention_mask=(src != config.pad_id).long(), decoder_input_ids=dec).logits
        torch.testing.assert_close(model(src, dec), ref, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="not Marian's layout"):
        config_to_hf(config.replace(norm_first=True))


def test_rosettas_own_beam_conventions_would_not_give_generates_text(marian_dir, reference):
    """Why a Marian directory decodes with ``length_norm="hf"``: GNMT's lp and exact stopping pick other beams."""
    hf, tokenizer = reference
    with torch.no_grad():
        expected = tokenizer.batch_decode(hf.generate(**tokenizer(SOURCES, padding=True, return_tensors="pt")),
                                          skip_special_tokens=True)
    translator = rosetta.load(marian_dir)
    translator.decode_options = dataclasses.replace(translator.decode_options, length_norm="gnmt")
    assert translator.translate(SOURCES, beam=4) != expected
