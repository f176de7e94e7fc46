"""The attention explorer page in a real browser: Debian's chromium, driven by Playwright.

`make test` installs chromium first when it is missing and it can (root, apt-get: tests/browser_setup.sh);
otherwise this module is skipped and pytest's summary says why and what to do. $ROSETTA_CHROMIUM picks another
Chromium executable. Playwright's own browser download is never used.

A real uvicorn server (loopback, free port) serves the tiny English→Chinese model; the test types a sentence,
waits for the translation and the heatmap, hovers tokens and a heatmap cell, and checks what the page shows
against the model's own numbers. A screenshot is saved in the test's tmp folder (printed with -s).
"""

import os
import shutil
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from tiny_translator import serve_in_thread

from rosetta.server import Settings, create_app

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("ROSETTA_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


def why_no_chromium() -> str:
    """The skip reason: what is missing, why `make test` (tests/browser_setup.sh) did not install it, what to do."""
    where = f"$ROSETTA_CHROMIUM={CHROMIUM} does not exist" if os.environ.get("ROSETTA_CHROMIUM") else \
        "Debian's chromium is not installed"
    if getattr(os, "geteuid", lambda: -1)() != 0:
        why = "not root, so `make test` could not install it; run `sudo apt-get install chromium`"
    elif not shutil.which("apt-get"):
        why = "no apt-get here; install Chromium and set $ROSETTA_CHROMIUM to its executable"
    else:
        why = "`make test` (tests/browser_setup.sh) installs it as root with apt-get; run `make test`, or " \
              "`apt-get install chromium` and read its error"
    return f"browser test skipped: {where}: {why}"


if not Path(CHROMIUM).exists():
    pytest.skip(why_no_chromium(), allow_module_level=True)
from playwright import sync_api  # noqa: E402 — a test dependency (pip install -e '.[test]'); only the browser may be absent

TEXT = "I like to read books."


@pytest.fixture(scope="module")
def browser():
    """One chromium for the module (Playwright's sync API allows one running instance per thread)."""
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield browser
        browser.close()


@contextmanager
def open_page(browser, translator):
    """A page on a real server of ``translator``; fails if the page's JavaScript threw."""
    with serve_in_thread(create_app(translator, Settings())) as url:
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url)
        yield page
        page.close()
        assert not errors, f"JavaScript errors on the page: {errors}"


@pytest.fixture(scope="module")
def page(browser, translator):
    with open_page(browser, translator) as page:
        yield page


def chip_weights(page, side):
    return [float(w) if w else None for w in page.locator(f'.token[data-side="{side}"] .w').all_inner_texts()]


def test_translate_explore_and_hover(page, translator, tmp_path):
    expected = translator.translate([TEXT])[0]
    attention = translator.attention(TEXT)
    page.wait_for_function("document.getElementById('model-info').textContent.includes('parameters')")
    assert "en → zh" in page.inner_text("#model-info")

    page.fill("#text", TEXT)
    page.press("#text", "Enter")
    page.wait_for_function(f"document.getElementById('translation').textContent === {expected!r}", timeout=20_000)
    assert any("\u4e00" <= c <= "\u9fff" for c in page.inner_text("#translation"))  # Chinese output
    heatmap = page.locator("canvas.heatmap")
    heatmap.first.wait_for()
    assert heatmap.count() == 1  # default view: last layer, mean of heads, one map
    box = heatmap.first.bounding_box()
    assert box["width"] > 100 and box["height"] > 100
    painted = page.evaluate("""() => {
        const c = document.querySelector('canvas.heatmap');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data, colours = new Set();
        for (let i = 0; i < d.length; i += 4) colours.add(d[i] << 16 | d[i + 1] << 8 | d[i + 2]);
        return colours.size; }""")
    assert painted > 10  # cells in many shades, not an empty canvas

    # tokens: rows are the target tokens being produced, columns the source tokens (cross-attention)
    produced = attention["target_tokens"][1:] + ["</s>"]
    assert page.locator('.token[data-side="query"]').count() == len(produced)
    assert page.locator('.token[data-side="key"]').count() == len(attention["source_tokens"])
    assert chip_weights(page, "key") == [None] * len(attention["source_tokens"])

    # hover a target token: the source tokens show the weights of its row (last layer, mean of heads)
    before = heatmap.first.evaluate("c => c.toDataURL()")
    page.hover('.token[data-side="query"][data-index="1"]')
    page.wait_for_function("document.getElementById('readout').textContent.includes('attends to')")
    weights = chip_weights(page, "key")
    row = torch.tensor(attention["cross"][-1]).mean(0)[1]
    assert weights == pytest.approx(row.tolist(), abs=0.006)
    assert sum(weights) == pytest.approx(1.0, abs=0.05)
    assert produced[1] in page.inner_text("#readout")
    assert page.locator('.token.active').count() == 1
    assert heatmap.first.evaluate("c => c.toDataURL()") != before  # the hovered row is outlined
    page.screenshot(path=str(tmp_path / "page.png"), full_page=True)

    # hover a source token: the target tokens show how much each attends to it
    page.hover('.token[data-side="key"][data-index="0"]')
    page.wait_for_function("document.getElementById('readout').textContent.includes('is attended by')")
    column = torch.tensor(attention["cross"][-1]).mean(0)[:, 0]
    assert chip_weights(page, "query") == pytest.approx(column.tolist(), abs=0.006)

    # all heads at once, then another kind and one head; hovering a cell names both tokens
    page.select_option("#head", "all")
    assert heatmap.count() == translator.config.n_heads
    page.select_option("#kind", "encoder")
    page.select_option("#layer", "0")
    page.select_option("#head", "2")
    assert heatmap.count() == 1
    assert page.locator('.token[data-side="query"]').all_inner_texts()[0].startswith(attention["source_tokens"][0])
    g = heatmap.first.evaluate("c => c.geometry")
    box = heatmap.first.bounding_box()
    page.mouse.move(box["x"] + g["left"] + 2.5 * g["cell"], box["y"] + g["top"] + 0.5 * g["cell"])
    page.wait_for_function("document.getElementById('readout').textContent.includes('→')")
    value = attention["encoder"][0][2][0][2]
    assert f"{value:.3f}" in page.inner_text("#readout")
    page.screenshot(path=str(tmp_path / "page-encoder.png"))
    assert (tmp_path / "page.png").stat().st_size > 10_000
    print(f"screenshots in {tmp_path}")


def test_errors_are_shown_not_thrown(page):
    page.fill("#text", "x" * 400)  # over the server's attention limit
    page.click("#translate")
    page.wait_for_function("document.getElementById('status').textContent.startsWith('error')")
    assert "at most 300 characters" in page.inner_text("#status")


def test_a_copy_model_shows_what_each_output_token_copied(browser, tmp_path_factory):
    """A pointer-generator (copy_attention) served: the page shades each output token by 1 − p_gen, names the
    source token it copied from most, and hovering it shows its cross-attention row."""
    from tiny_translator import build_tiny_model

    import rosetta

    translator = rosetta.load(build_tiny_model(tmp_path_factory.mktemp("copy") / "model", steps=40, copy=True))
    attention = translator.attention(TEXT)
    with open_page(browser, translator) as page:
        page.fill("#text", TEXT)
        page.click("#translate")
        page.wait_for_selector("#copy-tokens .token")
        chips = page.locator("#copy-tokens .token")
        copied = [float(chip.get_attribute("data-copied")) for chip in chips.all()]
        assert copied == pytest.approx([1 - p for p in attention["p_gen"]], abs=1e-3)
        source = attention["source_tokens"][attention["copy_from"][0]]
        assert f"copied, most from “{source}”" in chips.first.get_attribute("title")
        chips.first.hover()
        page.wait_for_function("document.querySelector('.token[data-side=\"query\"].active') !== null")
        row = torch.tensor(attention["cross"][-1]).mean(0)[0]
        assert chip_weights(page, "key") == pytest.approx(row.tolist(), abs=0.006)
