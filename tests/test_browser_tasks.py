"""The page for every text task, in a real browser (Debian's chromium driven by Playwright, as test_browser.py):
a text classifier (label bars, [CLS] → token attention, head importance), a language model (streamed text),
a summariser (summary and cross-attention) and a question answerer (answer highlighted in the context,
question → context heatmap). What the page shows is checked against the model's own answers."""

import dataclasses
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from tiny_models import CONTEXTS, LABELS, QUESTIONS, tiny_classifier_dir, tiny_lm_dir, tiny_qa_dir, tiny_summariser_dir
from tiny_translator import serve_in_thread

from rosetta.decode.loading import load_any
from rosetta.server import Settings, create_app

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("ROSETTA_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    pytest.skip(f"browser test skipped: no Chromium at {CHROMIUM} (see tests/test_browser.py)", allow_module_level=True)
from playwright import sync_api  # noqa: E402


@pytest.fixture(scope="module")
def browser():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield browser
        browser.close()
    torch.set_num_threads(before)


@contextmanager
def page_for(browser, model):
    """The page served for ``model`` by a real uvicorn server, once its mode is set up."""
    app = create_app(model, Settings())
    try:
        with serve_in_thread(app) as url:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(url)
            page.wait_for_function("window.rosetta.model !== null")
            yield page
            page.close()
            assert not errors, f"JavaScript errors on the page: {errors}"
    finally:
        app.state.batcher.close()


def test_classifier_page_shows_label_bars_attention_and_head_importance(browser):
    from rosetta.decode.text_classifier import TextClassifier

    classifier = TextClassifier.load(tiny_classifier_dir())
    importance = [[0.11, 0.22], [0.33, 0.44]]
    loaded = dataclasses.replace(classifier.loaded, info={**classifier.loaded.info, "head_importance": importance})
    text = "a wonderful, moving film"
    expected = classifier.attention(text)
    with page_for(browser, loaded) as page:
        assert page.is_visible("#classifier") and not page.is_visible("#form") and not page.is_visible("#vision")
        assert "text classifier" in page.inner_text("#model-info")
        page.fill("#cls-text", text)
        page.press("#cls-text", "Enter")
        page.wait_for_function("document.getElementById('cls-label').textContent !== '–'", timeout=20_000)
        assert page.inner_text("#cls-label") == expected["label"] == "positive"
        bars = page.locator("#cls-bars .bar-row")
        assert bars.count() == len(LABELS)
        shown = {bars.nth(i).get_attribute("data-label"): float(bars.nth(i).get_attribute("data-p"))
                 for i in range(bars.count())}
        assert shown == pytest.approx(expected["probabilities"], abs=1e-5)
        # the [CLS] row of the last layer, mean of heads, under the tokens
        chips = page.locator("#cls-tokens .token")
        assert chips.count() == len(expected["tokens"])
        row = torch.tensor(expected["encoder"][-1]).mean(0)[0]
        weights = [float(w) for w in page.locator("#cls-tokens .token .w").all_inner_texts()]
        assert weights == pytest.approx(row.tolist(), abs=0.006)
        # one head of layer 0: its weights and its importance from config.json
        page.select_option("#cls-layer", "0")
        assert "importance 0.22" in page.locator("#cls-head option[value='1']").inner_text()
        page.select_option("#cls-head", "1")
        assert page.inner_text("#cls-importance") == "importance 0.22"
        weights = [float(w) for w in page.locator("#cls-tokens .token .w").all_inner_texts()]
        assert weights == pytest.approx(expected["encoder"][0][1][0], abs=0.006)


def test_language_model_page_streams_the_continuation(browser):
    from rosetta.decode.sampling import stream_text

    lm = load_any(tiny_lm_dir())
    generator = torch.Generator().manual_seed(5)
    expected = "".join(t for _, t in stream_text(lm.model, lm.tokenizer, "the dog", 30, 0.8, generator=generator))
    with page_for(browser, lm) as page:
        assert page.is_visible("#lm") and "language model" in page.inner_text("#model-info")
        page.fill("#lm-prompt", "the dog")
        page.fill("#lm-max", "30")
        page.fill("#lm-seed", "5")
        page.click("#lm-go")
        page.wait_for_function("window.rosetta.lm.done !== null", timeout=20_000)
        assert page.inner_text("#lm-generated") == expected
        assert page.inner_text("#lm-echo") == "the dog"
        assert page.evaluate("window.rosetta.lm.tokens") == 30  # one line per token reached the page
        assert "30 tokens" in page.inner_text("#lm-status")


def test_summariser_page_shows_the_summary_and_cross_attention(browser):
    import rosetta

    summariser = rosetta.load(tiny_summariser_dir())
    text = "The weather is nice today."
    expected = summariser.attention(text)
    with page_for(browser, summariser) as page:
        assert "summariser" in page.inner_text("#model-info")
        assert page.inner_text("#translate") == "Summarise" and page.inner_text("#result-label").lower() == "summary"
        page.fill("#text", text)
        page.press("#text", "Enter")
        page.wait_for_function(f"document.getElementById('translation').textContent === {expected['translation']!r}",
                               timeout=20_000)
        page.locator("canvas.heatmap").first.wait_for()
        assert page.evaluate("Object.keys(window.rosetta.result).filter((k) => "
                             "['encoder', 'decoder', 'cross'].includes(k)).sort()") == ["cross", "decoder"]
        assert page.locator("#kind option[value='encoder']").get_attribute("hidden") is not None
        cross = page.evaluate("window.rosetta.result.cross")
        torch.testing.assert_close(torch.tensor(cross), torch.tensor(expected["cross"]), atol=1e-5, rtol=0)


def test_qa_page_highlights_the_answer_and_draws_question_to_context(browser):
    from rosetta.decode.qa import QuestionAnswerer

    answerer = QuestionAnswerer.load(tiny_qa_dir())
    context, question = CONTEXTS[0], QUESTIONS[0]
    expected = answerer.answer([question], [context])[0]
    with page_for(browser, load_any(tiny_qa_dir())) as page:
        assert page.is_visible("#qa") and "question answering" in page.inner_text("#model-info")
        page.fill("#qa-context", context)
        page.fill("#qa-question", question)
        page.click("#qa-go")
        page.wait_for_selector("#qa-maps canvas.qa-heatmap", timeout=20_000)
        assert page.inner_text("#qa-answer") == expected.text
        assert page.inner_text("#qa-mark") == context[expected.start:expected.end]
        assert page.inner_text("#qa-highlight").replace("\n", "") == context
        attention = answerer.attention(question, context)
        (q0, q1), (c0, c1) = attention["question"], attention["context"]
        shown = torch.tensor(page.evaluate("window.rosetta.qa.attention.question_to_context"))
        torch.testing.assert_close(shown, torch.stack(attention["attention"])[:, :, q0:q1, c0:c1], atol=1e-5, rtol=0)
        box = page.locator("canvas.qa-heatmap").bounding_box()
        assert box["width"] > 100 and box["height"] > 20
        page.select_option("#qa-head", "0")
        assert "head 0" in page.inner_text("#qa-maps .title")
