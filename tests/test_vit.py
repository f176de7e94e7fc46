"""Vision Transformer: equal to an independent implementation, position interpolation, data, training.

Independent reference: Hugging Face ``ViTForImageClassification`` (timm cannot be installed beside the CPU
torch), built from an explicit ``ViTConfig`` with random weights (no download), then given our weights through
``hf_vit_state_dict`` (our fused q/k/v split into theirs) and ``from_pretrained`` on a local directory, which
reports every missing or unexpected name. Logits and attention weights must agree to 1e-5 in fp32; a small
change to one of our weights must break the agreement (the sensitivity twin), so the comparison can fail.
"""

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from rosetta.data.download import ChecksumError
from rosetta.data.images import (
    as_nchw,
    holdout,
    load_images,
    normalize,
    random_shift,
    to_tensor,
)
from rosetta.models.vit import (
    VIT_PRESETS,
    ImageSpec,
    ViT,
    hf_vit_config,
    hf_vit_state_dict,
    interpolate_positions,
    vit_config,
)

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)


def grey_or_rgb(channels):
    return dict(channels=channels, mean=(0.5,) * channels, std=(0.25,) * channels)


def our_vit(channels, image_size, patch_size=4, num_labels=5, seed=0):
    """A small ViT with every weight drawn at a scale where it matters: matrices N(0, 1/fan_in) (the init's 0.02
    would leave attention nearly uniform and the logits nearly independent of the image), random biases and
    LayerNorm gains, [CLS] and positions N(0, 0.5²)."""
    torch.manual_seed(seed)
    config, image = vit_config(image_size=image_size, patch_size=patch_size, **grey_or_rgb(channels), d_model=32,
                               n_heads=4, d_ff=64, n_encoder_layers=2, dropout=0.0)
    model = ViT(config, image, num_labels).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in ("cls_token", "position"):
                p.normal_(0.0, 0.5)
            elif name.endswith("bias"):
                p.normal_(0.0, 0.1)
            elif "norm" in name:
                p.normal_(1.0, 0.2)
            else:
                p.normal_(0.0, p[0].numel() ** -0.5)
    return model


def hf_copy(model, tmp_path, transformers):
    """Hugging Face's ViT from an explicit ViTConfig, with our weights loaded through a local directory."""
    image = model.image
    hf_config = transformers.ViTConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, hidden_act="gelu",
        layer_norm_eps=1e-6, qkv_bias=True, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
        image_size=image.image_size, patch_size=image.patch_size, num_channels=image.channels,
        num_labels=model.num_labels)
    for key, value in hf_vit_config(model).items():  # our exporter's config says the same
        if key not in ("model_type", "architectures", "id2label", "label2id"):
            assert getattr(hf_config, key) == value, key
    hf_config.save_pretrained(tmp_path)
    save_file(hf_vit_state_dict(model), tmp_path / "model.safetensors")
    hf, info = transformers.ViTForImageClassification.from_pretrained(
        tmp_path, attn_implementation="eager", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    return hf.eval()


@pytest.fixture(scope="module")
def transformers():
    return pytest.importorskip("transformers")


# ------------------------------------------------------------------------------------------ equality
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("image_size", [16, 28])
def test_logits_and_attention_equal_hugging_face(transformers, tmp_path, channels, image_size):
    model = our_vit(channels, image_size)
    hf = hf_copy(model, tmp_path, transformers)
    images = torch.randn(3, channels, image_size, image_size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours, attention = model(images, return_attention=True)
        theirs = hf(pixel_values=images, output_attentions=True)
    n = (image_size // 4) ** 2 + 1
    assert ours.shape == (3, 5) and len(attention) == 2 and attention[0].shape == (3, 4, n, n)
    assert (ours - theirs.logits).abs().max() <= 1e-5
    for a, b in zip(attention, theirs.attentions, strict=True):
        assert (a - b).abs().max() <= 1e-5
    assert ours.std(dim=0).min() > 0.1  # the logits depend on the image: not an agreement of constants


@pytest.mark.parametrize("weight", ["patch_embed.proj.weight", "position", "cls_token",
                                    "encoder.layers.1.self_attn.qkv_proj.weight", "encoder.final_norm.weight"])
def test_sensitivity_twin_a_small_change_breaks_the_agreement(transformers, tmp_path, weight):
    model = our_vit(3, 16)
    hf = hf_copy(model, tmp_path, transformers)
    with torch.no_grad():
        dict(model.named_parameters())[weight].view(-1)[5] += 0.05
        images = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))
        assert (model(images) - hf(pixel_values=images).logits).abs().max() > 1e-4


def test_resized_positions_equal_hugging_face_interpolation(transformers, tmp_path):
    """Our bicubic resize of the patch grid (4×4 → 6×6) = Hugging Face's ``interpolate_pos_encoding``."""
    model = our_vit(1, 16)
    hf = hf_copy(model, tmp_path, transformers)
    images = torch.randn(2, 1, 24, 24, generator=torch.Generator().manual_seed(2))
    model.resize_positions(24)
    with torch.no_grad():
        diff = (model(images) - hf(pixel_values=images, interpolate_pos_encoding=True).logits).abs().max()
    assert diff <= 1e-5
    assert model.position.shape == (1, 37, 32) and model.image.image_size == 24 and model.config.max_len == 37


# ------------------------------------------------------------------------------------------ positions
def test_resize_positions_shape_and_identity():
    model = our_vit(1, 28, patch_size=7)
    images = torch.randn(2, 1, 28, 28)
    before, position = model(images), model.position.detach().clone()
    model.resize_positions(28)  # the same size: nothing changes
    assert torch.equal(model.position, position) and torch.equal(model(images), before)
    model.resize_positions(56)  # 4×4 → 8×8 patches
    assert model.position.shape == (1, 65, 32) and torch.equal(model.position[:, 0], position[:, 0])  # [CLS] kept
    assert model(torch.randn(2, 1, 56, 56)).shape == (2, 5)
    with pytest.raises(ValueError, match="do not fit this ViT"):
        model(images)  # the old size no longer fits
    with pytest.raises(ValueError, match="multiple of patch_size"):
        model.resize_positions(30)


def test_doubling_the_grid_keeps_a_linear_ramp_a_ramp():
    """Channel 0 = column j, channel 1 = row i of a 7×7 grid; doubled to 14×14 they stay ramps (bicubic is not
    exactly linear: ±0.05 inside, ±0.15 near the clamped border), along the same axes, with slope ½."""
    g, d = 7, 2
    position = torch.zeros(1, 1 + g * g, d)
    position[0, 0] = torch.tensor([5.0, -5.0])  # [CLS]
    ramp = torch.arange(g, dtype=torch.float32)
    position[0, 1:, 0], position[0, 1:, 1] = ramp.repeat(g), ramp.repeat_interleave(g)  # row-major grid
    out = interpolate_positions(position, 2 * g)
    assert out.shape == (1, 1 + 4 * g * g, d) and torch.equal(out[0, 0], position[0, 0])
    grid = out[0, 1:].reshape(2 * g, 2 * g, d)
    expected = (torch.arange(2 * g) + 0.5) / 2 - 0.5  # where each new cell centre falls on the old grid
    for along_columns, values in ((True, grid[..., 0]), (False, grid[..., 1].T)):
        assert torch.allclose(values, values[:1].expand_as(values), atol=1e-6), along_columns  # flat across
        row = values[0]
        assert (row[1:] - row[:-1] > 0).all()  # increasing
        assert (row - expected).abs().max() <= 0.15 and (row - expected)[3:-3].abs().max() <= 0.05
        slope = np.polyfit(np.arange(2 * g), row.numpy(), 1)[0]
        assert slope == pytest.approx(0.5, abs=0.02)


# ------------------------------------------------------------------------------------------ configs
def test_presets_and_config_checks():
    config, image = vit_config("vit-small")
    assert (config.d_model, config.n_encoder_layers, config.n_heads, config.d_ff) == (384, 12, 6, 1536)
    assert (image.image_size, image.patch_size, image.num_patches) == (224, 16, 196)
    assert (config.positional, config.norm_first, config.activation, config.norm_eps) == ("none", True, "gelu", 1e-6)
    assert 21_000_000 < ViT(config, image, 1000).num_parameters() < 23_000_000  # ViT-S/16: 22.1 M
    tiny, spec = vit_config("vit-tiny", n_encoder_layers=3)
    assert tiny.n_encoder_layers == 3 and spec.channels == 1 and spec.image_size == 28
    assert set(VIT_PRESETS) >= {"vit-tiny", "vit-small"}
    with pytest.raises(ValueError, match="unknown ViT settings"):
        vit_config("vit-tiny", patch=4)
    with pytest.raises(ValueError, match="unknown ViT preset"):
        vit_config("small")
    with pytest.raises(ValueError, match="mean has 1 values but channels=3"):
        vit_config("vit-tiny", channels=3)
    with pytest.raises(ValueError, match="positional='none'"):
        ViT(tiny.replace(positional="learned"), spec, 10)
    assert ImageSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


def test_mnist_recipe_reads_and_builds_its_model():
    from rosetta.train.recipe import load_recipe

    recipe = load_recipe(CONFIGS / "mnist-vit.toml")
    assert recipe.data.task == "image-classification" and recipe.data.corpus == "mnist"
    assert recipe.train.threads == 2 and recipe.train.max_minutes == 15 and recipe.train.schedule == "linear"
    config, image = vit_config(recipe.model.preset, **recipe.model.overrides)
    assert image.image_size == 28 and image.channels == 1 and config.norm_first


# ------------------------------------------------------------------------------------------ training
DIGITS_RECIPE = """
[data]
task = "image-classification"
corpus = "digits"
valid_size = 360
seed = 1
[model]
preset = "vit-tiny"
image_size = 8
patch_size = 4
d_model = 64
n_heads = 4
d_ff = 128
n_encoder_layers = 2
dropout = 0.2
[train]
max_steps = 700
batch_size = 64
lr = 3e-3
warmup_steps = 20
schedule = "linear"
weight_decay = 0.1
betas = [0.9, 0.999]
eps = 1e-8
label_smoothing = 0.0
eval_every = 700
save_every = 700
log_every = 100
keep_last = 1
precision = "fp32"
device = "cpu"
threads = 1
seed = 1
"""


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_tiny_vit_learns_sklearn_digits_through_the_task_and_trainer(tmp_path, restore_threads):
    pytest.importorskip("sklearn")
    from rosetta.decode.loading import load_any
    from rosetta.tasks import build_task
    from rosetta.train import Trainer
    from rosetta.train.recipe import load_recipe

    (tmp_path / "digits.toml").write_text(DIGITS_RECIPE, encoding="utf-8")
    recipe = load_recipe(tmp_path / "digits.toml")
    task = build_task(recipe)
    assert len(task.valid_labels) == 360 and len(task.train_labels) == 1437 - 360
    Trainer(recipe, task, tmp_path / "run", progress=False).fit()
    final = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()][-1]
    accuracy = final["final_metrics"]["accuracy"]
    assert accuracy >= 0.95, final

    loaded = load_any(tmp_path / "run")
    assert loaded.family == "vit" and loaded.tokenizer is None and isinstance(loaded.model, ViT)
    assert loaded.info["image"]["image_size"] == 8 and loaded.info["labels"] == [str(i) for i in range(10)]
    images, labels = load_images("digits", "test")  # never seen: neither trained on nor used for validation
    spec = loaded.info["image"]
    with torch.no_grad():
        predicted = loaded.model(normalize(as_nchw(images), spec["mean"], spec["std"])).argmax(-1)
    assert (predicted.numpy() == labels).mean() >= 0.95
    bigger = load_any(tmp_path / "run", image_size=16)  # positions interpolated 2×2 → 4×4 on load
    assert bigger.model.position.shape == (1, 17, 64) and bigger.info["image"]["image_size"] == 16


def test_image_batches_resume_exactly_with_the_same_shifts():
    from rosetta.models.vit import ImageSpec
    from rosetta.tasks.image_classification import ImageBatches

    images = torch.randint(0, 256, (50, 1, 8, 8), dtype=torch.uint8)
    labels = torch.arange(50) % 10
    spec = ImageSpec(image_size=8, patch_size=4, channels=1, mean=(0.5,), std=(0.5,))
    stream = ImageBatches(images, labels, spec, batch_size=16, seed=3, shift=2)
    it = iter(stream)
    batches, states = [], []
    for _ in range(6):  # more than one epoch (4 batches each)
        states.append(stream.state_dict())
        batches.append(next(it))
    resumed = ImageBatches(images, labels, spec, batch_size=16, seed=3, shift=2)
    resumed.load_state_dict(states[5])
    x, y = next(iter(resumed))
    assert torch.equal(x, batches[5][0]) and torch.equal(y, batches[5][1])
    seen = torch.cat([b[1] for b in batches[:4]])
    assert len(seen) == 50 and sorted(seen.tolist()) == sorted(labels.tolist())  # an epoch = every image once
    plain = ImageBatches(images, labels, spec, batch_size=16, seed=3, shift=0)
    assert not torch.equal(next(iter(plain))[0], batches[0][0])  # the shifts changed the pixels


def test_random_shift_moves_content_and_fills_with_background():
    image = torch.zeros(1, 1, 9, 9, dtype=torch.uint8)
    image[0, 0, 4, 4] = 200
    shifted = random_shift(image.expand(200, -1, -1, -1), 2, torch.Generator().manual_seed(0))
    rows, cols = (shifted[:, 0] == 200).nonzero()[:, 1:].T
    assert len(rows) == 200 and set(rows.tolist()) == set(range(2, 7)) and set(cols.tolist()) == set(range(2, 7))
    assert int(shifted.sum()) == 200 * 200  # one bright pixel each, nothing else: zero fill
    assert torch.equal(random_shift(image, 0), image)


def test_corpus_images_are_fitted_to_the_model():
    from rosetta.tasks.image_classification import prepare_images

    digits = np.zeros((2, 8, 8), dtype=np.uint8)
    digits[:, 2:6, 2:6] = 255  # a bright square in the middle
    x = prepare_images(digits, ImageSpec(image_size=16, patch_size=4, channels=3, mean=(0.5,) * 3, std=(0.5,) * 3))
    assert x.shape == (2, 3, 16, 16) and x.dtype == torch.uint8
    assert torch.equal(x[:, 0], x[:, 2]) and x[0, 1, 7:9, 7:9].min() == 255 and x[0, 1, :2].max() == 0
    with pytest.raises(ValueError, match="3 channels, the model reads 1"):
        prepare_images(np.zeros((1, 8, 8, 3), np.uint8), ImageSpec(8, 4, 1, (0.5,), (0.5,)))


# ------------------------------------------------------------------------------------------ MNIST
def real_data():
    root = os.environ.get("ROSETTA_DATA")
    if not root or not (Path(root) / "mnist" / "mnist.npz").is_file():
        pytest.skip("ROSETTA_DATA has no mnist/mnist.npz")
    return Path(root)


@pytest.mark.corpus
def test_mnist_loader_reads_the_real_file():
    root = real_data()
    train_x, train_y = load_images("mnist", "train", root)
    test_x, test_y = load_images("mnist", "test", root)
    assert train_x.shape == (60000, 28, 28) and test_x.shape == (10000, 28, 28) and train_x.dtype == np.uint8
    assert train_y.dtype == np.int64
    assert np.bincount(train_y).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert np.bincount(test_y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert train_y[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]  # the standard order
    assert test_y[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert train_x.mean() / 255 == pytest.approx(0.1307, abs=1e-4)
    with pytest.raises(ValueError, match="no split 'valid'.*holdout"):
        load_images("mnist", "valid", root)
    train, valid = holdout(60000, 5000, seed=1)
    assert len(valid) == 5000 and len(np.intersect1d(train, valid)) == 0 and len(train) + len(valid) == 60000
    assert np.array_equal(valid, holdout(60000, 5000, seed=1)[1])
    assert not np.array_equal(valid, holdout(60000, 5000, seed=2)[1])


@pytest.mark.corpus
def test_mnist_loader_names_a_corrupted_array(tmp_path):
    root = real_data()
    with np.load(root / "mnist" / "mnist.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    (tmp_path / "mnist").mkdir()
    arrays["x_test"][123, 14, 14] ^= 1  # one pixel, one bit
    np.savez(tmp_path / "mnist" / "mnist.npz", **arrays)
    assert load_images("mnist", "train", tmp_path)[0].shape == (60000, 28, 28)  # the intact arrays still load
    with pytest.raises(ChecksumError, match="array 'x_test'"):
        load_images("mnist", "test", tmp_path)


# ------------------------------------------------------------------------------------------ pictures
def encode(image, fmt):
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def test_a_28x28_grey_picture_converts_exactly():
    pixels = np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)
    out = to_tensor(encode(Image.fromarray(pixels, "L"), "PNG"), 28, 1, MNIST_MEAN, MNIST_STD)
    assert out.shape == (1, 28, 28) and out.dtype == torch.float32
    expected = (torch.from_numpy(pixels).float() / 255 - MNIST_MEAN[0]) / MNIST_STD[0]
    assert torch.allclose(out[0], expected, atol=1e-6)
    assert torch.allclose(to_tensor(Image.fromarray(pixels), 28, 1, MNIST_MEAN, MNIST_STD, invert=True)[0],
                          (1 - torch.from_numpy(pixels).float() / 255 - MNIST_MEAN[0]) / MNIST_STD[0], atol=1e-6)


def dark_digit_on_paper(mode, size=(100, 60)):
    """A black bar on a white (or transparent) background, wider than tall."""
    background = {"RGB": (255, 255, 255), "RGBA": (0, 0, 0, 0), "L": 255, "P": 255}[mode]
    image = Image.new("RGBA" if mode == "RGBA" else ("L" if mode == "P" else mode), size, background)
    ink = {"RGB": (0, 0, 0), "RGBA": (0, 0, 0, 255), "L": 0, "P": 0}[mode]
    for x in range(45, 55):
        for y in range(10, 50):
            image.putpixel((x, y), ink)
    return image.convert("P") if mode == "P" else image


@pytest.mark.parametrize(("mode", "fmt"), [("RGB", "PNG"), ("RGBA", "PNG"), ("L", "PNG"), ("P", "PNG"),
                                           ("RGB", "JPEG"), ("L", "JPEG")])  # JPEG: no transparency, no palette
def test_pictures_of_any_mode_and_size_become_model_input(tmp_path, mode, fmt):
    path = tmp_path / f"digit.{fmt.lower()}"
    dark_digit_on_paper(mode).save(path, format=fmt)
    grey = to_tensor(path, 28, 1, MNIST_MEAN, MNIST_STD, invert="auto")
    assert grey.shape == (1, 28, 28)
    pixels = grey[0] * MNIST_STD[0] + MNIST_MEAN[0]  # back to 0 … 1
    assert pixels[0].abs().max() < 0.05 and pixels[-1].abs().max() < 0.05  # padded rows: background (black)
    assert pixels[:, 0].abs().max() < 0.05  # paper became black (MNIST: light digit on black)
    assert pixels[14, 13:15].min() > 0.8  # the bar, now light, in the middle
    assert pixels[10:18, 14].min() > 0.8 and pixels[2:6, 14].max() < 0.1  # kept its shape: tall and thin
    assert pixels[14, 4:10].max() < 0.1
    rgb = to_tensor(path.read_bytes(), 28, 3, (0.5,) * 3, (0.5,) * 3)
    assert rgb.shape == (3, 28, 28) and rgb[:, 0, 0].min() > 0.9  # not inverted: white paper = (1 − 0.5) / 0.5


def test_fit_modes_and_bad_arguments():
    picture = dark_digit_on_paper("L", (100, 60))
    padded = to_tensor(picture, 28, 1, (0.0,), (1.0,), invert=True)
    stretched = to_tensor(picture, 28, 1, (0.0,), (1.0,), invert=True, fit="stretch")
    cropped = to_tensor(picture, 28, 1, (0.0,), (1.0,), invert=True, fit="crop")
    assert padded[0, 6].max() < 0.05 and stretched[0, 6, 13:15].min() > 0.5  # stretched: the bar reaches row 6
    assert cropped[0, :, 8:20].mean() > padded[0, :, 8:20].mean()  # cropped: the bar fills more of the square
    with pytest.raises(ValueError, match="fit must be"):
        to_tensor(picture, 28, 1, (0.0,), (1.0,), fit="zoom")
    with pytest.raises(ValueError, match="1 \\(grey\\) or 3"):
        to_tensor(picture, 28, 2, (0.0, 0.0), (1.0, 1.0))
