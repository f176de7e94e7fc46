"""``rosetta export --format huggingface``: a Rosetta ViT and LM as directories ``transformers``' Auto classes read.

Checked against transformers itself: ``AutoModelForImageClassification`` / ``AutoImageProcessor`` on the exported
ViT (logits 1e-5, the same pixels for a picture of the model's size, id2label), ``AutoModelForCausalLM`` /
``AutoTokenizer`` on the exported LM (the same ids, logits 1e-5); the exported directory read back by Rosetta
gives the same probabilities; the layouts without a Hugging Face class are refused with the reason.
"""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from rosetta import checkpoint as ckpt
from rosetta.cli import app
from rosetta.data.tokenizer import Tokenizer
from rosetta.models.lm import LanguageModel, gpt_config
from rosetta.models.vit import ViT, vit_config

transformers = pytest.importorskip("transformers")
Image = pytest.importorskip("PIL.Image")

runner = CliRunner()
LABELS = ["ant", "bee", "cicada"]
TEXT = "To be, or not to be: that is the question."


def perturbed(model):
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model.eval()


def export(model_dir, out):
    result = runner.invoke(app, ["export", "--model", str(model_dir), "--format", "huggingface", "--out", str(out)])
    return result


@pytest.fixture
def vit_run(tmp_path):
    config, image = vit_config(image_size=32, patch_size=8, channels=3, mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.3),
                               d_model=32, n_heads=4, d_ff=48, n_encoder_layers=2, dropout=0.0)
    model = perturbed(ViT(config, image, num_labels=3))
    info = {"family": "vit", "task": "image-classification", "model": config.to_dict(), "image": image.to_dict(),
            "num_labels": 3, "labels": LABELS}
    return ckpt.save_checkpoint(tmp_path / "vit", model, info), model


def test_a_vit_goes_to_transformers_and_back(vit_run, tmp_path):
    directory, model = vit_run
    result = export(directory, tmp_path / "hf")
    assert result.exit_code == 0, result.output
    hf = transformers.AutoModelForImageClassification.from_pretrained(tmp_path / "hf").eval()
    assert [hf.config.id2label[i] for i in range(3)] == LABELS
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert (hf(pixel_values=images).logits - model(images)).abs().max().item() < 1e-5
    picture = tmp_path / "p.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(picture)
    processor = transformers.AutoImageProcessor.from_pretrained(tmp_path / "hf")
    pixels = processor(images=Image.open(picture), return_tensors="pt")["pixel_values"]
    from rosetta.data.images import to_tensor

    ours = to_tensor(picture, 32, 3, model.image.mean, model.image.std)
    assert (pixels[0] - ours).abs().max().item() < 1e-5
    with torch.no_grad():
        p = hf(pixel_values=pixels).logits.softmax(-1)[0]
    result = runner.invoke(app, ["classify", "--model", str(tmp_path / "hf"), "--json", "--top-k", "3", str(picture)])
    got = dict(json.loads(result.stdout)["top"])
    assert max(abs(got[name] - float(p[i])) for i, name in enumerate(LABELS)) < 1e-5


def test_an_lm_goes_to_transformers_as_gpt2(tmp_path):
    tokenizer = Tokenizer.train_chars([TEXT * 3, "What light through yonder window breaks?"])
    config = gpt_config(tokenizer.vocab_size, d_model=32, n_heads=4, d_ff=48, n_decoder_layers=2, max_len=64,
                        dropout=0.0)
    model = perturbed(LanguageModel(config))
    info = {"family": "lm", "task": "lm", "model": config.to_dict()}
    directory = ckpt.save_checkpoint(tmp_path / "lm", model, info, tokenizer.save)
    result = export(directory, tmp_path / "hf")
    assert result.exit_code == 0, result.output
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    ids = tokenizer.encode(TEXT)
    assert hf_tokenizer(TEXT, add_special_tokens=False)["input_ids"] == ids
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    batch = torch.tensor([[config.bos_id, *ids]])
    with torch.no_grad():
        assert (hf(batch).logits - model(batch)).abs().max().item() < 1e-5


def test_layouts_without_a_hugging_face_class_are_refused(tmp_path):
    tokenizer = Tokenizer.train_chars([TEXT])
    config = gpt_config(tokenizer.vocab_size, d_model=32, n_heads=4, d_ff=48, n_decoder_layers=1, max_len=64,
                        positional="rope")
    directory = ckpt.save_checkpoint(tmp_path / "rope", LanguageModel(config), {"family": "lm", "task": "lm",
                                                                              "model": config.to_dict()},
                                     tokenizer.save)
    result = export(directory, tmp_path / "hf")
    assert result.exit_code == 2 and "rope" in result.output and not (tmp_path / "hf").exists()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("keep")
    result = export(directory, tmp_path / "full")
    assert result.exit_code == 2 and "not empty" in result.output and (tmp_path / "full" / "x").exists()
