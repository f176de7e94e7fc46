"""BART directories in Rosetta's own Transformer, checked against ``transformers``' BartForConditionalGeneration.

The reference is built here, offline: a byte-level BPE trained on a few lines (<s> <pad> </s> <unk> <mask> at ids
0–4, as BART's), ``BartTokenizerFast``'s files saved from it, and a random ``BartForConditionalGeneration``
(d_model 32, 2 + 2 layers, GELU, every weight perturbed, a random ``final_logits_bias``) saved with
``save_pretrained`` next to a generation_config.json as facebook/bart-base ships one (forced <s> first and </s> at
the limit, no_repeat_ngram_size 3, beam 4, early_stopping). Compared: encoder output, logits and every attention map
within 1e-5 (fp32), cached decoding, ``generate``'s ids (greedy, beam 4 under three generation configs), token
ids, the CLI, the way back, and refusals; a twin with one weight changed fails the comparison.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch

transformers = pytest.importorskip("transformers")

from hf_dirs import cli, runner, twin  # noqa: E402
from tokenizers import ByteLevelBPETokenizer  # noqa: E402
from transformers import (  # noqa: E402
    BartConfig,
    BartForConditionalGeneration,
    BartModel,
    BartTokenizerFast,
)

import rosetta  # noqa: E402
from rosetta.checkpoint import CheckpointError  # noqa: E402
from rosetta.cli import app  # noqa: E402
from rosetta.decode.beam import beam_search  # noqa: E402
from rosetta.decode.search import greedy_search  # noqa: E402
from rosetta.hub.bart import config_from_hf, config_to_hf, weights_to_hf  # noqa: E402
from rosetta.hub.generation import generation_options  # noqa: E402
from rosetta.hub.reader import read_hf  # noqa: E402
from rosetta.models.transformer import Transformer  # noqa: E402

TOL = 1e-5
SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
CORPUS = ["The cat sat on the mat.", "Ada Lovelace wrote the notes in 1843!", "a dog ran after the cat",
          "Zebra quartz, éclair? 猫 🐱", "Where is the train station?", "She reads a book every evening."] * 3
SOURCES = ["The cat sat.", "Ada wrote the notes in 1843 on the mat!", "a dog", "Zebra quartz, éclair? 猫",
           "Where is the cat?", "She reads the notes every evening."]
MIXED = ["Héllo wörld, café crème!", "Emoji 😀 and 🚀 here.", "  spaces   around  ", "日本語 text",
         "</s> inside <unk> text", "the <mask> sat", "tabs\tand\nnewlines", ""]
MAX_LENGTH = 20
BART = dict(d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4, decoder_attention_heads=4,
            encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64)
BART_BASE_GENERATION = {"bos_token_id": 0, "decoder_start_token_id": 2, "early_stopping": True, "eos_token_id": 2,
                        "forced_bos_token_id": 0, "forced_eos_token_id": 2, "no_repeat_ngram_size": 3,
                        "num_beams": 4, "pad_token_id": 1, "max_length": MAX_LENGTH}
GENERATIONS = {  # generation_config.json variants: bart-base's, bart-large-cnn's shape, and none forced
    "bart-base": BART_BASE_GENERATION,
    "cnn": {**BART_BASE_GENERATION, "length_penalty": 2.0, "min_length": 8, "max_length": 24},
    "plain": {"decoder_start_token_id": 2, "eos_token_id": 2, "forced_eos_token_id": 2, "num_beams": 4,
              "pad_token_id": 1, "max_length": MAX_LENGTH},
}


def write_tokenizer(directory) -> int:
    """vocab.json + merges.txt of a byte-level BPE trained on CORPUS, and the tokenizer.json /
    tokenizer_config.json BartTokenizerFast saves from them. Returns the vocabulary size."""
    tok = ByteLevelBPETokenizer()
    tok.train_from_iterator(CORPUS, vocab_size=320, min_frequency=1, special_tokens=SPECIALS)
    tok.save_model(str(directory))
    BartTokenizerFast.from_pretrained(directory).save_pretrained(directory)
    return tok.get_vocab_size()


def perturbed(model, seed):
    """``model`` with every parameter moved at random (LayerNorms and position tables included) and a
    ``final_logits_bias`` under which EOS ends some outputs early, and pad is never chosen (Rosetta never
    produces pad, and BART's generate does not ban it)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * 0.05)
        if hasattr(model, "final_logits_bias"):
            model.final_logits_bias.normal_(0, 1.0, generator=generator)
            model.final_logits_bias[0, 2] += 3.0
            model.final_logits_bias[0, 1] = -30.0
    return model.eval()


@pytest.fixture(scope="module")
def bart_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("bart-tiny")
    vocab = write_tokenizer(directory)
    torch.manual_seed(0)
    model = BartForConditionalGeneration(BartConfig(vocab_size=vocab, init_std=0.3, **BART))
    perturbed(model, 0).save_pretrained(directory)
    (directory / "generation_config.json").write_text(json.dumps(BART_BASE_GENERATION), encoding="utf-8")
    return directory


@pytest.fixture(scope="module")
def reference(bart_dir):
    model = BartForConditionalGeneration.from_pretrained(bart_dir, attn_implementation="eager").eval()
    return model, BartTokenizerFast.from_pretrained(bart_dir)


def _batch(tokenizer, sources=SOURCES[:4]):
    """A padded batch: source ids and mask, decoder inputs (</s> = start, then <s> target …, right-padded)."""
    src = tokenizer(list(sources), padding=True, return_tensors="pt")
    tgt = tokenizer(text_target=list(sources[::-1]), padding=True, return_tensors="pt")["input_ids"]
    decoder_in = torch.cat([torch.full((len(sources), 1), 2), tgt[:, :-1]], dim=1)
    return src["input_ids"], src["attention_mask"], decoder_in, (decoder_in != tokenizer.pad_token_id).long()


def _gaps(model, hf, tokenizer) -> tuple[float, float]:
    """Largest |ours − HF| of the encoder output and of the logits (real positions of a padded batch)."""
    src, src_mask, dec, dec_mask = _batch(tokenizer)
    with torch.no_grad():
        ref = hf(input_ids=src, attention_mask=src_mask, decoder_input_ids=dec, decoder_attention_mask=dec_mask)
        memory = model.encode(src)[0]
        logits = model(src, dec)
    return (float((memory - ref.encoder_last_hidden_state)[src_mask.bool()].abs().max()),
            float((logits - ref.logits)[dec_mask.bool()].abs().max()))


# ------------------------------------------------------------------------------------------ 1. numbers
def test_encoder_output_logits_and_every_attention_map_match_transformers(bart_dir, reference):
    hf, tokenizer = reference
    loaded = read_hf(bart_dir)
    config = loaded.model.config
    assert loaded.family == "translation" and config.position_offset == 2 and config.embedding_norm
    assert config.positional == "learned" and config.max_len == 66 and config.bos_id == 2 == config.eos_id
    src, src_mask, dec, dec_mask = _batch(tokenizer)
    assert (src_mask == 0).any() and (dec_mask == 0).any()  # the batch is padded on both sides
    assert max(_gaps(loaded.model, hf, tokenizer)) < TOL
    with torch.no_grad():
        ref = hf(input_ids=src, attention_mask=src_mask, decoder_input_ids=dec, decoder_attention_mask=dec_mask,
                 output_attentions=True)
        _, maps = loaded.model(src, dec, return_attention=True)
    for ours, theirs in (("encoder", "encoder_attentions"), ("decoder", "decoder_attentions"),
                         ("cross", "cross_attentions")):
        assert len(maps[ours]) == 2
        for mine, other in zip(maps[ours], getattr(ref, theirs)):
            torch.testing.assert_close(mine, other, atol=TOL, rtol=0)


def test_bart_model_without_a_head_loads_tied_with_zero_bias(tmp_path, reference):
    _, tokenizer = reference
    directory = tmp_path / "bart-model"
    directory.mkdir()
    vocab = write_tokenizer(directory)
    torch.manual_seed(1)
    hf = perturbed(BartModel(BartConfig(vocab_size=vocab, init_std=0.3, **BART)), 1)
    hf.save_pretrained(directory)
    model = read_hf(directory).model
    src, src_mask, dec, dec_mask = _batch(tokenizer)
    with torch.no_grad():
        ref = hf(input_ids=src, attention_mask=src_mask, decoder_input_ids=dec, decoder_attention_mask=dec_mask)
        hidden = model(src, dec, features_only=True)
    torch.testing.assert_close(hidden[dec_mask.bool()], ref.last_hidden_state[dec_mask.bool()], atol=TOL, rtol=0)
    assert torch.equal(model.output.weight, hf.shared.weight) and not model.output.bias.any()


def test_cached_incremental_decoding_equals_the_full_forward(bart_dir, reference):
    _, tokenizer = reference
    model = read_hf(bart_dir).model
    src, _, dec, _ = _batch(tokenizer, SOURCES[:2])
    dec = dec[:, :5]  # no padding in the first five positions of these two targets
    with torch.no_grad():
        forced = model(src, dec)
        memory, memory_mask, _ = model.encode(src)
        state = model.start_decoding(memory, memory_mask, src)
        steps = torch.cat([model.decode_step(dec[:, t : t + 1], state) for t in range(dec.shape[1])], dim=1)
    torch.testing.assert_close(steps, forced, atol=TOL, rtol=0)


@pytest.mark.parametrize("name", ["model.encoder.layernorm_embedding.weight", "model.decoder.embed_positions.weight",
                                  "model.decoder.layers.1.encoder_attn.k_proj.weight", "final_logits_bias"])
def test_a_twin_with_one_weight_changed_fails_the_comparison(bart_dir, reference, tmp_path, name):
    hf, tokenizer = reference
    index = 3 * BART["d_model"] + 5 if "positions" in name else 5  # position table: row 3 = the second token's
    if name == "final_logits_bias":
        index = tokenizer.convert_tokens_to_ids("Ġthe")
    assert max(_gaps(read_hf(twin(bart_dir, tmp_path, name, index, 0.5)).model, hf, tokenizer)) > 1e-3


def test_the_same_weights_without_the_position_offset_fail_the_comparison(bart_dir, reference):
    hf, tokenizer = reference
    model = read_hf(bart_dir).model
    shifted = Transformer(model.config.replace(position_offset=0)).eval()
    shifted.load_state_dict(model.state_dict())
    assert max(_gaps(shifted, hf, tokenizer)) > 1e-3


# ------------------------------------------------------------------------------------------ 2. generate
def _with_generation(bart_dir, tmp_path, variant):
    directory = tmp_path / variant
    shutil.copytree(bart_dir, directory)
    (directory / "generation_config.json").write_text(json.dumps(GENERATIONS[variant]), encoding="utf-8")
    return directory


def _generate(tokenizer, directory, **overrides) -> torch.Tensor:
    """``generate`` on SOURCES by the model of ``directory``, whose generation_config.json is its default (a
    config passed to ``generate`` would be filled up with another directory's defaults)."""
    hf = BartForConditionalGeneration.from_pretrained(directory).eval()
    batch = tokenizer(SOURCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        return hf.generate(**batch, **overrides)


def _without_specials(row: list[int]) -> list[int]:
    """generate's row without the start token and from the first </s> on (pad after it)."""
    row = row[1:]
    return row[: row.index(2)] if 2 in row else row


@pytest.mark.parametrize("variant, beam", [("bart-base", 4), ("bart-base", 1), ("cnn", 4), ("plain", 4)])
def test_search_gives_the_ids_generate_gives(bart_dir, reference, tmp_path, variant, beam):
    _, tokenizer = reference
    directory = _with_generation(bart_dir, tmp_path, variant)
    out = _generate(tokenizer, directory, num_beams=beam).tolist()
    options = generation_options(directory, json.loads((directory / "config.json").read_text()))
    translator = rosetta.load(directory)
    assert [translator.encode_source(s) for s in SOURCES] == tokenizer(SOURCES)["input_ids"]  # <s> … </s>
    src = tokenizer(SOURCES, padding=True, return_tensors="pt")["input_ids"]
    shared = dict(max_len=options["max_len"], no_repeat_ngram_size=options["no_repeat_ngram_size"],
                  force_eos=options["force_eos"], force_bos=options["force_bos"], min_len=options["min_len"])
    if beam == 1:
        ours = greedy_search(translator.model, src, **shared)
    else:
        ours = beam_search(translator.model, src, beam_size=beam, length_penalty=options["length_penalty"],
                           length_norm="hf", early_stopping=options["early_stopping"], **shared)
    assert ours == [_without_specials(row) for row in out]
    lengths = [len(_without_specials(row)) for row in out]
    assert min(lengths) < options["max_len"] - 1 and max(lengths) == options["max_len"] - 1  # early and cut
    assert all(row[1] == 0 for row in out) == (options["force_bos"] == 0)  # <s> first only when forced


def test_forced_bos_is_the_first_token_at_no_cost(bart_dir):
    translator = rosetta.load(bart_dir)
    model, src = translator.model, torch.tensor([translator.encode_source(s) for s in SOURCES[2:3]])
    searches = (lambda **o: greedy_search(model, src, max_len=6, **o),
                lambda **o: beam_search(model, src, beam_size=4, max_len=6, length_norm="hf", **o))
    free = {search()[0][0] for search in searches}
    forced = min(set(range(5, 20)) - free)  # a token neither search starts with by itself
    for search in searches:
        assert search(force_bos=forced)[0][0] == forced
    with torch.no_grad():  # the forced token costs nothing: the rest is what the model continues it with
        memory, mask, _ = model.encode(src)
        state = model.start_decoding(memory, mask, src)
        model.decode_step(torch.tensor([[model.config.bos_id]]), state)
        logits = model.decode_step(torch.tensor([[forced]]), state)[0, -1]
    assert greedy_search(model, src, max_len=6, force_bos=forced)[0][1] == int(logits.argmax())


def test_cli_translate_and_summarise_print_what_generate_gives(bart_dir, reference):
    _, tokenizer = reference
    expected = tokenizer.batch_decode(_generate(tokenizer, bart_dir), skip_special_tokens=True)  # beam 4, <s> forced
    assert cli("translate", "--model", bart_dir, *SOURCES[:2]).splitlines() == expected[:2]
    assert cli("summarise", "--model", bart_dir, SOURCES[1]).splitlines() == expected[1:2]


# ------------------------------------------------------------------------------------------ 3. tokenizer
@pytest.mark.parametrize("files", ["tokenizer.json", "vocab.json + merges.txt + tokenizer_config.json",
                                   "vocab.json + merges.txt"])
def test_tokenizer_ids_and_text_match_bart_tokenizer(bart_dir, tmp_path, files):
    directory = tmp_path / "tok"
    shutil.copytree(bart_dir, directory)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        if name not in files and files != "tokenizer.json":
            (directory / name).unlink()
    reference = BartTokenizerFast.from_pretrained(directory)
    ours = read_hf(directory).tokenizer
    for text in MIXED + SOURCES:
        ids = reference(text)["input_ids"]
        assert ours.frame_source(ours.encode(text)) == ids, text
        assert ours.decode(ids) == reference.decode(ids, skip_special_tokens=True), text
    generator = torch.Generator().manual_seed(0)
    for _ in range(10):  # any ids, special ones among them
        ids = torch.randint(0, ours.vocab_size, (12,), generator=generator).tolist()
        assert ours.decode(ids) == reference.decode(ids, skip_special_tokens=True), ids
    assert (ours.pad_id, ours.bos_id, ours.eos_id) == (1, 0, 2) and ours.vocab_size == len(reference)


# ------------------------------------------------------------------------------------------ 4. refusals
BAD = {  # config.json change → what the one-line error names
    "add_final_layer_norm": ({"add_final_layer_norm": True}, "add_final_layer_norm=True"),
    "normalize_before": ({"normalize_before": True}, "normalize_before=True"),
    "widths": ({"decoder_ffn_dim": 48}, "encoder_ffn_dim=64 ≠ decoder_ffn_dim=48"),
    "heads": ({"architectures": ["BartForSequenceClassification"]}, "BartForSequenceClassification"),
    "activation": ({"activation_function": "mish"}, "activation_function 'mish'"),
}


@pytest.mark.parametrize("bad", list(BAD))
def test_an_unsupported_option_is_one_line_naming_it(bart_dir, tmp_path, bad):
    change, named = BAD[bad]
    directory = tmp_path / "bad"
    shutil.copytree(bart_dir, directory)
    config = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps({**config, **change}))
    with pytest.raises(CheckpointError) as error:
        rosetta.load(directory)
    assert "\n" not in str(error.value) and named in str(error.value), str(error.value)
    result = runner.invoke(app, ["translate", "--model", str(directory), "Hello."])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.output.strip().startswith("error:") and len(result.output.strip().splitlines()) == 1


# ------------------------------------------------------------------------------------------ 5. the way back
def test_a_rosetta_bart_model_goes_back_to_a_directory_transformers_reads(bart_dir, tmp_path):
    from safetensors.torch import save_file

    config = config_from_hf(json.loads((bart_dir / "config.json").read_text()))
    torch.manual_seed(1)
    model = Transformer(config).eval()
    with torch.no_grad():
        model.output.bias.normal_(0, 0.5)
        for norm in (model.src_embed.norm, model.tgt_embed.norm):
            norm.bias.normal_(0, 0.5)
    out = tmp_path / "back"
    out.mkdir()
    (out / "config.json").write_text(json.dumps(config_to_hf(config)))
    save_file(weights_to_hf(model.state_dict(), config), out / "model.safetensors", metadata={"format": "pt"})
    hf = BartForConditionalGeneration.from_pretrained(out).eval()
    src = torch.tensor([[0, 9, 14, 30, 2], [0, 8, 2, 1, 1]])
    dec = torch.tensor([[2, 0, 11, 6], [2, 0, 10, 40]])
    with torch.no_grad():
        ref = hf(input_ids=src, attention_mask=(src != 1).long(), decoder_input_ids=dec).logits
        torch.testing.assert_close(model(src, dec), ref, atol=TOL, rtol=0)
    with pytest.raises(ValueError, match="not BART's layout"):
        config_to_hf(config.replace(embedding_norm=False))
