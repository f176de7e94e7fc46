"""``rosetta export --format huggingface`` of Rosetta's OWN T5-layout runs (trained from scratch with T5's flags and
Rosetta's BPE tokenizer, as configs/t5-multitask.toml) to ``T5ForConditionalGeneration``, checked against
``transformers`` itself.

Two tiny text-to-text runs (d_model 32, 2 + 2 layers, a joint BPE vocabulary learned here from English, Chinese and
German, two tasks told apart by their prefixes; every weight perturbed, then 40 full-batch Adam steps so that outputs
differ in length): T5 (ReLU, output tied and scaled by d^-½) and T5 v1.1 (gated GELU, untied, unscaled). Few
buckets (8, max distance 16) so that sources and targets reach the log-spaced buckets and the max-distance one.
Compared: logits of a padded batch within ``TOL`` (fp32); ``generate``'s ids greedy = Rosetta's greedy search and
the run's ``translate``; beam 4 (Hugging Face's |Y|^α) = Rosetta's beam search with ``length_norm="hf"`` and
``rosetta.load`` of the exported directory; ``AutoTokenizer``'s ids and text = Rosetta's; the round trip; a twin
with one weight changed fails; T5's bucket function = ours; layouts T5 cannot express are refused by the CLI in one
line.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")

from hf_dirs import DE, EN, fine_tune_translation, twin  # noqa: E402
from tiny_translator import PAIRS  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

import rosetta  # noqa: E402
from rosetta import Transformer  # noqa: E402
from rosetta.checkpoint import save_checkpoint  # noqa: E402
from rosetta.cli import app  # noqa: E402
from rosetta.compress.hf_export import export_huggingface  # noqa: E402
from rosetta.data.batching import collate_translation  # noqa: E402
from rosetta.data.tokenizer import save_tokenizers, train_tokenizers  # noqa: E402
from rosetta.decode.beam import beam_search  # noqa: E402
from rosetta.decode.search import greedy_search  # noqa: E402
from rosetta.models.t5 import t5_config  # noqa: E402
from rosetta.nn.positional import relative_position_bucket  # noqa: E402
from rosetta.train import label_smoothed_nll  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")
runner = CliRunner()
TOL = 1e-5  # fp32 logits, HF's T5 against ours
MAX_NEW = 8  # the runs' [decode] max_len: generation_config.json's max_length is 9
ALPHA = 1.4  # configs/t5-multitask.toml's; here GNMT's rule and Hugging Face's pick different beams
TASKS = [{"corpus": "tiny-en-zh", "src_lang": "en", "tgt_lang": "zh", "prefix": "translate English to Chinese: "},
         {"corpus": "tiny-en-de", "src_lang": "en", "tgt_lang": "de", "prefix": "translate English to German: "}]
TRAIN = ([(TASKS[0]["prefix"] + s, t) for s, t in PAIRS] + [(TASKS[1]["prefix"] + s, t) for s, t in zip(EN, DE)])
SOURCES = [s for s, _ in TRAIN[:4]] + [s for s, _ in TRAIN[12:15]] + [TASKS[1]["prefix"] + "A student likes tea."]
MIXED = ["Héllo wörld, café!", "Wir mögen grüne Äpfel.", "猫在睡觉。Where?", "I am   a  student.", "Zebra ✓ ß",
         "</s> inside", ""]
LAYOUTS = {"t5": dict(activation="relu"), "t5-v1.1": dict(activation="geglu", tie_output=False)}


def make_run(root: Path, steps: int = 40, **flags) -> tuple[Path, Transformer, object]:
    """A Rosetta text-to-text checkpoint in T5's layout (``t5_config`` + ``flags``): (folder, model, tokenizer)."""
    tok, _ = train_tokenizers([s for s, _ in TRAIN], [t for _, t in TRAIN], vocab_size=220, joint=True,
                              min_frequency=1)
    config = t5_config(tok.vocab_size, d_model=32, n_heads=4, d_ff=48, n_encoder_layers=2, n_decoder_layers=2,
                       dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, max_len=64, relative_buckets=8,
                       relative_max_distance=16, **flags)
    torch.manual_seed(0)
    model = Transformer(config).eval()
    with torch.no_grad():  # norms away from 1 from the start
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    if steps:
        data = collate_translation([(tok.frame_source(tok.encode(s)), tok.encode(t)) for s, t in TRAIN],
                                   config.pad_id, config.bos_id, config.eos_id)
        optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
        model.train()
        for _ in range(steps):
            loss, _, count = label_smoothed_nll(model(data.src, data.tgt_in), data.tgt_out, config.pad_id, 0.0)
            optimizer.zero_grad()
            (loss / count).backward()
            optimizer.step()
        model.eval()
    info = {"family": "translation", "model": config.to_dict(), "src_lang": None,
            "tgt_lang": None, "corpus": None, "tasks": TASKS,
            "decode": {"beam": 4, "length_penalty": ALPHA, "max_len": MAX_NEW}}
    folder = save_checkpoint(root / "run", model, info, lambda d: save_tokenizers(d, tok, tok))
    return folder, model, tok


@pytest.fixture(scope="module", params=sorted(LAYOUTS))
def exported(request, tmp_path_factory):
    """(layout name, Rosetta folder, model, tokenizer, exported directory)."""
    root = tmp_path_factory.mktemp(request.param)
    folder, model, tok = make_run(root, **LAYOUTS[request.param])
    return request.param, folder, model, tok, export_huggingface(folder, root / "hf")


def batch(tok, texts=SOURCES) -> tuple[torch.Tensor, torch.Tensor]:
    """Sources framed as ``rosetta translate`` frames them (ids </s>), padded with <pad> 0; and their mask."""
    ids = [tok.frame_source(tok.encode(t)) for t in texts]
    width = max(map(len, ids))
    src = torch.tensor([row + [0] * (width - len(row)) for row in ids])
    return src, (src != 0).long()


def targets(model, length: int = 25) -> torch.Tensor:
    """<s> and random ids: longer than the decoder's max distance (16), so its last bucket is read too."""
    rows = torch.randint(4, model.config.tgt_vocab_size, (len(SOURCES), length),
                         generator=torch.Generator().manual_seed(1))
    return torch.cat([torch.full((len(SOURCES), 1), model.config.bos_id), rows], dim=1)


def hf_logits(directory: Path, src, mask, tgt) -> torch.Tensor:
    hf = transformers.AutoModelForSeq2SeqLM.from_pretrained(directory).eval()
    with torch.no_grad():
        return hf(input_ids=src, attention_mask=mask, decoder_input_ids=tgt).logits


def test_the_export_is_t5_with_our_ids_logits_and_task_prefixes(exported, tmp_path):
    name, _, model, tok, out = exported
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "t5" and config["feed_forward_proj"] == {"t5": "relu", "t5-v1.1": "gated-gelu"}[name]
    assert [config[k] for k in ("pad_token_id", "decoder_start_token_id", "eos_token_id")] == [0, 1, 2]
    assert [tok.id_to_token(i) for i in (0, 1, 2)] == ["<pad>", "<s>", "</s>"]
    assert config["task_specific_params"] == {"translation_en_to_zh": {"prefix": "translate English to Chinese: "},
                                              "translation_en_to_de": {"prefix": "translate English to German: "}}
    assert transformers.AutoConfig.from_pretrained(out).task_specific_params == config["task_specific_params"]
    hf = transformers.AutoModelForSeq2SeqLM.from_pretrained(out)
    assert type(hf).__name__ == "T5ForConditionalGeneration"
    src, mask = batch(tok)
    assert src.shape[1] > 16  # the encoder reads offsets past max_distance
    tgt = targets(model)
    with torch.no_grad():
        ours = model(src, tgt)
    assert (hf_logits(out, src, mask, tgt) - ours).abs().max().item() < TOL
    changed = twin(out, tmp_path, "decoder.block.1.layer.2.DenseReluDense.wo.weight", index=5)
    assert (hf_logits(changed, src, mask, tgt) - ours).abs().max().item() > 1e-3
    if name == "t5-v1.1":  # the untied head is its own tensor
        head = twin(out, tmp_path, "lm_head.weight", index=40)
        assert (hf_logits(head, src, mask, tgt) - ours).abs().max().item() > 1e-3


def generated(hf, src, mask, beam: int) -> list[list[int]]:
    """``generate``'s outputs without the start token, </s> and padding."""
    with torch.no_grad():
        rows = hf.generate(input_ids=src, attention_mask=mask, num_beams=beam, do_sample=False).tolist()
    out = []
    for row in rows:
        row = row[1:]
        out.append([t for t in (row[: row.index(2)] if 2 in row else row) if t != 0])
    return out


@pytest.mark.parametrize("beam", [1, 4])
def test_generate_gives_our_search_and_rosetta_load_of_the_export(exported, beam):
    _, folder, model, tok, out = exported
    hf = transformers.AutoModelForSeq2SeqLM.from_pretrained(out).eval()
    gen = hf.generation_config
    assert (gen.max_length, gen.num_beams, gen.length_penalty, gen.decoder_start_token_id) == (MAX_NEW + 1, 4, ALPHA,
                                                                                               1)
    src, mask = batch(tok)
    expected = generated(hf, src, mask, beam)
    assert len({len(ids) for ids in expected}) > 2 and len({tuple(ids) for ids in expected}) > 4  # not one answer
    if beam == 1:
        assert greedy_search(model, src, max_len=MAX_NEW) == expected
        assert rosetta.load(folder).translate(SOURCES, beam=1) == [tok.decode(ids) for ids in expected]  # the run
    else:  # the run's own beam uses GNMT's ((5 + |Y|) / 6)^α; Hugging Face's |Y|^α is length_norm="hf"
        assert beam_search(model, src, beam_size=4, length_penalty=ALPHA, length_norm="hf", max_len=MAX_NEW) == expected
        gnmt = beam_search(model, src, beam_size=4, length_penalty=ALPHA, max_len=MAX_NEW)
        assert gnmt != expected  # the two rules part on these sources: the comparison tells them apart
    translator = rosetta.load(out)
    assert translator.decode_options.length_norm == "hf"
    assert translator._search(src, beam, translator.decode_options.length_penalty, max_len=MAX_NEW) == expected
    assert translator.translate(SOURCES, beam=beam) == [tok.decode(ids) for ids in expected]
    texts = transformers.AutoTokenizer.from_pretrained(out).batch_decode(
        hf.generate(input_ids=src, attention_mask=mask, num_beams=beam), skip_special_tokens=True)
    assert texts == [tok.decode(ids) for ids in expected]


def test_auto_tokenizer_reads_and_writes_text_as_rosetta_does(exported):
    _, _, _, tok, out = exported
    assert not (out / "target").exists()  # one joint vocabulary, as T5 has
    tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    assert (tokenizer.pad_token_id, tokenizer.eos_token_id) == (0, 2)
    for text in MIXED + SOURCES:
        ids = tok.encode(text)
        assert tokenizer(text)["input_ids"] == tok.frame_source(ids) == ids + [2], text
        assert tokenizer(text_target=text)["input_ids"] == ids + [2], text  # T5's labels: ids </s>
        assert tokenizer.decode(ids, skip_special_tokens=True) == tok.decode(ids), text
    assert any(tok.decode(tok.encode(t)) == t for t in MIXED[:3])  # the mixed text survives, not all <unk>
    padded = tokenizer(SOURCES, padding=True, return_tensors="pt")
    src, mask = batch(tok)
    assert torch.equal(padded["input_ids"], src) and torch.equal(padded["attention_mask"], mask)


def test_the_export_reads_back_into_rosetta_with_the_same_logits(exported, tmp_path):
    _, _, model, tok, out = exported
    back = rosetta.load(out)
    for key in ("tie_output", "scale_decoder_output", "activation", "pad_id", "bos_id", "eos_id", "relative_buckets",
                "relative_max_distance", "norm_eps", "share_embeddings"):
        assert getattr(back.model.config, key) == getattr(model.config, key), key
    src, _ = batch(tok)
    tgt = targets(model)
    with torch.no_grad():
        torch.testing.assert_close(back.model(src, tgt), model(src, tgt), atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="already is a Hugging Face directory"):
        export_huggingface(out, tmp_path / "again")


def test_the_exports_task_prefixes_come_back_and_evaluation_finds_its_task(exported):
    """config.json's task_specific_params read back as the run's tasks (no corpus: the names carry languages only),
    and ``task_for`` — what ``rosetta evaluate --corpus`` uses to put the prefix on every source — finds each
    corpus's task by its languages: Tatoeba (en, zh) → en→zh, Multi30k (de, en) → en→de; a corpus with no fitting
    task is refused in one line."""
    from rosetta.tasks.text_to_text import task_for

    _, _, _, _, out = exported
    tasks = rosetta.load(out).info["tasks"]
    assert tasks == [{**task, "corpus": None} for task in TASKS]
    info = {"tasks": tasks}
    assert task_for(info, "tatoeba-en-zh")["prefix"] == "translate English to Chinese: "
    assert task_for(info, "multi30k")["prefix"] == "translate English to German: "
    with pytest.raises(ValueError, match="not trained on 'sst2', and 0 of"):
        task_for(info, "sst2")


@pytest.mark.parametrize("buckets, distance", [(32, 128), (8, 20), (64, 1000), (4, 3)])
@pytest.mark.parametrize("bidirectional", [True, False])
def test_t5s_bucket_function_is_ours(bidirectional, buckets, distance):
    from transformers.models.t5.modeling_t5 import T5Attention

    offsets = torch.arange(-3000, 3001)
    theirs = T5Attention._relative_position_bucket(offsets, bidirectional, buckets, distance)
    assert torch.equal(relative_position_bucket(offsets, bidirectional, buckets, distance), theirs)
    assert len(set(theirs.tolist())) == buckets - bidirectional  # every bucket but "after the query, offset 0"


REFUSED = {  # flags on T5's layout → the words of the one-line refusal
    "bias": (dict(bias=True), "bias=True"),
    "layernorm": (dict(norm="layernorm"), "norm='layernorm'"),
    "post-ln": (dict(norm_first=False), "norm_first=False"),
    "scaled-attention": (dict(scale_attention=True), "scale_attention=True"),
    "sinusoid": (dict(positional="sinusoidal"), "norm='rmsnorm'"),  # Marian / Pegasus's refusal: the first flag
    "rope": (dict(positional="rope"), "positional='rope'"),
    "activation": (dict(activation="gelu_tanh"), "activation='gelu_tanh'"),
    "untied-scaled": (dict(tie_output=False, scale_decoder_output=True), "scale_decoder_output=True"),
    "separate": (dict(share_embeddings=False), "share_embeddings=False"),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_layouts_t5_cannot_express_are_refused_by_the_cli_in_one_line(name, tmp_path):
    flags, words = REFUSED[name]
    folder, *_ = make_run(tmp_path, steps=0, **flags)
    result = runner.invoke(app, ["export", "--model", str(folder), "--format", "huggingface", "--out",
                                 str(tmp_path / "hf")])
    assert result.exit_code == 2 and words in result.output, result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1, result.output
    assert not (tmp_path / "hf").exists() and not list(tmp_path.glob(".hf.*"))


@pytest.mark.parametrize("exported", ["t5"], indirect=True)
def test_a_run_fine_tuned_from_the_export_goes_back_to_t5(exported, tmp_path):
    """``[model] pretrained = EXPORT``: the T5 family reads the export's tokenizer.json (no spiece.model), the run
    keeps Rosetta's ids, and its export (the checkpoint's family, the copied tokenizer files) decodes what it does."""
    _, _, _, tok, out = exported
    run = fine_tune_translation(out, TRAIN, tmp_path, steps=3)
    tuned = rosetta.load(run)
    assert (tuned.model.config.bos_id, tuned.src_tokenizer.encode(SOURCES[0])) == (1, tok.encode(SOURCES[0]))
    again = export_huggingface(run, tmp_path / "again")
    assert (again / "tokenizer.json").read_bytes() == (out / "tokenizer.json").read_bytes()
    hf = transformers.AutoModelForSeq2SeqLM.from_pretrained(again).eval()
    src, mask = batch(tok)
    with torch.no_grad():
        assert (hf(input_ids=src, attention_mask=mask, decoder_input_ids=targets(tuned.model)).logits
                - tuned.model(src, targets(tuned.model))).abs().max().item() < TOL
    texts = transformers.AutoTokenizer.from_pretrained(again).batch_decode(
        hf.generate(input_ids=src, attention_mask=mask, num_beams=1), skip_special_tokens=True)
    assert texts == tuned.translate(SOURCES, beam=1)
