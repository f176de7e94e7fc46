"""``rosetta export --format huggingface`` of Rosetta's own translation models, checked against ``transformers``.

Tiny Transformers (d_model 32, 2 + 2 layers, every weight perturbed, then 30 steps on a dozen sentence pairs so that
outputs differ in length) are saved as Rosetta checkpoints with their BPE tokenizers, in six layouts: Pre-LN →
PegasusForConditionalGeneration (one joint vocabulary: interleaved sinusoid, no biases; halves, biases, untied
output; separate vocabularies, concatenated into one of S + T ids: interleaved, tied; halves, output bias, untied),
Post-LN → MarianMTModel (separate vocabularies, interleaved; one shared table, halves, untied). Compared: logits of
a padded batch within 1e-5 (fp32; a concatenated vocabulary's target columns, its source columns -inf),
``generate``'s ids (greedy and beam 4; less S) against Rosetta's search on the original model and on the exported
directory read back (``rosetta.load``), ``AutoTokenizer``'s ids and text against Rosetta's (target ids + S), the
round trip, refusals; a twin with one weight changed, and an export without the permutation, fail the comparison.
A concatenated export decodes through its own AutoTokenizers to the run's text, is refused when read back with a
source id that could win, and a run fine-tuned from it exports to one again. A Pegasus directory written by
transformers itself (spiece.model) is read too.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")

from hf_dirs import fine_tune_translation, twin  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from tiny_translator import PAIRS  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

import rosetta  # noqa: E402
from rosetta import ModelConfig, Transformer  # noqa: E402
from rosetta.checkpoint import save_checkpoint  # noqa: E402
from rosetta.checkpoint.files import CheckpointError  # noqa: E402
from rosetta.cli import app  # noqa: E402
from rosetta.compress import hf_translation  # noqa: E402
from rosetta.compress.hf_export import export_huggingface  # noqa: E402
from rosetta.data.batching import collate_translation  # noqa: E402
from rosetta.data.tokenizer import BOS_ID, EOS_ID, PAD_ID, save_tokenizers, train_tokenizers  # noqa: E402
from rosetta.decode.beam import beam_search  # noqa: E402
from rosetta.decode.defaults import DecodeOptions  # noqa: E402
from rosetta.decode.search import greedy_search  # noqa: E402
from rosetta.nn.positional import sinusoidal_encoding  # noqa: E402
from rosetta.train import label_smoothed_nll  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")
runner = CliRunner()
TOL = 1e-5
MAX_NEW = 8  # the runs' [decode] max_len: generation_config.json's max_length is 9
ALPHA = 0.8
SOURCES = [s for s, _ in PAIRS[:6]] + ["A student likes tea.", "Books."]
MIXED = ["Héllo wörld, café!", "I am   a  student.", "猫在睡觉。Where?", "Zebra ✓ unknown", "</s> inside", ""]
LAYOUTS = {  # name → (ModelConfig flags, joint vocabulary); the exported class follows norm_first
    "pegasus-interleaved": (dict(norm_first=True, share_embeddings=True, bias=False, activation="relu"), True),
    "pegasus-halves": (dict(norm_first=True, share_embeddings=True, sinusoidal_layout="halves", activation="gelu_tanh",
                            tie_output=False, output_bias=True), True),
    "pegasus-separate": (dict(norm_first=True, share_embeddings=False, activation="silu"), False),
    "pegasus-separate-untied": (dict(norm_first=True, share_embeddings=False, sinusoidal_layout="halves",
                                     activation="gelu", tie_output=False, output_bias=True, scale_embeddings=False),
                                False),
    "marian-separate": (dict(norm_first=False, share_embeddings=False, activation="silu"), False),
    "marian-shared-halves": (dict(norm_first=False, share_embeddings=True, sinusoidal_layout="halves",
                                  activation="gelu", scale_embeddings=False, tie_output=False), True),
}


def make_run(root: Path, name: str, joint: bool, steps: int = 30, seed: int = 0, **flags
             ) -> tuple[Path, Transformer, object, object]:
    """A Rosetta checkpoint of a translation model in ``root/name``: (folder, model, source, target tokenizer).
    Random, then ``steps`` full-batch Adam steps on PAIRS (a random model repeats one token; after 30 steps the
    outputs differ in length and content, some reaching the limit, and beam search differs from greedy)."""
    src_tok, tgt_tok = train_tokenizers([s for s, _ in PAIRS], [t for _, t in PAIRS], vocab_size=120, joint=joint,
                                        min_frequency=1)
    config = ModelConfig(src_vocab_size=src_tok.vocab_size, tgt_vocab_size=tgt_tok.vocab_size, d_model=32, n_heads=4,
                         d_ff=48, n_encoder_layers=2, n_decoder_layers=2, dropout=0.0, max_len=64, **flags)
    torch.manual_seed(seed)
    model = Transformer(config).eval()
    with torch.no_grad():  # LayerNorms and biases away from 1 and 0 from the start
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    if steps:
        data = collate_translation([(src_tok.encode(s) + [EOS_ID], tgt_tok.encode(t)) for s, t in PAIRS], PAD_ID,
                                   BOS_ID, EOS_ID)
        optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
        model.train()
        for _ in range(steps):
            loss, _, count = label_smoothed_nll(model(data.src, data.tgt_in), data.tgt_out, PAD_ID, 0.0)
            optimizer.zero_grad()
            (loss / count).backward()
            optimizer.step()
        model.eval()
    info = {"family": "translation", "model": config.to_dict(), "src_lang": "en", "tgt_lang": "zh",
            "decode": {"beam": 4, "length_penalty": ALPHA, "max_len": MAX_NEW}}
    folder = save_checkpoint(root / name, model, info, lambda d: save_tokenizers(d, src_tok, tgt_tok))
    return folder, model, src_tok, tgt_tok


@pytest.fixture(scope="module", params=sorted(LAYOUTS))
def exported(request, tmp_path_factory):
    """(layout name, Rosetta folder, model, source / target tokenizers, exported directory)."""
    flags, joint = LAYOUTS[request.param]
    root = tmp_path_factory.mktemp(request.param)
    folder, model, src_tok, tgt_tok = make_run(root, "run", joint, **flags)
    return request.param, folder, model, src_tok, tgt_tok, export_huggingface(folder, root / "hf")


def batch(tokenizer, texts=SOURCES):
    ids = [tokenizer.frame_source(tokenizer.encode(t)) for t in texts]
    width = max(map(len, ids))
    src = torch.tensor([row + [0] * (width - len(row)) for row in ids])
    return src, (src != 0).long()


def targets(model) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    rows = torch.randint(4, model.config.tgt_vocab_size, (len(SOURCES), 7), generator=generator)
    return torch.cat([torch.full((len(SOURCES), 1), model.config.bos_id), rows], dim=1)


def split(directory: Path) -> int:
    """S, where a concatenated vocabulary's target ids start (0: none)."""
    return json.loads((directory / "config.json").read_text()).get("rosetta_source_vocab_size", 0)


def hf_logits(directory: Path, src, mask, tgt) -> torch.Tensor:
    """The logits of ``tgt`` (our target ids) over the target's columns; a concatenated vocabulary's source columns
    must be -inf (they never win)."""
    hf = transformers.AutoModelForSeq2SeqLM.from_pretrained(directory).eval()
    offset = split(directory)
    with torch.no_grad():
        logits = hf(input_ids=src, attention_mask=mask, decoder_input_ids=tgt + offset).logits
    assert torch.isneginf(logits[..., :offset]).all()
    return logits[..., offset:]


def test_the_export_computes_our_logits_and_a_changed_twin_does_not(exported, tmp_path, monkeypatch):
    name, folder, model, src_tok, _, out = exported
    hf_config = json.loads((out / "config.json").read_text())
    assert hf_config["model_type"] == name.split("-")[0]
    hf = transformers.AutoModelForSeq2SeqLM.from_pretrained(out)
    assert type(hf).__name__ == {"pegasus": "PegasusForConditionalGeneration", "marian": "MarianMTModel"}[
        hf_config["model_type"]]
    src, mask = batch(src_tok)
    tgt = targets(model)
    with torch.no_grad():
        ours = model(src, tgt)
    assert (hf_logits(out, src, mask, tgt) - ours).abs().max().item() < TOL
    changed = twin(out, tmp_path, "model.decoder.layers.1.fc2.weight", index=5)
    assert (hf_logits(changed, src, mask, tgt) - ours).abs().max().item() > 1e-3
    if model.config.sinusoidal_layout == "interleaved":  # the permutation is what makes it exact
        monkeypatch.setattr(hf_translation, "permute_residual", lambda state, order: state)
        unpermuted = export_huggingface(folder, tmp_path / "unpermuted")
        assert (hf_logits(unpermuted, src, mask, tgt) - ours).abs().max().item() > 1e-3


def generated(hf, src, mask, beam: int, offset: int = 0) -> list[list[int]]:
    """``generate``'s outputs without the start token, </s> and padding, less ``offset`` (S: our target ids)."""
    with torch.no_grad():
        rows = hf.generate(input_ids=src, attention_mask=mask, num_beams=beam, do_sample=False).tolist()
    eos, pad = hf.generation_config.eos_token_id, hf.generation_config.pad_token_id
    out = []
    for row in rows:
        row = row[1:]
        out.append([t - offset for t in (row[: row.index(eos)] if eos in row else row) if t != pad])
    assert all(t >= 0 for row in out for t in row)  # never a source id
    return out


@pytest.mark.parametrize("beam", [1, 4])
def test_generate_gives_our_search_and_rosetta_load_of_the_export(exported, beam):
    _, _, model, src_tok, tgt_tok, out = exported
    hf = transformers.AutoModelForSeq2SeqLM.from_pretrained(out).eval()
    assert hf.generation_config.max_length == MAX_NEW + 1 and hf.generation_config.num_beams == 4
    src, mask = batch(src_tok)
    expected = generated(hf, src, mask, beam, split(out))
    assert len({len(ids) for ids in expected}) > 2  # outputs of several lengths, some cut at the limit
    if beam == 1:
        ours = greedy_search(model, src, max_len=MAX_NEW)
    else:
        ours = beam_search(model, src, beam_size=4, length_penalty=ALPHA, length_norm="hf", max_len=MAX_NEW)
    assert ours == expected
    translator = rosetta.load(out)
    assert translator._search(src, beam, translator.decode_options.length_penalty, max_len=MAX_NEW) == expected
    assert translator.translate(SOURCES, beam=beam) == [tgt_tok.decode(ids) for ids in expected]


@pytest.mark.parametrize("exported", ["pegasus-separate", "pegasus-separate-untied"], indirect=True)
def test_a_concatenated_vocabulary_decodes_to_our_text_and_is_refused_when_a_source_id_could_win(exported, tmp_path):
    """Separate vocabularies as Pegasus's one (S + T ids): config.json says S, the decoder's ids are the target's
    + S, ``generate`` with the tokenizers' own batch gives our text; read back, a source id that could be written
    (final_logits_bias not -inf there) is refused."""
    _, folder, model, src_tok, tgt_tok, out = exported
    offset = split(out)
    config = model.config
    hf_config = json.loads((out / "config.json").read_text())
    assert offset == config.src_vocab_size and hf_config["vocab_size"] == offset + config.tgt_vocab_size
    assert hf_config["tie_word_embeddings"] is False and hf_config["pad_token_id"] == PAD_ID + offset
    gen = json.loads((out / "generation_config.json").read_text())
    assert [gen[k] for k in ("decoder_start_token_id", "eos_token_id", "pad_token_id")] == [
        BOS_ID + offset, EOS_ID + offset, PAD_ID + offset]
    assert gen["bad_words_ids"] == [[PAD_ID + offset], [BOS_ID + offset]]
    hf = transformers.AutoModelForSeq2SeqLM.from_pretrained(out).eval()
    source = transformers.AutoTokenizer.from_pretrained(out)
    target = transformers.AutoTokenizer.from_pretrained(out, subfolder="target")
    enc = source(SOURCES, padding=True, return_tensors="pt")
    for beam in (1, 4):
        with torch.no_grad():
            texts = target.batch_decode(hf.generate(**enc, num_beams=beam), skip_special_tokens=True)
        if beam == 1:
            ours = greedy_search(model, enc["input_ids"], max_len=MAX_NEW)
            assert texts == rosetta.load(folder).translate(SOURCES, beam=1)  # the run itself
        else:
            ours = beam_search(model, enc["input_ids"], beam_size=4, length_penalty=ALPHA, length_norm="hf",
                               max_len=MAX_NEW)
        assert texts == [tgt_tok.decode(ids) for ids in ours] == rosetta.load(out).translate(SOURCES, beam=beam)
    copy = tmp_path / "winnable"
    shutil.copytree(out, copy)
    tensors = load_file(copy / "model.safetensors")
    tensors["final_logits_bias"][0, 5] = 0.0
    save_file(tensors, copy / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="final_logits_bias must be -inf"):
        rosetta.load(copy)


@pytest.mark.parametrize("exported", ["pegasus-separate"], indirect=True)
def test_a_run_fine_tuned_from_a_concatenated_export_goes_back_to_one(exported, tmp_path):
    """``[model] pretrained = EXPORT``: the run is the separate-vocabulary Transformer (target ids less S), and its
    export (the checkpoint's family: Pegasus, the copied tokenizer files) decodes in ``generate`` what it does."""
    _, _, model, _, tgt_tok, out = exported
    run = fine_tune_translation(out, PAIRS, tmp_path, steps=4)
    tuned = rosetta.load(run)
    assert not tuned.model.config.share_embeddings and tuned.model.config.tgt_vocab_size == tgt_tok.vocab_size
    again = export_huggingface(run, tmp_path / "again")
    assert split(again) == split(out) and (again / "target" / "tokenizer.json").read_bytes() == (
        out / "target" / "tokenizer.json").read_bytes()
    hf = transformers.AutoModelForSeq2SeqLM.from_pretrained(again).eval()
    source = transformers.AutoTokenizer.from_pretrained(again)
    target = transformers.AutoTokenizer.from_pretrained(again, subfolder="target")
    for beam in (1, 4):
        with torch.no_grad():
            ids = hf.generate(**source(SOURCES, padding=True, return_tensors="pt"), num_beams=beam)
        assert target.batch_decode(ids, skip_special_tokens=True) == tuned.translate(SOURCES, beam=beam)


def test_auto_tokenizer_reads_text_as_rosetta_does(exported):
    _, _, _, src_tok, tgt_tok, out = exported
    tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    target = (transformers.AutoTokenizer.from_pretrained(out, subfolder="target")
              if (out / "target").is_dir() else tokenizer)
    assert (out / "target").is_dir() == (src_tok is not tgt_tok)
    offset = split(out)
    for text in MIXED + SOURCES:
        assert tokenizer(text)["input_ids"] == src_tok.frame_source(src_tok.encode(text)), text
        ids = tgt_tok.encode(text)
        assert target(text, add_special_tokens=False)["input_ids"] == [i + offset for i in ids], text
        assert target.decode([i + offset for i in ids], skip_special_tokens=True) == tgt_tok.decode(ids), text
    padded = tokenizer(SOURCES, padding=True, return_tensors="pt")
    src, mask = batch(src_tok)
    assert torch.equal(padded["input_ids"], src) and torch.equal(padded["attention_mask"], mask)


def test_the_export_reads_back_into_rosetta_with_the_same_logits(exported, tmp_path):
    _, folder, model, src_tok, _, out = exported
    translator = rosetta.load(out)
    for key in ("src_vocab_size", "tgt_vocab_size", "share_embeddings", "norm_first", "pad_id", "bos_id", "eos_id"):
        assert getattr(translator.model.config, key) == getattr(model.config, key), key
    src, _ = batch(src_tok)
    tgt = targets(model)
    with torch.no_grad():
        assert (translator.model(src, tgt) - model(src, tgt)).abs().max().item() < TOL
    result = runner.invoke(app, ["translate", "--model", str(out), "--beam", "1", SOURCES[0]])
    assert result.exit_code == 0 and translator.translate(SOURCES[:1], beam=1)[0] in result.output, result.output
    with pytest.raises(ValueError, match="already is a Hugging Face directory"):
        export_huggingface(out, tmp_path / "again")


def test_the_generation_limit_follows_the_runs_ratio_when_it_has_no_max_len():
    config = ModelConfig(src_vocab_size=50, tgt_vocab_size=50, d_model=16, n_heads=2, max_len=512)
    gen = hf_translation.generation_config(config, DecodeOptions(beam=5, length_penalty=1.0, max_len_ratio=1.5,
                                                                 max_len_offset=10))
    assert gen["max_length"] == int(1.5 * 255) + 10 + 1 and gen["num_beams"] == 5
    assert gen["forced_eos_token_id"] is None and gen["bad_words_ids"] == [[0], [1]]
    small = ModelConfig(src_vocab_size=50, tgt_vocab_size=50, d_model=16, n_heads=2, max_len=64)
    assert hf_translation.generation_config(small, DecodeOptions())["max_length"] == 65  # the positions cap it


def test_the_permutation_turns_the_interleaved_sinusoid_into_halves():
    for d in (8, 32, 33):
        order = hf_translation.halves_order(d)
        assert torch.equal(sinusoidal_encoding(20, d)[:, order], sinusoidal_encoding(20, d, layout="halves"))


REFUSED = {  # flags → a word the one-line refusal must contain
    "rope": (dict(positional="rope"), "positional='rope'"),
    "learned": (dict(positional="learned"), "positional='learned'"),
    "relative": (dict(positional="relative", scale_attention=False), "positional='relative'"),
    "rmsnorm": (dict(norm="rmsnorm"), "norm='rmsnorm'"),
    "swiglu": (dict(activation="swiglu"), "activation='swiglu'"),
    "copy": (dict(copy_attention=True, share_embeddings=True), "copy_attention=True"),
    "pruned": (dict(heads_per_layer={"encoder": [4, 2]}), "heads_per_layer"),
    "d_k": (dict(d_k=4, d_v=4), "d_k=4"),
    "eps": (dict(norm_eps=1e-6), "norm_eps=1e-06"),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_layouts_without_an_exact_hugging_face_class_are_refused_in_one_line(name, tmp_path):
    flags, words = REFUSED[name]
    folder, *_ = make_run(tmp_path, "run", flags.get("share_embeddings", False), steps=0, **flags)
    with pytest.raises(ValueError) as error:
        export_huggingface(folder, tmp_path / "hf")
    message = str(error.value)
    assert words in message and "\n" not in message and not (tmp_path / "hf").exists()
    if name == "rope":  # the CLI: the same line, exit code 2, no traceback
        result = runner.invoke(app, ["export", "--model", str(folder), "--format", "huggingface", "--out",
                                     str(tmp_path / "hf")])
        assert result.exit_code == 2 and words in result.output and "Traceback" not in result.output
        assert not (tmp_path / "hf").exists()


def test_a_pegasus_directory_transformers_wrote_reads_into_rosetta(tmp_path):
    """google/pegasus-*'s shape: spiece.model (PegasusTokenizer's numbering, offset 103), relu, scaled embeddings,
    decoder start = pad; and the same directory with the tokenizer.json transformers saves."""
    spm = pytest.importorskip("sentencepiece")
    lines = [s for s, _ in PAIRS] + ["summarize: the weather is nice today and the children play football."]
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines * 3), model_prefix=str(tmp_path / "sp"), vocab_size=70, model_type="unigram",
        hard_vocab_limit=False, character_coverage=1.0, pad_id=0, eos_id=1, unk_id=2, bos_id=-1, minloglevel=2)
    directory = tmp_path / "pegasus"
    directory.mkdir()
    (tmp_path / "sp.model").rename(directory / "spiece.model")
    reference = transformers.PegasusTokenizer.from_pretrained(directory)
    torch.manual_seed(0)
    config = transformers.PegasusConfig(
        vocab_size=len(reference), d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=48, decoder_ffn_dim=48, activation_function="relu",
        scale_embedding=True, max_position_embeddings=64, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    hf = transformers.PegasusForConditionalGeneration(config).eval()
    with torch.no_grad():
        for p in hf.parameters():
            if p.requires_grad:  # not the position tables: the sinusoid
                p.add_(torch.randn_like(p) * 0.05)
        hf.model.shared.weight[1] *= 2.5
    hf.save_pretrained(directory)
    (directory / "generation_config.json").write_text(json.dumps(
        {"decoder_start_token_id": 0, "eos_token_id": 1, "pad_token_id": 0, "forced_eos_token_id": 1,
         "max_length": MAX_NEW + 1, "num_beams": 4, "length_penalty": ALPHA, "bad_words_ids": [[0]]}))
    with_json = tmp_path / "pegasus-json"
    shutil.copytree(directory, with_json)
    (with_json / "spiece.model").unlink()
    reference.save_pretrained(with_json)  # tokenizer.json (a Unigram with PegasusTokenizer's ids)
    for folder in (directory, with_json):
        translator = rosetta.load(folder)
        tok = translator.src_tokenizer
        for text in lines + MIXED[:4]:
            assert tok.frame_source(tok.encode(text)) == reference(text)["input_ids"], (folder.name, text)
        enc = reference(lines, padding=True, return_tensors="pt")
        tgt = torch.randint(105, len(reference), (len(lines), 6), generator=torch.Generator().manual_seed(0))
        tgt = torch.cat([torch.zeros(len(lines), 1, dtype=torch.long), tgt], dim=1)
        with torch.no_grad():
            expected = hf(**enc, decoder_input_ids=tgt).logits
            assert (translator.model(enc["input_ids"], tgt) - expected).abs().max().item() < TOL
        saved = transformers.AutoModelForSeq2SeqLM.from_pretrained(folder).eval()  # with generation_config.json
        for beam in (1, 4):
            ids = generated(saved, enc["input_ids"], enc["attention_mask"], beam)
            alpha = translator.decode_options.length_penalty
            assert translator._search(enc["input_ids"], beam, alpha, max_len=MAX_NEW) == ids, (folder.name, beam)
            texts = reference.batch_decode(ids, skip_special_tokens=True)
            assert translator.translate(lines, beam=beam) == [t.strip() for t in texts], (folder.name, beam)
