"""Fine-tuning from a Hugging Face directory (``[model] pretrained = "DIR"``) for the families that generate text,
checked against ``transformers`` on tiny random checkpoints made here.

With a learning rate of 0 a fine-tuning run must leave the checkpoint unchanged, so the run's saved model must decode
what the original gives in ``transformers`` — the weights, the flags of its layout, the copied tokenizer files and
the generation options all carried through the run. With a real learning rate the loss on the training text falls,
the weights move, and the run's model is still read the checkpoint's way (its tokenizer, its generation options).
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")
pytest.importorskip("sentencepiece")

from hf_dirs import (  # noqa: E402
    CORPUS,
    DE,
    EN,
    ROBERTA_CORPUS,
    marian_directory,
    roberta_directory,
    roberta_reference_tokenizer,
    t5_directory,
    write_gpt2_dir,
)
from safetensors.torch import load_file  # noqa: E402
from transformers import MarianMTModel, MarianTokenizer  # noqa: E402

import rosetta  # noqa: E402
from rosetta.compress.export import export_model  # noqa: E402
from rosetta.compress.hf_export import export_huggingface  # noqa: E402
from rosetta.decode.loading import load_any  # noqa: E402
from rosetta.decode.sampling import generate as sample  # noqa: E402
from rosetta.models.pretrained import tokenize  # noqa: E402
from rosetta.tasks import build_task  # noqa: E402
from rosetta.train import Trainer  # noqa: E402
from rosetta.train.recipe import recipe_from_dict  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")
SOURCES = ["The cat sits.", "I am a student who likes green apples.", "Where is the train station?",
           "They play football in the park.", "Hello wörld café!"]


def train(recipe: dict, out: Path, resume: bool = False) -> Path:
    """The run folder ``out`` after training ``recipe`` in it."""
    rcp = recipe_from_dict(recipe)
    task = build_task(rcp, run_dir=out, resume=resume)
    Trainer(rcp, task, out, progress=False).fit(resume=resume)
    return out


def training(steps: int, lr: float, **extra) -> dict:
    return {"max_steps": steps, "max_tokens": 400, "batch_size": 12, "lr": lr, "warmup_steps": 1,
            "label_smoothing": 0.0, "eval_every": steps, "bleu_every": 0, "save_every": steps, "log_every": 1,
            "keep_last": 2, "precision": "fp32", "device": "cpu", "threads": 1, "seed": 1, **extra}


def losses(run: Path) -> list[float]:
    rows = map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
    return [r["loss"] for r in rows if r["kind"] == "train"]


# ------------------------------------------------------------------------------------------ Marian
@pytest.fixture(scope="module")
def marian_dir(tmp_path_factory) -> Path:
    return marian_directory(tmp_path_factory.mktemp("opus-mt-tiny"))


@pytest.fixture(scope="module")
def parallel(tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("en-de")
    files = {}
    for name, lines in (("train_src", EN), ("train_tgt", DE), ("valid_src", EN[:4]), ("valid_tgt", DE[:4])):
        files[name] = str(folder / name)
        Path(files[name]).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return files


def marian_recipe(marian_dir: Path, parallel: dict[str, str], steps: int, lr: float, **model) -> dict:
    return {"data": {"task": "translation", "src_lang": "en", "tgt_lang": "de", "max_length": 64, **parallel},
            "model": {"pretrained": str(marian_dir), **model}, "train": training(steps, lr)}


def generate(marian_dir: Path, sources: list[str], beam: int) -> list[str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Recommended: pip install sacremoses."
        tokenizer = MarianTokenizer.from_pretrained(marian_dir)
    model = MarianMTModel.from_pretrained(marian_dir).eval()
    with torch.no_grad():
        out = model.generate(**tokenizer(sources, padding=True, return_tensors="pt"), num_beams=beam)
    return tokenizer.batch_decode(out, skip_special_tokens=True)


def test_a_marian_run_at_learning_rate_zero_decodes_what_the_checkpoint_does(marian_dir, parallel, tmp_path):
    run = train(marian_recipe(marian_dir, parallel, steps=2, lr=0.0), tmp_path / "run")
    model_dir = run / "model"
    for name in ("source.spm", "target.spm", "vocab.json", "generation_config.json"):  # copied byte for byte
        assert (model_dir / name).read_bytes() == (marian_dir / name).read_bytes(), name
    info = json.loads((model_dir / "config.json").read_text())
    assert info["huggingface"]["model_type"] == "marian" and info["decode"]["length_norm"] == "hf"
    translator = rosetta.load(run)
    for beam in (1, 4):
        assert translator.translate(SOURCES, beam=beam) == generate(marian_dir, SOURCES, beam), beam
    loaded = load_any(run)
    assert loaded.family == "translation"
    assert loaded.tokenizer.encode(SOURCES[4]) == rosetta.load(marian_dir).src_tokenizer.encode(SOURCES[4])


def test_a_marian_fine_tune_learns_and_still_reads_text_the_checkpoints_way(marian_dir, parallel, tmp_path):
    run = train(marian_recipe(marian_dir, parallel, steps=12, lr=3e-3), tmp_path / "run")
    seen = losses(run)
    assert len(seen) == 12 and sum(seen[-3:]) < 0.9 * sum(seen[:3])  # the loss on the 12 pairs falls
    tuned, original = load_file(run / "model" / "model.safetensors"), rosetta.load(marian_dir).model.state_dict()
    assert any(not torch.equal(tuned[k], original[k]) for k in tuned)
    translator, before = rosetta.load(run), rosetta.load(marian_dir)
    assert translator.decode_options == before.decode_options  # generation_config.json's, as the recipe left them
    assert translator.translate(EN[:4], beam=1) != before.translate(EN[:4], beam=1)


def test_a_marian_start_refuses_what_would_change_its_architecture(marian_dir, parallel, tmp_path):
    with pytest.raises(ValueError, match=r"\[model\] d_model: a Hugging Face start keeps the architecture"):
        train(marian_recipe(marian_dir, parallel, 1, 0.0, d_model=64), tmp_path / "a")
    with pytest.raises(ValueError, match="load_weights = false builds an encoder from scratch"):
        train(marian_recipe(marian_dir, parallel, 1, 0.0, load_weights=False), tmp_path / "b")


# ------------------------------------------------------------------------------------------ GPT-2
@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory) -> Path:
    return write_gpt2_dir(tmp_path_factory.mktemp("gpt2"))


def gpt2_recipe(gpt2_dir: Path, text: Path, steps: int, lr: float) -> dict:
    return {"data": {"task": "lm", "train_src": str(text), "block_size": 16, "valid_size": 4},
            "model": {"pretrained": str(gpt2_dir)}, "train": training(steps, lr, batch_size=8)}


@pytest.fixture(scope="module")
def text(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("text") / "corpus.txt"
    path.write_text("\n".join(CORPUS) + "\n", encoding="utf-8")
    return path


def hf_greedy(gpt2_dir: Path, prompt: str, new_tokens: int = 12) -> list[int]:
    model = transformers.GPT2LMHeadModel.from_pretrained(gpt2_dir).eval()
    ids = transformers.AutoTokenizer.from_pretrained(gpt2_dir)(prompt, return_tensors="pt").input_ids
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=new_tokens,
                             min_new_tokens=new_tokens, pad_token_id=model.config.eos_token_id)
    return out[0, ids.shape[1]:].tolist()


def test_a_gpt2_run_at_learning_rate_zero_generates_what_the_checkpoint_does(gpt2_dir, text, tmp_path):
    run = train(gpt2_recipe(gpt2_dir, text, steps=2, lr=0.0), tmp_path / "run")
    assert (run / "model" / "tokenizer.json").read_bytes() == (gpt2_dir / "tokenizer.json").read_bytes()
    loaded = load_any(run)
    assert loaded.family == "lm" and json.loads((run / "model" / "config.json").read_text())["huggingface"]
    for prompt in ("Hello world", "你好"):
        ids = loaded.tokenizer.encode(prompt)
        assert ids == transformers.AutoTokenizer.from_pretrained(gpt2_dir)(prompt).input_ids
        assert list(sample(loaded.model, ids, 12, temperature=0.0)) == hf_greedy(gpt2_dir, prompt)


def test_a_gpt2_fine_tune_lowers_the_loss_on_its_text(gpt2_dir, text, tmp_path):
    run = train(gpt2_recipe(gpt2_dir, text, steps=10, lr=3e-3), tmp_path / "run")
    seen = losses(run)
    assert len(seen) == 10 and sum(seen[-3:]) < 0.95 * sum(seen[:3])
    assert load_any(run).tokenizer.encode("café 🙂") == load_any(gpt2_dir).tokenizer.encode("café 🙂")


# ------------------------------------------------------------------------------------------ T5
@pytest.mark.parametrize("layout", ["t5", "flan-t5"])
def test_a_t5_run_at_learning_rate_zero_decodes_what_the_checkpoint_does(layout, parallel, tmp_path):
    t5_dir = t5_directory(tmp_path / layout, layout)
    prefixed = tmp_path / "prefixed"
    prefixed.write_text("".join(f"translate English to German: {line}\n" for line in EN), encoding="utf-8")
    recipe = marian_recipe(t5_dir, {**parallel, "train_src": str(prefixed)}, steps=2, lr=0.0)
    run = train(recipe, tmp_path / "run")
    assert (run / "model" / "spiece.model").read_bytes() == (t5_dir / "spiece.model").read_bytes()
    sources = [f"translate English to German: {s}" for s in SOURCES]
    hf = transformers.T5ForConditionalGeneration.from_pretrained(t5_dir).eval()
    tokenizer = transformers.T5Tokenizer.from_pretrained(t5_dir)
    translator = rosetta.load(run)
    for beam in (1, 4):
        with torch.no_grad():
            out = hf.generate(**tokenizer(sources, padding=True, return_tensors="pt"), num_beams=beam)
        assert translator.translate(sources, beam=beam) == tokenizer.batch_decode(out, skip_special_tokens=True)


# ------------------------------------------------------------------------------------------ ViT
VIT = dict(image_size=32, patch_size=8, num_channels=3, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
           intermediate_size=48)
MEAN, STD = [0.4, 0.5, 0.6], [0.2, 0.25, 0.3]


@pytest.fixture(scope="module")
def vit_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("vit")
    torch.manual_seed(0)
    labels = {0: "cat", 1: "dog", 2: "owl"}
    config = transformers.ViTConfig(**VIT, num_labels=3, id2label=labels, label2id={v: k for k, v in labels.items()})
    model = transformers.ViTForImageClassification(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    model.save_pretrained(root)
    transformers.ViTImageProcessor(size={"height": 32, "width": 32}, image_mean=MEAN,
                                   image_std=STD).save_pretrained(root)
    return root


def vit_recipe(vit_dir: Path, steps: int, lr: float, **model) -> dict:
    return {"data": {"task": "image-classification", "corpus": "digits", "valid_size": 100},
            "model": {"pretrained": str(vit_dir), **model}, "train": training(steps, lr, batch_size=32)}


def test_a_vit_start_keeps_the_backbone_and_gets_a_head_for_the_corpus(vit_dir, tmp_path):
    """sklearn's 8×8 grey digits, read at the checkpoint's 32×32 in 3 channels with its mean and std: the saved
    backbone gives transformers' hidden states; the head is new, for 10 digits."""
    run = train(vit_recipe(vit_dir, steps=2, lr=0.0), tmp_path / "run")
    loaded = load_any(run)
    assert loaded.family == "vit" and loaded.model.num_labels == 10 and loaded.info["labels"][9] == "9"
    assert loaded.info["image"]["mean"] == MEAN and loaded.info["image"]["image_size"] == 32
    assert (run / "model" / "preprocessor_config.json").is_file()
    images = torch.randn(2, 3, 32, 32)
    backbone = transformers.ViTModel.from_pretrained(vit_dir, add_pooling_layer=False).eval()
    with torch.no_grad():
        ours = loaded.model.encode(images)[0]
        theirs = backbone(pixel_values=images).last_hidden_state
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)
    assert torch.count_nonzero(loaded.model.head.weight) == 0  # ViT's zero-initialised head


def test_a_vit_fine_tune_learns_at_another_image_size(vit_dir, tmp_path):
    run = train(vit_recipe(vit_dir, steps=12, lr=3e-3, image_size=16), tmp_path / "run")
    seen = losses(run)  # from ln 10 (the zero head's uniform guess) down
    assert len(seen) == 12 and abs(seen[0] - math.log(10)) < 1e-5 and max(seen[-3:]) < math.log(10) - 0.05
    loaded = load_any(run)
    assert loaded.info["image"]["image_size"] == 16 and loaded.model(torch.randn(1, 3, 16, 16)).shape == (1, 10)
    with pytest.raises(ValueError, match=r"\[model\] patch_size: a Hugging Face start keeps"):
        train(vit_recipe(vit_dir, 1, 0.0, patch_size=4), tmp_path / "bad")


# ------------------------------------------------------------------------------------------ encoders
def test_a_roberta_classifier_starts_from_the_checkpoints_encoder_and_tokenizer(tmp_path):
    """Classification from a RoBERTa directory (positions from pad + 1, <pad> = 1): read through the family
    registry, so the run's encoder gives RobertaModel's hidden states and pads with <pad>; the head is new."""
    directory, _ = roberta_directory(tmp_path / "roberta", "RobertaModel")
    data = tmp_path / "train.tsv"
    data.write_text("".join(f"{t}\t{i % 2}\n" for i, t in enumerate(ROBERTA_CORPUS)), encoding="utf-8")
    recipe = {"data": {"task": "classification", "train_src": str(data), "valid_src": str(data), "max_length": 32},
              "tokenizer": {"kind": "pretrained"}, "model": {"pretrained": str(directory)},
              "train": training(2, 0.0, batch_size=8, max_tokens=1000)}
    run = train(recipe, tmp_path / "run")
    loaded = load_any(run)
    reference = roberta_reference_tokenizer(directory)
    enc = reference(ROBERTA_CORPUS[:4], padding=True, return_tensors="pt")
    ids, mask, _ = tokenize(loaded.tokenizer, ROBERTA_CORPUS[:4])
    assert torch.equal(ids, enc["input_ids"]) and torch.equal(mask, enc["attention_mask"])
    hf = transformers.RobertaModel.from_pretrained(directory).eval()
    with torch.no_grad():
        theirs = hf(**enc).last_hidden_state
        ours = loaded.model(ids, mask)
    real = mask.bool()
    torch.testing.assert_close(ours[real], theirs[real], atol=1e-5, rtol=0)
    assert loaded.model.num_labels == 2 and loaded.model.config.position_offset


# ------------------------------------------------------------------------------------------ exports
@pytest.mark.parametrize("fmt", ["onnx", "ctranslate2"])
def test_a_marian_directory_and_a_run_from_it_export_and_decode_what_generate_gives(fmt, marian_dir, parallel,
                                                                                     tmp_path):
    """rosetta export of the Hugging Face directory itself and of a run started from it (lr 0): each export
    tokenises with the checkpoint's copied files and decodes, greedy, what MarianMTModel.generate gives."""
    pytest.importorskip("onnxruntime" if fmt == "onnx" else "ctranslate2")
    run = train(marian_recipe(marian_dir, parallel, steps=1, lr=0.0), tmp_path / "run")
    expected = generate(marian_dir, SOURCES, beam=1)
    for source in (marian_dir, run):
        out = tmp_path / f"export-{source.name}"
        export_model(source, out, fmt)
        assert (out / "source.spm").read_bytes() == (marian_dir / "source.spm").read_bytes()
        exported = rosetta.load(out)
        assert exported.translate(SOURCES, beam=1) == expected, source
        if fmt == "onnx":  # Rosetta's own beam search over the exported graphs
            assert exported.translate(SOURCES, beam=4) == generate(marian_dir, SOURCES, beam=4)


@pytest.mark.parametrize("beam", [1, 4])
def test_a_fine_tuned_marian_goes_back_to_a_directory_transformers_reads(beam, marian_dir, parallel, tmp_path):
    """Rosetta → Hugging Face → Rosetta: the fine-tuned weights (moved by training) in MarianMTModel decode what
    the run decodes, through the checkpoint's own tokenizer files."""
    run = train(marian_recipe(marian_dir, parallel, steps=6, lr=3e-3), tmp_path / "run")
    out = export_huggingface(run, tmp_path / "hf")
    assert (out / "vocab.json").read_bytes() == (marian_dir / "vocab.json").read_bytes()
    tuned = rosetta.load(run).translate(SOURCES, beam=beam)
    assert generate(out, SOURCES, beam) == tuned != generate(marian_dir, SOURCES, beam)
    assert rosetta.load(out).translate(SOURCES, beam=beam) == tuned


def test_a_fine_tuned_gpt2_goes_back_to_gpt2(gpt2_dir, text, tmp_path):
    run = train(gpt2_recipe(gpt2_dir, text, steps=6, lr=3e-3), tmp_path / "run")
    out = export_huggingface(run, tmp_path / "hf")
    loaded = load_any(run)
    ids = loaded.tokenizer.encode("Hello world")
    assert list(sample(loaded.model, ids, 12, temperature=0.0)) == hf_greedy(out, "Hello world")


# ------------------------------------------------------------------------------------------ BART
def test_a_bart_run_learns_targets_after_the_forced_bos_and_decodes_what_generate_gives(parallel, tmp_path):
    """BART's generation forces <s> after its start token </s>: a run from it trains on targets <s> … as BART
    was pretrained, and at lr 0 decodes what BartForConditionalGeneration.generate gives (greedy, beam 4)."""
    from test_hf_bart import BART, BART_BASE_GENERATION, perturbed, write_tokenizer

    directory = tmp_path / "bart"
    directory.mkdir()
    vocab = write_tokenizer(directory)
    torch.manual_seed(0)
    model = transformers.BartForConditionalGeneration(transformers.BartConfig(vocab_size=vocab, init_std=0.3, **BART))
    perturbed(model, 0).save_pretrained(directory)
    (directory / "generation_config.json").write_text(json.dumps(BART_BASE_GENERATION), encoding="utf-8")
    recipe = marian_recipe(directory, parallel, steps=2, lr=0.0)
    rcp = recipe_from_dict(recipe)
    task = build_task(rcp, run_dir=tmp_path / "run")
    assert all(t[0] == BART_BASE_GENERATION["forced_bos_token_id"] for _, t in task.train_ids)
    Trainer(rcp, task, tmp_path / "run", progress=False).fit()
    tokenizer = transformers.BartTokenizerFast.from_pretrained(directory)
    hf = transformers.BartForConditionalGeneration.from_pretrained(directory).eval()
    translator = rosetta.load(tmp_path / "run")
    for beam in (1, 4):
        with torch.no_grad():
            out = hf.generate(**tokenizer(SOURCES, padding=True, return_tensors="pt"), num_beams=beam)
        assert translator.translate(SOURCES, beam=beam) == tokenizer.batch_decode(out, skip_special_tokens=True)
