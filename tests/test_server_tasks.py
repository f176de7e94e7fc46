"""``rosetta serve`` for every task but translation and pictures (test_server.py, test_vit_server.py): a text
classifier (/v1/classify, /v1/embed, /v1/attention), a sentence encoder (all-MiniLM-L6-v2: /v1/embed), a language
model (/v1/generate, streamed), a summariser (/v1/summarise, /v1/attention); /v1/model's task and endpoints;
every validation error; the command building the right app.

Apps run in-process (httpx's ASGITransport). Answers are compared with independent computations: the model
called directly one text at a time (float64 for embeddings), Hugging Face's BertModel for MiniLM, and the
sampling generator with the same seed.
"""

import asyncio
import copy
import dataclasses
import json

import httpx
import pytest
import torch
from tiny_models import CONTEXTS, LABELS, QUESTIONS, tiny_classifier_dir, tiny_lm_dir, tiny_qa_dir, tiny_summariser_dir

from rosetta.data.tokenizer import BOS_ID, EOS_ID
from rosetta.decode.loading import load_any
from rosetta.decode.sampling import stream_text
from rosetta.decode.text_classifier import TextClassifier
from rosetta.server import Settings, create_app

SETTINGS = Settings(max_texts=8, max_chars=80, max_attention_chars=60, max_document_chars=400,
                    max_document_attention_chars=200, max_new_tokens=50)


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def send(app, requests):
    """[(method, path, json)] sent concurrently in-process; the responses in order."""
    async def main():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://rosetta", timeout=60) as client:
            return await asyncio.gather(*[client.request(m, p, json=j) for m, p, j in requests])

    return asyncio.run(asyncio.wait_for(main(), 120))


def post(app, path, body):
    return send(app, [("POST", path, body)])[0]


@pytest.fixture(scope="module")
def classifier():
    return TextClassifier.load(tiny_classifier_dir())


@pytest.fixture(scope="module")
def classifier_app(classifier):
    app = create_app(classifier.loaded, SETTINGS)
    yield app
    app.state.batcher.close()


@pytest.fixture(scope="module")
def lm():
    return load_any(tiny_lm_dir())


@pytest.fixture(scope="module")
def lm_app(lm):
    app = create_app(lm, SETTINGS)
    yield app
    app.state.batcher.close()


@pytest.fixture(scope="module")
def summariser():
    import rosetta

    return rosetta.load(tiny_summariser_dir())


@pytest.fixture(scope="module")
def summariser_app(summariser):
    app = create_app(summariser, SETTINGS)
    yield app
    app.state.batcher.close()


def embedding64(loaded, text):
    """Mean of the float64 encoder's output over the text's tokens (<s> ids </s>), unit length."""
    model = copy.deepcopy(loaded.model).double()
    ids = torch.tensor([[BOS_ID, *loaded.tokenizer.encode(text)[:62], EOS_ID]])
    with torch.no_grad():
        return torch.nn.functional.normalize(model(ids)[0].mean(0), dim=-1)


# ------------------------------------------------------------------------------------------ text classifier
def test_classifier_model_info_says_task_and_endpoints(classifier_app):
    info = send(classifier_app, [("GET", "/v1/model", None)])[0].json()
    assert (info["family"], info["task"], info["labels"]) == ("encoder", "classification", LABELS)
    assert info["endpoints"] == ["GET /v1/health", "GET /v1/model", "POST /v1/attention", "POST /v1/classify",
                                 "POST /v1/embed"]
    assert info["limits"]["max_texts"] == 8 and "head_importance" not in info


def test_classify_equals_the_classifier_on_each_text_alone(classifier_app, classifier):
    texts = ["a wonderful, moving film", "", "I hated the ending", "the story is set in Paris"]
    r = post(classifier_app, "/v1/classify", {"texts": texts})
    assert r.status_code == 200
    predictions = r.json()["predictions"]
    for text, got in zip(texts, predictions):
        alone = classifier.classify([text])[0]
        assert got["label"] == alone.label and set(got["probabilities"]) == set(LABELS)
        assert got["probabilities"] == pytest.approx(alone.probabilities, abs=1e-6)
        assert got["probability"] == pytest.approx(max(got["probabilities"].values()), abs=1e-9)
    assert [p["label"] for p in predictions[::2]] == ["positive", "negative"]


def test_embed_equals_a_float64_mean_of_each_text_alone(classifier_app, classifier):
    texts = ["a wonderful film", "the worst film I have seen", "x"]
    r = post(classifier_app, "/v1/embed", {"texts": texts})
    assert r.status_code == 200 and r.json()["dim"] == 32
    got = torch.tensor(r.json()["embeddings"], dtype=torch.float64)
    expected = torch.stack([embedding64(classifier.loaded, t) for t in texts])
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    raw = post(classifier_app, "/v1/embed", {"texts": texts, "normalize": False}).json()["embeddings"]
    assert torch.tensor(raw).norm(dim=-1).min() > 1.01 or torch.tensor(raw).norm(dim=-1).max() < 0.99


def test_classifier_attention_gives_tokens_prediction_and_maps(classifier_app, classifier):
    r = post(classifier_app, "/v1/attention", {"text": "a wonderful film"})
    assert r.status_code == 200
    body, direct = r.json(), classifier.attention("a wonderful film")
    assert body["tokens"] == direct["tokens"] and body["label"] == direct["label"]
    torch.testing.assert_close(torch.tensor(body["encoder"]), torch.tensor(direct["encoder"]), atol=1e-5, rtol=0)


def test_head_importance_from_config_json_is_passed_to_the_page(classifier):
    table = [[0.5, 1.0], [0.25, 0.75]]
    loaded = dataclasses.replace(classifier.loaded, info={**classifier.loaded.info, "head_importance": table})
    app = create_app(loaded, SETTINGS)
    try:
        assert send(app, [("GET", "/v1/model", None)])[0].json()["head_importance"] == table
    finally:
        app.state.batcher.close()


@pytest.mark.parametrize("path, body, message", [
    ("/v1/classify", {}, "texts: Field required"),
    ("/v1/classify", {"texts": []}, "texts: List should have at least 1 item"),
    ("/v1/classify", {"texts": "a film"}, "texts: Input should be a valid list"),
    ("/v1/classify", {"texts": [3]}, "texts.0: Input should be a valid string"),
    ("/v1/classify", {"texts": ["a"] * 9}, "texts: List should have at most 8 items"),
    ("/v1/classify", {"texts": ["a" * 81]}, "texts.0: String should have at most 80 characters"),
    ("/v1/classify", {"texts": ["a"], "top_k": 2}, "top_k: Extra inputs are not permitted"),
    ("/v1/embed", {"texts": ["a"], "normalize": "yes"}, "normalize: Input should be a valid boolean"),
    ("/v1/embed", {"texts": None}, "texts: Input should be a valid list"),
    ("/v1/attention", {"text": "   "}, "the text is blank"),
    ("/v1/attention", {"text": "a" * 61}, "text: String should have at most 60 characters"),
    ("/v1/attention", {"texts": ["a"]}, "text: Field required"),
])
def test_bad_classifier_requests_get_422_with_one_readable_line(classifier_app, path, body, message):
    r = post(classifier_app, path, body)
    assert r.status_code == 422 and message in r.json()["error"], r.json()
    assert "\n" not in r.json()["error"]


def test_malformed_json_and_unknown_paths(classifier_app):
    async def main():
        transport = httpx.ASGITransport(app=classifier_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://rosetta") as client:
            as_json = {"content-type": "application/json"}
            return (await client.post("/v1/classify", content=b"{not json", headers=as_json),
                    await client.post("/v1/classify", content=b""),
                    await client.post("/v1/translate", json={"texts": ["a"]}),
                    await client.post("/v1/generate", json={"prompt": "a"}))

    bad, empty, translate, generate = asyncio.run(main())
    assert bad.status_code == 422 and "not valid JSON" in bad.json()["error"]
    assert empty.status_code == 422 and "empty body" in empty.json()["error"]
    assert translate.status_code == 404 and generate.status_code == 404
    assert post(classifier_app, "/v1/classify", {"texts": ["fine"]}).status_code == 200  # still serving


# ------------------------------------------------------------------------------------------ sentence encoder
def test_minilm_embed_equals_hugging_face_mean_pooling():
    transformers = pytest.importorskip("transformers")
    from rosetta.models.pretrained import minilm_path

    loaded = load_any("all-MiniLM-L6-v2")
    app = create_app(loaded, SETTINGS)
    texts = ["A man is playing a guitar.", "Someone plays an instrument.", "The stock market fell."]
    try:
        info = send(app, [("GET", "/v1/model", None)])[0].json()
        assert (info["family"], info["task"]) == ("encoder", "embedding")
        assert info["endpoints"] == ["GET /v1/health", "GET /v1/model", "POST /v1/embed"]
        r = post(app, "/v1/embed", {"texts": texts})
        assert r.status_code == 200 and r.json()["dim"] == 384
        assert post(app, "/v1/classify", {"texts": texts}).status_code == 404
    finally:
        app.state.batcher.close()
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(minilm_path()), local_files_only=True)
    hf = transformers.BertModel.from_pretrained(str(minilm_path()), local_files_only=True).eval()
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = hf(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    expected = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
    torch.testing.assert_close(torch.tensor(r.json()["embeddings"]), expected, atol=1e-5, rtol=0)


# ------------------------------------------------------------------------------------------ language model
def ndjson(response):
    return [json.loads(line) for line in response.text.splitlines()]


def direct(lm, prompt, n, temperature, seed, top_k=None, top_p=None):
    generator = torch.Generator().manual_seed(seed)
    return list(stream_text(lm.model, lm.tokenizer, prompt, n, temperature, top_k, top_p, generator=generator))


def test_generate_streams_one_line_per_token_then_done(lm_app, lm):
    info = send(lm_app, [("GET", "/v1/model", None)])[0].json()
    assert (info["family"], info["task"]) == ("lm", "lm")
    assert info["endpoints"] == ["GET /v1/health", "GET /v1/model", "POST /v1/generate"]
    r = post(lm_app, "/v1/generate", {"prompt": "the quick", "max_new_tokens": 20, "temperature": 0.9, "seed": 7})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
    lines = ndjson(r)
    expected = direct(lm, "the quick", 20, 0.9, 7)
    assert [(line["id"], line["text"]) for line in lines[:-1]] == expected
    assert lines[-1] == {"done": True, "text": lm.tokenizer.decode([i for i, _ in expected]), "tokens": 20,
                         "stop": "length"}
    assert len(set(line["text"] for line in lines[:-1])) > 3  # not one character over and over


def test_generate_without_streaming_and_greedy(lm_app, lm):
    r = post(lm_app, "/v1/generate", {"prompt": "the dog", "max_new_tokens": 15, "temperature": 0.0,
                                      "stream": False})
    assert r.status_code == 200
    expected = direct(lm, "the dog", 15, 0.0, 0)
    assert r.json() == {"text": "".join(t for _, t in expected), "tokens": 15, "stop": "length"}
    seeded = {"prompt": "", "max_new_tokens": 10, "top_k": 5, "top_p": 0.9, "seed": 3, "stream": False}
    a, b = send(lm_app, [("POST", "/v1/generate", seeded)] * 2)
    assert a.json() == b.json()  # the same seed, the same text
    assert a.json()["text"] == lm.tokenizer.decode([i for i, _ in direct(lm, "", 10, 0.8, 3, 5, 0.9)])


@pytest.mark.parametrize("body, message", [
    ({}, "prompt: Field required"),
    ({"prompt": 5}, "prompt: Input should be a valid string"),
    ({"prompt": "a" * 81}, "prompt: String should have at most 80 characters"),
    ({"prompt": "a", "max_new_tokens": 51}, "max_new_tokens: Input should be less than or equal to 50"),
    ({"prompt": "a", "max_new_tokens": "5"}, "max_new_tokens: Input should be a valid integer"),
    ({"prompt": "a", "temperature": -1}, "temperature: Input should be greater than or equal to 0"),
    ({"prompt": "a", "top_p": 0}, "top_p: Input should be greater than 0"),
    ({"prompt": "a", "top_k": 0}, "top_k: Input should be greater than or equal to 1"),
    ({"prompt": "a", "stream": "no"}, "stream: Input should be a valid boolean"),
    ({"prompt": "a", "beam": 2}, "beam: Extra inputs are not permitted"),
])
def test_bad_generate_requests_get_422(lm_app, body, message):
    r = post(lm_app, "/v1/generate", body)
    assert r.status_code == 422 and message in r.json()["error"], r.json()


# ------------------------------------------------------------------------------------------ summariser
def test_summariser_serves_summarise_and_attention(summariser_app, summariser):
    info = send(summariser_app, [("GET", "/v1/model", None)])[0].json()
    assert (info["family"], info["task"]) == ("translation", "summarisation")
    assert info["endpoints"] == ["GET /v1/health", "GET /v1/model", "POST /v1/attention", "POST /v1/summarise"]
    texts = ["I am a student.", "She likes green tea.", ""]
    r = post(summariser_app, "/v1/summarise", {"texts": texts})
    assert r.status_code == 200
    assert r.json() == {"summaries": [summariser.translate([t])[0] for t in texts]}
    document = "The cat is sleeping. " * 15  # longer than max_chars (80), within max_document_chars (400)
    assert post(summariser_app, "/v1/summarise", {"texts": [document]}).status_code == 200
    r = post(summariser_app, "/v1/summarise", {"texts": ["a" * 401]})
    assert r.status_code == 422 and "at most 400 characters" in r.json()["error"]
    r = post(summariser_app, "/v1/attention", {"text": "It is raining today.", "kinds": ["cross"]})
    body, direct_maps = r.json(), summariser.attention("It is raining today.")
    assert r.status_code == 200 and "encoder" not in body and "decoder" not in body
    assert body["translation"] == direct_maps["translation"]
    torch.testing.assert_close(torch.tensor(body["cross"]), torch.tensor(direct_maps["cross"]), atol=1e-5, rtol=0)
    r = post(summariser_app, "/v1/attention", {"text": "a", "kinds": ["self"]})
    assert r.status_code == 422 and "kinds.0" in r.json()["error"]
    assert post(summariser_app, "/v1/translate", {"texts": ["a"]}).status_code == 404


# ------------------------------------------------------------------------------------------ question answering
@pytest.fixture(scope="module")
def qa_app():
    app = create_app(load_any(tiny_qa_dir()), SETTINGS)
    yield app
    app.state.batcher.close()


def test_answer_equals_the_question_answerer_and_points_into_the_context(qa_app):
    from rosetta.decode.qa import QuestionAnswerer

    answerer = QuestionAnswerer.load(tiny_qa_dir())
    info = send(qa_app, [("GET", "/v1/model", None)])[0].json()
    assert (info["family"], info["task"]) == ("encoder", "qa")
    assert info["endpoints"] == ["GET /v1/health", "GET /v1/model", "POST /v1/answer", "POST /v1/attention",
                                 "POST /v1/embed"]
    pairs = [(QUESTIONS[0], CONTEXTS[0]), (QUESTIONS[1], CONTEXTS[1]), (QUESTIONS[2], CONTEXTS[0] * 3)]
    responses = send(qa_app, [("POST", "/v1/answer", {"question": q, "context": c}) for q, c in pairs])
    for (q, c), r in zip(pairs, responses):
        assert r.status_code == 200
        expected = answerer.answer([q], [c])[0]
        body = r.json()
        assert (body["answer"], body["start"], body["end"]) == (expected.text, expected.start, expected.end)
        assert body["score"] == pytest.approx(expected.score, abs=1e-6)
        assert c[body["start"]:body["end"]] == body["answer"] != ""
    short = post(qa_app, "/v1/answer", {"question": QUESTIONS[0], "context": CONTEXTS[0], "max_answer_len": 1})
    assert len(answerer.tokenizer.encode(short.json()["answer"])) <= 2  # one token (a word start may add one)


def test_qa_attention_is_question_rows_by_context_columns(qa_app):
    from rosetta.decode.qa import QuestionAnswerer

    answerer = QuestionAnswerer.load(tiny_qa_dir())
    context = CONTEXTS[0] * 3  # several windows
    r = post(qa_app, "/v1/attention", {"question": QUESTIONS[0], "context": context, "window": 1})
    assert r.status_code == 200
    body, direct_maps = r.json(), answerer.attention(QUESTIONS[0], context, 1)
    (q0, q1), (c0, c1) = body["question"], body["context"]
    assert body["windows"] == direct_maps["windows"] > 1 and body["tokens"] == direct_maps["tokens"]
    maps = torch.tensor(body["question_to_context"])  # (L, H, Q, C)
    expected = torch.stack(direct_maps["attention"])[:, :, q0:q1, c0:c1]
    torch.testing.assert_close(maps, expected, atol=1e-5, rtol=0)
    assert float(maps.sum(-1).max()) <= 1 + 1e-4
    r = post(qa_app, "/v1/attention", {"question": QUESTIONS[0], "context": context, "window": 9})
    assert r.status_code == 422 and "there is no window 9" in r.json()["error"]


@pytest.mark.parametrize("body, message", [
    ({"question": "Who?"}, "context: Field required"),
    ({"question": " ", "context": "text"}, "question: Value error, the text is blank"),
    ({"question": "Who?", "context": "x" * 401}, "context: String should have at most 400 characters"),
    ({"question": "Who?", "context": "text", "max_answer_len": 0}, "max_answer_len: Input should be greater"),
    ({"question": ["Who?"], "context": "text"}, "question: Input should be a valid string"),
    ({"question": "Who?", "context": "text", "top_k": 3}, "top_k: Extra inputs are not permitted"),
])
def test_bad_answer_requests_get_422(qa_app, body, message):
    r = post(qa_app, "/v1/answer", body)
    assert r.status_code == 422 and message in r.json()["error"], r.json()


# ------------------------------------------------------------------------------------------ rosetta serve
@pytest.mark.parametrize("directory, family, task", [
    (tiny_classifier_dir, "encoder", "classification"),
    (tiny_lm_dir, "lm", "lm"),
    (tiny_summariser_dir, "translation", "summarisation"),
    (tiny_qa_dir, "encoder", "qa"),
])
def test_rosetta_serve_builds_the_app_for_the_task(monkeypatch, directory, family, task):
    import uvicorn
    from typer.testing import CliRunner

    from rosetta.cli import app as cli_app

    got = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: got.update(app=app, **kwargs))
    r = CliRunner().invoke(cli_app, ["serve", "--model", str(directory()), "--max-texts", "3"])
    assert r.exit_code == 0, r.output
    try:
        info = send(got["app"], [("GET", "/v1/model", None)])[0].json()
        assert (info["family"], info["task"]) == (family, task)
    finally:
        got["app"].state.batcher.close()
    if family != "translation":
        r = CliRunner().invoke(cli_app, ["serve", "--model", str(directory()), "--int8"])
        assert r.exit_code == 2 and "--int8" in r.stderr and "for translation models" in r.stderr
