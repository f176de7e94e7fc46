"""Figures: attention maps, positional encoding, training curves; the commands that write them; the CJK font.

Images are checked by reading the files back: the pixel size is the one the figure declares (nothing trims
it), and the picture is not blank (many distinct colours, ink spread over the canvas).
"""

import json
import warnings
from pathlib import Path

import matplotlib
import noto_cjk_sans_otc
import numpy as np
import pytest
from PIL import Image
from tiny_translator import tiny_model_dir
from typer.testing import CliRunner

from rosetta.cli import app as cli_app
from rosetta.view import fonts, plots
from rosetta.view.fonts import INSTALL_HINT, find_cjk_face, find_cjk_font, use_cjk_font

CJK = "我是学生"


@pytest.fixture(scope="module")
def result(translator):
    return translator.attention("I am a student.")


def check_png(path, size=None):
    """The PNG exists, has ``size`` (w, h) pixels if given, and shows something: returns its pixels."""
    image = np.asarray(Image.open(path).convert("RGB"))
    if size is not None:
        assert (image.shape[1], image.shape[0]) == size, path
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 20, f"{path} looks blank"
    ink = (image < 200).any(axis=2)  # non-white-ish pixels
    assert ink.mean() > 0.01 and ink[:, : image.shape[1] // 2].any() and ink[:, image.shape[1] // 2 :].any()
    return image


def check_svg(path):
    text = path.read_text(encoding="utf-8")
    assert text.lstrip().startswith("<?xml") and "<svg" in text and len(text) > 5000


# ------------------------------------------------------------------------------------------ attention
def test_default_attention_plots_are_grids_of_every_layer_and_head(result, translator, tmp_path):
    paths = plots.write_attention_plots(result, tmp_path, formats=("png",))  # SVG: see the next test
    assert sorted(p.name for p in paths) == sorted(f"{n}.png" for n in ("cross", "encoder", "decoder", "summary"))
    cfg = translator.config
    S, T = len(result["source_tokens"]), len(result["target_tokens"])
    expected_inches = {"cross": plots.grid_inches(T, S, cfg.n_decoder_layers, cfg.n_heads),
                       "encoder": plots.grid_inches(S, S, cfg.n_encoder_layers, cfg.n_heads),
                       "decoder": plots.grid_inches(T, T, cfg.n_decoder_layers, cfg.n_heads)}
    for kind, (w, h) in expected_inches.items():
        check_png(tmp_path / f"{kind}.png", (round(w * plots.DPI), round(h * plots.DPI)))
    check_png(tmp_path / "summary.png", tuple(round(x * plots.DPI) for x in plots.map_inches(T, S)))
    # more heads, more columns: the grid really has one panel per head
    assert plots.grid_inches(T, S, 2, 8)[0] > plots.grid_inches(T, S, 2, 4)[0]


def test_selecting_kind_layer_and_head(result, tmp_path):
    one = plots.write_attention_plots(result, tmp_path, layer=1, head=2, kind="cross")
    assert [p.name for p in one] == ["cross_layer1_head2.png", "cross_layer1_head2.svg"]
    check_svg(one[1])
    assert "我" in one[1].read_text(encoding="utf-8")  # matplotlib keeps each label's text beside its glyphs
    S, T = len(result["source_tokens"]), len(result["target_tokens"])
    check_png(one[0], tuple(round(x * plots.DPI) for x in plots.map_inches(T, S)))
    layer = plots.write_attention_plots(result, tmp_path, layer=0, kind="encoder", formats=("png",))
    assert [p.name for p in layer] == ["encoder_layer0.png"]
    w, h = plots.grid_inches(S, S, 1, 4)
    check_png(tmp_path / "encoder_layer0.png", (round(w * plots.DPI), round(h * plots.DPI)))
    for bad, message in [(dict(layer=2), "--layer 2 is out of range"), (dict(head=4), "--head 4 is out of range"),
                         (dict(kind="self"), "--kind must be one of")]:
        with pytest.raises(ValueError, match=message):
            plots.write_attention_plots(result, tmp_path, **bad)


def test_axis_tokens_label_rows_with_the_token_being_produced(result):
    rows, cols = plots.axis_tokens(result, "cross")
    assert cols == result["source_tokens"] and cols[-1] == "</s>"
    assert rows == result["target_tokens"][1:] + ["</s>"]
    assert len(rows) == len(result["cross"][0][0])  # one label per query row
    assert plots.axis_tokens(result, "decoder")[1][0] == "<s>"


# ------------------------------------------------------------------------------------------ positional, training
def test_positional_figure(tmp_path):
    paths = plots.save_figure(plots.positional_figure(64, 50), tmp_path / "pe")
    assert [p.name for p in paths] == ["pe.png", "pe.svg"]
    w, h = plots.POSITIONAL_SIZE
    image = check_png(paths[0], (round(w * plots.DPI), round(h * plots.DPI)))
    # the heatmap uses the whole diverging colour map: deep red (-1) and deep blue (+1) are both there
    red = (image[..., 0] > 150) & (image[..., 2] < 80)
    blue = (image[..., 2] > 150) & (image[..., 0] < 80)
    assert red.sum() > 500 and blue.sum() > 500
    check_svg(paths[1])


def write_metrics(run_dir, resumed=False):
    run_dir.mkdir(parents=True, exist_ok=True)
    records = [{"kind": "train", "step": s, "loss": 9 - s / 50, "nll": 8.5 - s / 50, "lr": min(s, 100) * 1e-5}
               for s in range(1, 301, 20)]
    records += [{"kind": "valid", "step": s, "valid_loss": 7 - s / 100, "bleu": s / 30} for s in (100, 200, 300)]
    if resumed:  # a resumed run logs the steps after its checkpoint again
        records += [{"kind": "resume", "step": 200}, {"kind": "train", "step": 201, "loss": 1.0, "lr": 5e-4}]
    with open(run_dir / "metrics.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)


def test_training_figure_reads_the_metrics_log(tmp_path):
    write_metrics(tmp_path / "run", resumed=True)
    metrics = plots.read_metrics(tmp_path / "run")
    assert [r["step"] for r in metrics["valid"]] == [100, 200, 300]
    assert next(r for r in metrics["train"] if r["step"] == 201)["loss"] == 1.0  # the later record wins
    fig = plots.training_figure(tmp_path / "run")
    loss_ax, bleu_ax, lr_ax = fig.axes
    assert len(loss_ax.lines) == 3 and len(bleu_ax.lines) == 1 and len(lr_ax.lines) == 1
    np.testing.assert_allclose(bleu_ax.lines[0].get_ydata(), [100 / 30, 200 / 30, 10])
    paths = plots.save_figure(fig, tmp_path / "training.png")
    check_png(paths[0], (round(plots.TRAINING_SIZE[0] * plots.DPI), round(plots.TRAINING_SIZE[1] * plots.DPI)))
    with pytest.raises(FileNotFoundError, match="metrics.jsonl"):
        plots.training_figure(tmp_path / "nothing")


def test_training_figure_of_a_classifier_plots_accuracy_in_percent(tmp_path):
    """A classifier's run (ViT, SST-2) logs accuracy, not BLEU: the middle panel shows it, in %."""
    run = tmp_path / "run"
    run.mkdir()
    records = [{"kind": "train", "step": s, "loss": 1.0 / s, "nll": 0.9 / s, "lr": 1e-3} for s in (1, 50, 100)]
    records += [{"kind": "valid", "step": s, "valid_loss": 0.5, "accuracy": a} for s, a in ((50, 0.9), (100, 0.95))]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    _, metric_ax, _ = plots.training_figure(run).axes
    np.testing.assert_allclose(metric_ax.lines[0].get_ydata(), [90.0, 95.0])
    assert metric_ax.get_title() == "validation accuracy (%)"


def test_runs_compared_side_by_side_one_line_per_run(tmp_path):
    for name in ("adam", "adafactor"):
        write_metrics(tmp_path / name)
    fig = plots.comparison_figure([tmp_path / "adam", tmp_path / "adafactor"])
    nll_ax, valid_ax, bleu_ax = fig.axes
    assert [line.get_label() for line in bleu_ax.lines] == ["adam", "adafactor"]
    np.testing.assert_allclose(bleu_ax.lines[1].get_ydata(), [100 / 30, 200 / 30, 10])
    np.testing.assert_allclose(nll_ax.lines[0].get_ydata(), [8.5 - s / 50 for s in range(1, 301, 20)])
    assert bleu_ax.lines[0].get_color() == nll_ax.lines[0].get_color() != nll_ax.lines[1].get_color()
    from rosetta.cli import app

    result = CliRunner().invoke(app, ["plot", "training", str(tmp_path / "adam"), str(tmp_path / "adafactor"),
                                      "--out", str(tmp_path / "both.png")])
    assert result.exit_code == 0, result.output
    check_png(tmp_path / "both.png", (round(plots.TRAINING_SIZE[0] * plots.DPI),
                                      round(plots.TRAINING_SIZE[1] * plots.DPI)))


# ------------------------------------------------------------------------------------------ commands
def test_commands_write_the_files(tmp_path):
    runner = CliRunner()
    model = str(tiny_model_dir())
    out = tmp_path / "att"
    r = runner.invoke(cli_app, ["attention", "--model", model, "I am a student.", "--out", str(out),
                                "--kind", "cross", "--layer", "0", "--head", "1", "--format", "png"])
    assert r.exit_code == 0, r.output
    assert "我是学生。" in r.output and (out / "cross_layer0_head1.png").stat().st_size > 1000
    r = runner.invoke(cli_app, ["attention", "--model", model, "Hi.", "--out", str(out), "--layer", "9"])
    assert r.exit_code == 2 and "out of range" in r.output
    r = runner.invoke(cli_app, ["plot", "positional", "--d-model", "32", "--length", "40",
                                "--out", str(tmp_path / "pe.png")])
    assert r.exit_code == 0, r.output
    check_png(tmp_path / "pe.png")
    assert not (tmp_path / "pe.svg").exists()  # a file name chooses the format
    write_metrics(tmp_path / "run")
    r = runner.invoke(cli_app, ["plot", "training", str(tmp_path / "run"), "--out", str(tmp_path / "curves.svg")])
    assert r.exit_code == 0, r.output
    check_svg(tmp_path / "curves.svg")
    r = runner.invoke(cli_app, ["plot", "training", str(tmp_path / "missing")])
    assert r.exit_code == 2 and "metrics.jsonl" in r.output


# ------------------------------------------------------------------------------------------ CJK font
def test_a_cjk_font_is_found():
    path = find_cjk_font()
    assert path is not None, f"no CJK font found: {INSTALL_HINT}"
    assert use_cjk_font() is not None


def render_text(text, family=None):
    """Draw ``text`` big on a small figure; return (pixels, warnings raised while drawing)."""
    fig = plots.new_figure(3, 1)
    label = fig.text(0.05, 0.3, text, fontsize=28, **({"family": family} if family else {}))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fig.canvas.draw()
        pixels = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    return pixels, [str(w.message) for w in caught], label


def test_the_cjk_font_is_used_for_chinese_tokens(result):
    from matplotlib import font_manager

    path = find_cjk_font()
    name = use_cjk_font()
    with_cjk, caught, label = render_text(CJK)
    assert not [m for m in caught if "missing from font" in m], caught
    assert font_manager.findfont(label.get_fontproperties()) == str(path)
    if fonts.faces_supported():  # the chosen face of a collection, not just the file
        assert font_manager.findfont(label.get_fontproperties()).face_index == find_cjk_face().face_index
    # DejaVu Sans alone has no such glyphs: matplotlib warns and draws boxes, a different picture
    boxes, caught_boxes, _ = render_text(CJK, family="DejaVu Sans")
    assert any("missing from font" in m for m in caught_boxes)
    assert not np.array_equal(with_cjk, boxes)
    # and the attention figure's Chinese tick labels are drawn with it, with no missing glyph
    fig = plots.attention_grid(result, "cross")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fig.canvas.draw()
    assert not [str(w.message) for w in caught if "missing from font" in str(w.message)]
    labels = [t for ax in fig.axes for t in ax.get_yticklabels()]
    chinese = [t for t in labels if any("\u4e00" <= c <= "\u9fff" for c in t.get_text())]
    assert chinese, "the test model should produce Chinese target tokens"
    assert {str(font_manager.findfont(t.get_fontproperties())) for t in chinese} == {str(path)}
    if fonts.faces_supported():
        assert {font_manager.findfont(t.get_fontproperties()).face_index for t in chinese} == {
            find_cjk_face().face_index}
    assert matplotlib.rcParams["font.sans-serif"][0] == name


@pytest.fixture
def fresh_font_choice(monkeypatch):
    """find_cjk_face() chosen again under this test's environment (and again after it, under the real one)."""
    monkeypatch.delenv("ROSETTA_CJK_FONT", raising=False)
    find_cjk_face.cache_clear()
    yield
    monkeypatch.undo()
    find_cjk_face.cache_clear()


def test_the_packaged_font_is_chosen_and_draws_chinese(fresh_font_choice):
    """With no $ROSETTA_CJK_FONT, the font is the one pip installs (noto-cjk-sans-otc), not a system file, and its
    Simplified Chinese face draws Chinese: no glyph is missing, and 学 has the SC shape, not the JP one."""
    from matplotlib import font_manager

    packaged = Path(str(noto_cjk_sans_otc.FONT_PATH)).resolve()
    assert packaged.is_file() and fonts.packaged_font().resolve() == packaged
    assert fonts.covers(packaged) and fonts.candidate_files()[0] == packaged
    font = find_cjk_face()
    assert font.path == packaged == find_cjk_font()
    if fonts.faces_supported():  # matplotlib >= 3.11 reads a chosen face of a .ttc
        assert (font.face_index, font.name) == (2, "Noto Sans CJK SC")
    else:  # older: face 0, the Japanese one, which still has every Han glyph
        assert (font.face_index, font.name) == (0, "Noto Sans CJK JP")
    assert use_cjk_font() == font.name == matplotlib.rcParams["font.sans-serif"][0]

    pixels, caught, label = render_text(CJK)
    assert not [m for m in caught if "missing" in m.lower()], caught
    assert font_manager.findfont(label.get_fontproperties()) == str(packaged)
    assert (pixels < 128).any(axis=2).mean() > 0.01  # ink: four big characters, not nothing
    boxes, caught_boxes, _ = render_text(CJK, family="DejaVu Sans")
    assert any("Glyph" in m and "missing from font" in m for m in caught_boxes)  # the check can fail
    assert not np.array_equal(pixels, boxes)
    if fonts.faces_supported():
        assert font_manager.findfont(label.get_fontproperties()).face_index == 2
        # 学 is drawn differently in China and Japan: the default font gives the SC picture
        xue, _, _ = render_text("学")
        sc, _, _ = render_text("学", family="Noto Sans CJK SC")
        jp, _, _ = render_text("学", family="Noto Sans CJK JP")
        assert np.array_equal(xue, sc) and not np.array_equal(sc, jp)


def test_rosetta_cjk_font_comes_first_and_must_cover_cjk(fresh_font_choice, monkeypatch):
    from matplotlib import font_manager

    dejavu = Path(font_manager.findfont(font_manager.FontProperties(family="DejaVu Sans"))).resolve()
    monkeypatch.setenv("ROSETTA_CJK_FONT", str(dejavu))
    assert fonts.candidate_files()[0] == dejavu
    assert not fonts.covers(dejavu, "学")
    assert find_cjk_font() == fonts.packaged_font().resolve()  # DejaVu has no Han glyphs: the next one is used


def test_without_face_support_the_first_face_is_used(monkeypatch):
    """What an older matplotlib (< 3.11, no face_index) gets: face 0 of the collection."""
    path = fonts.packaged_font()
    if fonts.faces_supported():
        assert fonts.chinese_face(path) == 2
    monkeypatch.setattr(fonts, "faces_supported", lambda: False)
    assert fonts.chinese_face(path) == 0
