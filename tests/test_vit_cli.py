"""The commands with an image model (tiny_vit.py's ViT on scikit-learn's digits): ``rosetta classify``,
``rosetta attention IMAGE`` and ``rosetta evaluate --corpus digits|mnist``. Every printed number is compared
with the model called directly on the same pixels."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_plots import check_png
from typer.testing import CliRunner

from rosetta.cli import app
from rosetta.data.images import as_nchw, load_images, normalize, resize_images
from rosetta.decode.loading import load_any
from rosetta.view import plots
from rosetta.view.image_attention import PANEL

pytest.importorskip("sklearn")
from tiny_vit import tiny_vit_dir  # noqa: E402 — needs scikit-learn's digits

runner = CliRunner()


@pytest.fixture(scope="module")
def model():
    return tiny_vit_dir()


@pytest.fixture(scope="module")
def loaded(model):
    return load_any(model)


@pytest.fixture(scope="module")
def digits():
    return load_images("digits", "test")


def direct(loaded, pixels):
    """Softmax probabilities (N, 10) of the model on uint8 8×8 digits (N, 8, 8), called directly."""
    spec = loaded.info["image"]
    with torch.no_grad():
        return loaded.model(normalize(as_nchw(np.asarray(pixels)), spec["mean"], spec["std"])).softmax(-1)


def save(picture, path):
    picture.save(path)
    return str(path)


@pytest.fixture(scope="module")
def pictures(tmp_path_factory, digits):
    """8×8 grey PNGs of test digits 0–3 (converted exactly: no resizing), a text file, a missing path."""
    root = tmp_path_factory.mktemp("pictures")
    paths = [save(Image.fromarray(digits[0][i], "L"), root / f"digit{i}.png") for i in range(4)]
    (root / "notes.txt").write_text("not a picture\n", encoding="utf-8")
    return {"digits": paths, "text": str(root / "notes.txt"), "missing": str(root / "missing.png"), "root": root}


def parse_line(line):
    """'path: 3 (0.912), 8 (0.051), 5 (0.013)' → (path, [(label, p), …])."""
    path, _, rest = line.rpartition(": ")
    top = []
    for item in rest.split(", "):
        label, _, p = item.partition(" (")
        top.append((label, float(p.rstrip(")"))))
    return path, top


# ------------------------------------------------------------------------------------------ classify
def test_classify_prints_the_top_3_of_each_picture_in_order(model, loaded, pictures, digits):
    r = runner.invoke(app, ["classify", "--model", str(model), *pictures["digits"]])
    assert r.exit_code == 0, r.output
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 4 and r.stderr == ""
    probs = direct(loaded, digits[0][:4])
    for i, line in enumerate(lines):
        path, top = parse_line(line)
        assert path == pictures["digits"][i] and len(top) == 3
        expected = probs[i].topk(3)
        assert [label for label, _ in top] == [str(k) for k in expected.indices.tolist()]
        assert [p for _, p in top] == pytest.approx(expected.values.tolist(), abs=6e-4)  # printed with 3 digits
        assert top[0][1] >= top[1][1] >= top[2][1]


def test_classify_json_one_object_per_line(model, loaded, pictures, digits):
    r = runner.invoke(app, ["classify", "--model", str(model), "--json", "--top-k", "5", *pictures["digits"][:2]])
    assert r.exit_code == 0, r.output
    objects = [json.loads(line) for line in r.stdout.splitlines()]
    probs = direct(loaded, digits[0][:2])
    for i, obj in enumerate(objects):
        assert set(obj) == {"path", "label", "probability", "top"} and obj["path"] == pictures["digits"][i]
        assert len(obj["top"]) == 5 and obj["top"][0] == [obj["label"], obj["probability"]]
        assert obj["label"] == str(int(probs[i].argmax()))
        assert obj["probability"] == pytest.approx(float(probs[i].max()), abs=1e-5)
        assert sum(p for _, p in obj["top"]) <= 1 + 1e-5
    big = runner.invoke(app, ["classify", "--model", str(model), "--json", "--top-k", "50", pictures["digits"][0]])
    assert len(json.loads(big.stdout)["top"]) == 10  # capped at the number of labels


def test_a_bad_file_among_pictures_is_reported_and_the_others_are_classified(model, pictures):
    paths = [pictures["digits"][0], pictures["text"], pictures["digits"][1], pictures["missing"],
             str(pictures["root"])]
    r = runner.invoke(app, ["classify", "--model", str(model), *paths])
    assert r.exit_code == 1
    assert [parse_line(line)[0] for line in r.stdout.splitlines()] == [paths[0], paths[2]]
    errors = r.stderr.strip().splitlines()
    assert len(errors) == 3 and all(e.startswith("error: ") for e in errors)
    assert "notes.txt: not an image" in errors[0]
    assert "missing.png: no such file" in errors[1]
    assert "is a directory" in errors[2]
    with_json = runner.invoke(app, ["classify", "--model", str(model), "--json", paths[1], paths[0]])
    assert with_json.exit_code == 1 and json.loads(with_json.stdout)["path"] == paths[0]


def test_rgba_and_a_100x60_jpeg_are_read_like_the_digit(model, loaded, digits, tmp_path):
    probs = direct(loaded, digits[0][:20])
    i = int(probs.max(-1).values.argmax())  # the digit the model is surest of
    pixels = digits[0][i]
    # RGBA: black ink on a transparent background, the digit as the alpha channel (a drawing program's export)
    rgba = np.zeros((8, 8, 4), dtype=np.uint8)
    rgba[..., 3] = pixels
    rgba_path = save(Image.fromarray(rgba, "RGBA"), tmp_path / "ink.png")
    # 100×60 RGB, as JPEG and (lossless) PNG: the digit enlarged to 60×60 in the middle of a black band
    band = Image.new("RGB", (100, 60))
    band.paste(Image.fromarray(pixels, "L").resize((60, 60), Image.Resampling.NEAREST).convert("RGB"), (20, 0))
    band.save(tmp_path / "wide.jpg", quality=95)
    paths = [rgba_path, str(tmp_path / "wide.jpg"), save(band, tmp_path / "wide.png")]
    r = runner.invoke(app, ["classify", "--model", str(model), "--json", *paths])
    assert r.exit_code == 0, r.output
    ink, jpeg, png = (json.loads(line) for line in r.stdout.splitlines())
    # transparent → white paper, dark ink → inverted (a light digit on black, as trained): exactly the digit
    assert ink["label"] == str(int(probs[i].argmax()))
    assert ink["probability"] == pytest.approx(float(probs[i].max()), abs=1e-4)
    # the wide picture is padded to 100×100 (black, its border's colour) and shrunk to 8×8: the JPEG reads as
    # its lossless twin does, and the padding kept the digit's shape (a stretched band would read otherwise)
    assert jpeg["label"] == png["label"] and jpeg["probability"] == pytest.approx(png["probability"], abs=0.1)
    square = Image.new("L", (100, 100))
    square.paste(band.convert("L"), (0, 20))
    expected = direct(loaded, np.asarray(square.resize((8, 8), Image.Resampling.BICUBIC))[None])[0]
    assert png["label"] == str(int(expected.argmax()))
    assert png["probability"] == pytest.approx(float(expected.max()), abs=1e-4)


def test_classify_refuses_other_families_and_bad_options(model, pictures):
    from tiny_translator import tiny_model_dir

    r = runner.invoke(app, ["classify", "--model", str(tiny_model_dir()), pictures["digits"][0]])
    assert r.exit_code == 2 and "not supported for family 'translation'" in r.stderr
    r = runner.invoke(app, ["classify", "--model", str(model), "--top-k", "0", pictures["digits"][0]])
    assert r.exit_code == 2 and "--top-k" in r.stderr
    r = runner.invoke(app, ["classify", "--model", str(model), "--invert", "maybe", pictures["digits"][0]])
    assert r.exit_code == 2 and "--invert" in r.stderr
    r = runner.invoke(app, ["classify", "--model", str(pictures["root"] / "nothing"), pictures["digits"][0]])
    assert r.exit_code == 2 and "not a Rosetta model" in r.stderr


# ------------------------------------------------------------------------------------------ attention
def test_attention_writes_the_layer_head_grid_and_the_rollout_as_overlays(model, loaded, pictures, tmp_path):
    out = tmp_path / "figures"
    r = runner.invoke(app, ["attention", "--model", str(model), pictures["digits"][2], "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.iterdir()) == ["layers.png", "rollout.png"]  # PNG only by default
    layers, heads = loaded.model.config.n_encoder_layers, loaded.model.config.n_heads
    size = (round((1.0 + PANEL * heads) * plots.DPI), round((0.8 + (PANEL + 0.2) * layers) * plots.DPI))
    grid = check_png(out / "layers.png", size)
    rollout = check_png(out / "rollout.png")
    for image in (grid, rollout):  # the heat overlay is in colour over a grey picture
        rgb = image.reshape(-1, 3).astype(int)
        assert ((rgb.max(1) - rgb.min(1)) > 60).mean() > 0.05
    assert "digit2.png  →  " in r.stdout and "wrote" in r.stdout

    r = runner.invoke(app, ["attention", "--model", str(model), pictures["digits"][2], "--out", str(out),
                            "--layer", "1", "--head", "2", "--format", "png,svg,pdf"])
    assert r.exit_code == 0, r.output
    names = {p.name for p in out.iterdir()}
    assert {f"layers_layer1_head2.{f}" for f in ("png", "svg", "pdf")} <= names
    assert {f"rollout.{f}" for f in ("svg", "pdf")} <= names
    one = (round((1.0 + PANEL) * plots.DPI), round((0.8 + PANEL + 0.2) * plots.DPI))  # one layer, one head
    check_png(out / "layers_layer1_head2.png", one)


def test_attention_rejects_bad_input_for_an_image_model(model, pictures, tmp_path):
    base = ["attention", "--model", str(model), "--out", str(tmp_path)]
    r = runner.invoke(app, [*base, pictures["digits"][0], "--layer", "9"])
    assert r.exit_code == 2 and "--layer 9 is out of range" in r.stderr
    r = runner.invoke(app, [*base, pictures["digits"][0], "--kind", "cross"])
    assert r.exit_code == 2 and "for translation models" in r.stderr
    r = runner.invoke(app, [*base, pictures["text"]])
    assert r.exit_code == 2 and "not an image" in r.stderr


def test_the_overlay_puts_the_heat_where_the_weight_is():
    from rosetta.view.image_attention import heat_rgba

    weights = np.zeros((4, 4))
    weights[0, 3] = 2.0  # top right
    rgba = heat_rgba(weights, 8)
    assert rgba.shape[0] == rgba.shape[1] and rgba.shape[0] % 8 == 0 and rgba.shape[0] >= 128
    alpha = rgba[..., 3]
    y, x = np.unravel_index(alpha.argmax(), alpha.shape)
    assert y < alpha.shape[0] / 4 and x > 3 * alpha.shape[1] / 4
    assert alpha.max() == pytest.approx(0.85, abs=0.02) and alpha.min() == pytest.approx(0.15, abs=1e-6)


# ------------------------------------------------------------------------------------------ evaluate
def test_evaluate_an_image_model_on_digits(model, loaded, digits):
    r = runner.invoke(app, ["evaluate", "--model", str(model), "--corpus", "digits", "--split", "test", "--json"])
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout)
    predicted = direct(loaded, digits[0]).argmax(-1).numpy()
    correct = int((predicted == digits[1]).sum())
    assert result["n"] == 360 and result["correct"] == correct and result["accuracy"] == pytest.approx(correct / 360)
    assert result["accuracy"] > 0.8 and result["corpus"] == "digits" and result["seconds"] >= 0

    r = runner.invoke(app, ["evaluate", "--model", str(model), "--corpus", "digits", "--limit", "50"])
    assert r.exit_code == 0 and r.stdout.startswith("accuracy ") and "/50) on digits test" in r.stdout
    r = runner.invoke(app, ["evaluate", "--model", str(model), "--corpus", "digits", "--beam", "4"])
    assert r.exit_code == 2 and "--beam" in r.stderr and "image model" in r.stderr
    r = runner.invoke(app, ["evaluate", "--model", str(model)])
    assert r.exit_code == 2 and "--corpus" in r.stderr


def test_evaluate_writes_the_predicted_labels(model, loaded, digits, tmp_path):
    out = tmp_path / "labels.txt"
    r = runner.invoke(app, ["evaluate", "--model", str(model), "--corpus", "digits", "--limit", "30",
                            "--output", str(out)])
    assert r.exit_code == 0, r.output
    assert out.read_text().split() == [str(k) for k in direct(loaded, digits[0][:30]).argmax(-1).tolist()]


@pytest.mark.corpus
def test_evaluate_on_mnist_test_with_a_limit(model, loaded):
    import os

    root = Path(os.environ.get("ROSETTA_DATA", ""))
    if not (root / "mnist" / "mnist.npz").is_file():
        pytest.skip("ROSETTA_DATA has no mnist/mnist.npz")
    r = runner.invoke(app, ["evaluate", "--model", str(model), "--corpus", "mnist", "--split", "test", "--limit",
                            "200", "--json"])
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout)
    with np.load(root / "mnist" / "mnist.npz") as npz:  # the file read directly, not through load_images
        images, labels = npz["x_test"][:200], npz["y_test"][:200]
    spec = loaded.info["image"]
    x = normalize(resize_images(as_nchw(images), 8), spec["mean"], spec["std"])  # 28×28 → the model's 8×8
    with torch.no_grad():
        correct = int((loaded.model(x).argmax(-1).numpy() == labels).sum())
    assert result["n"] == 200 and result["correct"] == correct and result["split"] == "test"
    assert result["corpus"] == "mnist" and 0 <= result["accuracy"] <= 1
