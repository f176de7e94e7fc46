"""ViT from Hugging Face directories (rosetta.hub.vit): ViTForImageClassification + preprocessor_config.json.

Reference: a tiny random ``transformers`` ViTForImageClassification (32 px, 8 px patches, 3 labels) saved with
``save_pretrained`` beside a ViTImageProcessor with its own mean and std. Checked: logits and every layer's
attention within 1e-5 (fp32); ``rosetta classify --model DIR picture.png --json`` gives id2label's names and
the probabilities HF's processor + model give for that picture; a twin with one weight changed fails; a ViT
without its classifier, and a processor that resizes to another size, are refused in one line.
"""

import json

import numpy as np
import pytest
import torch
from hf_dirs import twin
from typer.testing import CliRunner

from rosetta.checkpoint import CheckpointError
from rosetta.cli import app
from rosetta.decode.loading import load_any

transformers = pytest.importorskip("transformers")
Image = pytest.importorskip("PIL.Image")

TOL = 1e-5
LABELS = {0: "cat", 1: "dog", 2: "猫头鹰"}
VIT = dict(image_size=32, patch_size=8, num_channels=3, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
           intermediate_size=48)
MEAN, STD = [0.4, 0.5, 0.6], [0.2, 0.25, 0.3]
runner = CliRunner()


def make_dir(root, cls=None, **extra):
    root.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    config = transformers.ViTConfig(**VIT, num_labels=3, id2label=LABELS, label2id={v: k for k, v in LABELS.items()},
                                    **extra)
    hf = (cls or transformers.ViTForImageClassification)(config).eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    hf.save_pretrained(root)
    processor = transformers.ViTImageProcessor(size={"height": 32, "width": 32}, image_mean=MEAN, image_std=STD)
    processor.save_pretrained(root)
    return root, hf


@pytest.fixture(scope="module")
def vit_dir(tmp_path_factory):
    return make_dir(tmp_path_factory.mktemp("vit"))


def pictures(tmp_path, n=3):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        path = tmp_path / f"p{i}.png"
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def logit_gap(model, hf, images) -> float:
    with torch.no_grad():
        return (model(images) - hf(pixel_values=images).logits).abs().max().item()


def test_logits_and_attention_equal_transformers(vit_dir, tmp_path):
    directory, hf = vit_dir
    loaded = load_any(directory)
    assert loaded.family == "vit" and loaded.info["labels"] == list(LABELS.values())
    assert loaded.model.image.mean == tuple(MEAN) and loaded.model.image.std == tuple(STD)
    images = torch.randn(4, 3, 32, 32)
    assert logit_gap(loaded.model, hf, images) < TOL
    hf.set_attn_implementation("eager")
    with torch.no_grad():
        expected = hf(pixel_values=images, output_attentions=True).attentions
        _, ours = loaded.model(images, return_attention=True)
    for a, b in zip(ours, expected, strict=True):
        assert (a - b).abs().max().item() < TOL
    changed = twin(directory, tmp_path, "vit.encoder.layer.1.attention.attention.query.weight")  # (not a key bias:
    assert logit_gap(load_any(changed).model, hf, images) > 1e-4                               # it would not show)


def test_classify_a_picture_as_the_processor_and_model_do(vit_dir, tmp_path):
    directory, hf = vit_dir
    paths = pictures(tmp_path)
    result = runner.invoke(app, ["classify", "--model", str(directory), "--json", "--top-k", "3", *map(str, paths)])
    assert result.exit_code == 0, result.output
    processor = transformers.ViTImageProcessor.from_pretrained(directory)
    for line, path in zip(result.stdout.splitlines(), paths, strict=True):
        got = json.loads(line)
        pixels = processor(images=Image.open(path), return_tensors="pt")["pixel_values"]
        with torch.no_grad():
            p = hf(pixel_values=pixels).logits.softmax(-1)[0]
        assert got["label"] == LABELS[int(p.argmax())]
        assert {name: prob for name, prob in got["top"]}.keys() == set(LABELS.values())
        for name, prob in got["top"]:
            assert abs(prob - float(p[list(LABELS.values()).index(name)])) < TOL


def test_a_vit_without_classifier_or_with_another_size_is_refused(tmp_path):
    directory, _ = make_dir(tmp_path / "base", transformers.ViTModel)
    with pytest.raises(CheckpointError) as error:
        load_any(directory)
    assert "\n" not in str(error.value) and "ViTForImageClassification" in str(error.value)
    directory, _ = make_dir(tmp_path / "resized")
    transformers.ViTImageProcessor(size={"height": 64, "width": 64}).save_pretrained(directory)
    with pytest.raises(CheckpointError, match="resized to .*64.* reads 32"):
        load_any(directory)
