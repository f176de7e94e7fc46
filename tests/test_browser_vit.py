"""The page with an image model, in a real browser (Debian's chromium driven by Playwright, as test_browser.py):
draw a digit with the mouse, wait for the prediction, the top-5 bars and the attention overlay; check them
against the model's own answer for the very picture the page sent; pick a layer and head; upload a file;
clear. The page is screenshotted (into the test's tmp dir: a test never writes into the repository; the
README's docs/images/page-vit.png was taken with the trained MNIST model)."""

import base64
import json
import math
import os
import shutil
from pathlib import Path

import pytest
import torch
from tiny_translator import serve_in_thread

from rosetta.data.images import to_tensor
from rosetta.decode.loading import load_any
from rosetta.server import Settings, create_app

pytestmark = pytest.mark.browser
pytest.importorskip("sklearn")

CHROMIUM = os.environ.get("ROSETTA_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    pytest.skip(f"browser test skipped: no Chromium at {CHROMIUM} (see tests/test_browser.py)", allow_module_level=True)
from playwright import sync_api  # noqa: E402
from tiny_vit import digit_picture, tiny_vit_dir  # noqa: E402


@pytest.fixture(scope="module")
def loaded():
    return load_any(tiny_vit_dir())


@pytest.fixture(scope="module")
def page(loaded):
    app = create_app(loaded, Settings())
    with serve_in_thread(app) as url, sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1000, "height": 720}, device_scale_factor=1)
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url)
        yield page
        browser.close()
        app.state.batcher.close()
        assert not errors, f"JavaScript errors on the page: {errors}"


def model_answer(loaded, png: bytes):
    spec = loaded.info["image"]
    x = to_tensor(png, spec["image_size"], spec["channels"], spec["mean"], spec["std"], invert="auto")
    with torch.no_grad():
        return loaded.model(x[None])[0].softmax(-1)


def painted(page, selector):
    """(share of pixels with some opacity, distinct colours) of a canvas."""
    return page.evaluate("""(selector) => {
        const c = document.querySelector(selector), d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let opaque = 0; const colours = new Set();
        for (let i = 0; i < d.length; i += 4) {
            if (d[i + 3] > 0) opaque++;
            colours.add(d[i] << 24 | d[i + 1] << 16 | d[i + 2] << 8 | d[i + 3]);
        }
        return [opaque / (d.length / 4), colours.size]; }""", selector)


def bars(page):
    return page.evaluate("""() => [...document.querySelectorAll('.bar-row')].map((row) => [row.dataset.label,
        +row.dataset.p, row.querySelector('.bar-fill').getBoundingClientRect().width,
        row.querySelector('.bar-track').getBoundingClientRect().width])""")


def draw_zero(page):
    """One stroke with the mouse: an upright ellipse around the canvas's centre (280 × 280 pixels)."""
    box = page.locator("#draw").bounding_box()
    points = [(140 + 62 * math.sin(2 * math.pi * k / 24), 140 - 95 * math.cos(2 * math.pi * k / 24))
              for k in range(26)]
    page.mouse.move(box["x"] + points[0][0], box["y"] + points[0][1])
    page.mouse.down()
    for px, py in points[1:]:
        page.mouse.move(box["x"] + px, box["y"] + py, steps=2)
    page.mouse.up()


def test_draw_a_digit_and_see_the_prediction_and_where_it_looked(page, loaded, tmp_path):
    page.wait_for_function("document.getElementById('model-info').textContent.includes('ViT')")
    assert page.is_visible("#draw") and page.is_hidden("#text") and page.is_hidden("#result")
    assert page.locator("#vit-layer option").count() == 1 + 2 and page.locator("#vit-head option").count() == 1 + 4

    sent = []
    page.on("request", lambda r: sent.append(r.post_data) if r.url.endswith("/v1/classify") else None)
    draw_zero(page)
    page.wait_for_function("window.rosetta.vision.result !== null && "
                           "document.querySelectorAll('.bar-row').length === 5", timeout=20_000)
    page.wait_for_timeout(400)  # let a last debounced request (if any) settle
    page.wait_for_function("document.getElementById('vision-status').textContent.endsWith('ms')")
    assert 1 <= len(sent) <= 5  # debounced: a request per pause (one here), not one per mouse move (50)

    # the page shows what the model says about the picture it sent
    picture = base64.b64decode(json.loads(sent[-1])["image"].split(",", 1)[1])
    probs = model_answer(loaded, picture)
    label = page.inner_text("#prediction")
    assert label in [str(i) for i in range(10)] and label == str(int(probs.argmax()))
    shown = bars(page)
    assert [row[0] for row in shown] == [str(i) for i in probs.topk(5).indices.tolist()]
    assert [row[1] for row in shown] == pytest.approx(probs.topk(5).values.tolist(), abs=1e-5)
    assert 0.8 <= sum(row[1] for row in shown) <= 1 + 1e-5  # a trained model: the top 5 hold nearly everything
    for _, p, fill, track in shown:
        assert fill == pytest.approx(p * track, abs=1.5)  # each bar as long as its probability
    assert f"{100 * float(probs.max()):.1f}%" == page.inner_text("#probability")

    # the overlay: a coloured heat map over the drawing, and the model's input picture
    share, colours = painted(page, "#overlay")
    assert share > 0.2 and colours > 20
    assert painted(page, "#model-input")[1] > 5
    assert "rollout" in page.inner_text("#overlay-caption")
    screenshot = tmp_path / "page-vit.png"
    page.screenshot(path=str(screenshot))
    assert screenshot.stat().st_size > 10_000

    # another map: layer 1, head 2 — the overlay changes, the prediction does not
    before = page.evaluate("document.getElementById('overlay').toDataURL()")
    assert page.is_disabled("#vit-head")
    page.select_option("#vit-layer", "1")
    page.select_option("#vit-head", "2")
    assert "layer 1, head 2" in page.inner_text("#overlay-caption")
    assert page.evaluate("document.getElementById('overlay').toDataURL()") != before
    page.uncheck("#show-overlay")
    assert painted(page, "#overlay")[0] == 0
    page.check("#show-overlay")
    page.select_option("#vit-layer", "rollout")

    # clear: no prediction, no overlay
    page.click("#clear")
    assert page.inner_text("#prediction") == "–" and page.locator(".bar-row").count() == 0
    assert painted(page, "#overlay")[0] == 0


def test_upload_a_picture(page, loaded, tmp_path):
    picture, _ = digit_picture(3, scale=20)  # 160×160 PNG
    path = tmp_path / "digit.png"
    picture.save(path)
    before = page.evaluate("window.rosetta.vision.requests")
    page.set_input_files("#upload", str(path))
    page.wait_for_function(f"window.rosetta.vision.requests > {before}", timeout=20_000)
    probs = model_answer(loaded, path.read_bytes())
    assert page.inner_text("#prediction") == str(int(probs.argmax()))
    assert [row[1] for row in bars(page)] == pytest.approx(probs.topk(5).values.tolist(), abs=1e-5)
    assert painted(page, "#overlay")[0] > 0.5  # an upload's input covers the whole canvas
    page.set_input_files("#upload", {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"not a picture"})
    page.wait_for_function("document.getElementById('vision-status').textContent.startsWith('error')")
    assert "not an image" in page.inner_text("#vision-status")
