"""The HTTP server: every endpoint, every validation error, errors inside the model, and concurrent load.

The app runs in-process (httpx's ASGITransport, no port) except in one test that goes through a real uvicorn
on a loopback port. Answers are compared with the Translator called directly, one sentence at a time.
"""

import asyncio
import threading
import time

import httpx
import pytest
import torch
from tiny_translator import SENTENCES, serve_in_thread, tiny_model_dir

from rosetta.server import Settings, create_app
from rosetta.server.batcher import Batcher

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


@pytest.fixture(scope="module")
def single(translator):
    """Each test sentence translated alone, directly: what every server answer must equal."""
    return {(s, beam): translator.translate([s], beam=beam)[0] for s in SENTENCES for beam in (None, 2)}


def call(app, requests, transport_kwargs=None):
    """Send [(method, path, json)] concurrently to ``app`` in-process; return the responses in order."""

    async def main():
        transport = httpx.ASGITransport(app=app, **(transport_kwargs or {}))
        async with httpx.AsyncClient(transport=transport, base_url="http://rosetta", timeout=60) as client:
            return await asyncio.gather(*[client.request(m, p, json=j) for m, p, j in requests])

    return asyncio.run(asyncio.wait_for(main(), 120))


def post(app, path, body):
    return call(app, [("POST", path, body)])[0]


def get(app, path):
    return call(app, [("GET", path, None)])[0]


@pytest.fixture(scope="module")
def app(translator):
    app = create_app(translator, Settings(max_texts=8, max_chars=60, max_attention_chars=50, max_beam=4))
    yield app
    app.state.batcher.close()


@pytest.fixture
def make_app(translator):
    """create_app for one test; the model threads are stopped afterwards (ASGITransport runs no lifespan)."""
    made = []

    def make(settings, inner=None):
        made.append(create_app(inner or translator, settings))
        return made[-1]

    yield make
    for app in made:
        app.state.batcher.close()


# ------------------------------------------------------------------------------------------ endpoints
def test_translate_keeps_order_and_equals_the_translator(app, translator, single):
    texts = SENTENCES[:8]
    r = post(app, "/v1/translate", {"texts": texts})
    assert r.status_code == 200
    assert r.json() == {"translations": [single[(s, None)] for s in texts]}
    # the model is not degenerate: different sentences, different translations (so order is really checked)
    assert len(set(r.json()["translations"])) >= 6
    r = post(app, "/v1/translate", {"texts": ["", "I am a student.", "   "]})
    assert r.json()["translations"] == ["", single[("I am a student.", None)], ""]


def test_decoding_options_are_passed_on(app, translator):
    texts = ["Where is the station?", "How are you?"]
    r = post(app, "/v1/translate", {"texts": texts, "beam": 2, "max_length": 3})
    assert r.status_code == 200
    assert r.json()["translations"] == translator.translate(texts, beam=2, max_length=3)
    assert all(len(translator.tgt_tokenizer.encode(t)) <= 3 for t in r.json()["translations"])


def test_attention_returns_every_map_with_rows_summing_to_one(app, translator):
    text = "I like to read books."
    r = post(app, "/v1/attention", {"text": text})
    assert r.status_code == 200
    body, direct = r.json(), translator.attention(text)
    assert body["translation"] == direct["translation"] == translator.translate([text])[0]
    assert body["source_tokens"] == direct["source_tokens"] and body["target_tokens"] == direct["target_tokens"]
    cfg = translator.config
    S, T = len(body["source_tokens"]), len(body["target_tokens"])
    shapes = {"encoder": (cfg.n_encoder_layers, S, S), "decoder": (cfg.n_decoder_layers, T, T),
              "cross": (cfg.n_decoder_layers, T, S)}
    for kind, (n_layers, tq, tk) in shapes.items():
        maps = torch.tensor(body[kind])
        assert maps.shape == (n_layers, cfg.n_heads, tq, tk), kind
        torch.testing.assert_close(maps.sum(-1), torch.ones(n_layers, cfg.n_heads, tq), atol=1e-3, rtol=0)
        torch.testing.assert_close(maps, torch.tensor(direct[kind]), atol=1e-4, rtol=0)
    decoder = torch.tensor(body["decoder"])
    assert decoder.triu(diagonal=1).abs().max() == 0  # masked: no step looks ahead


def test_health_model_page_and_docs(app, translator):
    health = get(app, "/v1/health").json()
    assert health["status"] == "ok" and health["batching"] is True
    info = get(app, "/v1/model").json()
    assert info["config"] == translator.config.to_dict()
    assert (info["src_lang"], info["tgt_lang"]) == ("en", "zh")
    assert info["parameters"] == translator.model.num_parameters() > 0
    assert info["limits"]["max_texts"] == 8 and info["limits"]["max_chars"] == 60
    page = get(app, "/")
    assert page.status_code == 200 and "attention explorer" in page.text and "/static/app.js" in page.text
    for asset in ("/static/app.js", "/static/style.css"):
        assert get(app, asset).status_code == 200
    assert get(app, "/docs").status_code == 200
    schema = get(app, "/openapi.json").json()
    assert {"/v1/translate", "/v1/attention", "/v1/health", "/v1/model"} <= set(schema["paths"])
    texts = schema["components"]["schemas"]["TranslateRequest"]["properties"]["texts"]
    assert (texts["minItems"], texts["maxItems"]) == (1, 8)  # the configured limits are documented


# ------------------------------------------------------------------------------------------ validation
BAD_TRANSLATE = [
    (None, "empty body"),
    ({}, "texts: Field required"),
    ([], "valid dictionary"),
    ({"texts": []}, "at least 1 item"),
    ({"texts": "I am a student."}, "valid list"),
    ({"texts": [1, 2]}, "texts.0: Input should be a valid string"),
    ({"texts": [None]}, "valid string"),
    ({"texts": ["x"] * 9}, "at most 8 items"),
    ({"texts": ["ok", "x" * 61]}, "texts.1: String should have at most 60 characters"),
    ({"texts": ["x"], "beam": 0}, "beam: Input should be greater than or equal to 1"),
    ({"texts": ["x"], "beam": 5}, "beam: Input should be less than or equal to 4"),
    ({"texts": ["x"], "beam": "2"}, "beam: Input should be a valid integer"),
    ({"texts": ["x"], "beam": 1.5}, "beam: Input should be a valid integer"),
    ({"texts": ["x"], "max_length": 0}, "max_length"),
    ({"texts": ["x"], "max_length": 100_000}, "less than or equal to 128"),  # the model's max_len
    ({"text": "x"}, "text: Extra inputs are not permitted"),
]
BAD_ATTENTION = [
    (None, "empty body"),
    ({"text": ""}, "blank"),
    ({"text": "   "}, "blank"),
    ({"text": ["a"]}, "valid string"),
    ({"text": "x" * 51}, "at most 50 characters"),
    ({"text": "x", "beam": -1}, "beam"),
]


@pytest.mark.parametrize(("path", "body", "message"),
                         [("/v1/translate", b, m) for b, m in BAD_TRANSLATE]
                         + [("/v1/attention", b, m) for b, m in BAD_ATTENTION])
def test_invalid_requests_get_422_with_a_readable_error(app, path, body, message):
    r = post(app, path, body)
    assert r.status_code == 422, r.text
    assert message in r.json()["error"], r.json()["error"]
    assert r.json()["detail"]


def test_malformed_json_wrong_method_and_unknown_path(app):
    async def main():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://rosetta") as client:
            bad = await client.post("/v1/translate", content=b'{"texts": [',
                                    headers={"content-type": "application/json"})
            method = await client.get("/v1/translate")
            missing = await client.get("/v1/nothing")
            return bad, method, missing

    bad, method, missing = asyncio.run(main())
    assert bad.status_code == 422 and "not valid JSON" in bad.json()["error"]
    assert method.status_code == 405 and missing.status_code == 404


# ------------------------------------------------------------------------------------------ failures
class Flaky:
    """A translator that raises on the text "boom" (a stand-in for any exception inside the model)."""

    def __init__(self, translator):
        self.inner = translator
        self.config, self.model = translator.config, translator.model
        self.src_lang, self.tgt_lang, self.decode_options = "en", "zh", translator.decode_options

    def translate(self, texts, **kwargs):
        if "boom" in texts:
            raise RuntimeError("exploded on purpose")
        return self.inner.translate(texts, **kwargs)

    def attention(self, text, beam=None):
        if text == "boom":
            raise RuntimeError("exploded on purpose")
        return self.inner.attention(text, beam=beam)


def test_an_exception_in_the_model_is_a_500_and_spares_the_other_requests(make_app, translator, single):
    app = make_app(Settings(max_wait_ms=20), Flaky(translator))  # the wait makes the requests merge
    requests = [("POST", "/v1/translate", {"texts": [s]}) for s in SENTENCES[:6]]
    requests.insert(3, ("POST", "/v1/translate", {"texts": ["boom"]}))
    requests.append(("POST", "/v1/attention", {"text": "boom"}))
    responses = call(app, requests)
    assert [r.status_code for r in responses] == [200, 200, 200, 500, 200, 200, 200, 500]
    assert "exploded on purpose" in responses[3].json()["error"]
    assert [r.json()["translations"][0] for r in responses[:3] + responses[4:7]] == [
        single[(s, None)] for s in SENTENCES[:6]]
    health = get(app, "/v1/health").json()
    assert health["status"] == "ok" and health["errors"] == 2
    assert post(app, "/v1/translate", {"texts": ["How are you?"]}).status_code == 200  # still serving


# ------------------------------------------------------------------------------------------ batching
def test_batcher_merges_waiting_requests_by_options_up_to_max_batch():
    gate, calls = threading.Event(), []

    def fake_translate(texts, beam=None, max_length=None):
        calls.append((list(texts), beam, max_length))
        if texts == ["block"]:
            gate.wait(10)  # hold the worker so that the next requests queue up
        return [t.upper() for t in texts]

    batcher = Batcher(fake_translate, max_batch=5)
    first = batcher.submit_translate(["block"])
    while not calls:
        time.sleep(0.005)
    futures = [batcher.submit_translate([f"s{i}"]) for i in range(6)]
    other = batcher.submit_translate(["x", "y"], beam=2)
    gate.set()
    assert first.result(10) == ["BLOCK"]
    assert [f.result(10) for f in futures] == [[f"S{i}"] for i in range(6)]
    assert other.result(10) == ["X", "Y"]
    assert calls[1:] == [(["s0", "s1", "s2", "s3", "s4"], None, None), (["s5"], None, None), (["x", "y"], 2, None)]
    stats = batcher.snapshot()
    assert (stats["requests"], stats["model_calls"], stats["largest_batch"]) == (8, 4, 5)
    batcher.close()


def load(app, requests, expected):
    responses = call(app, requests)
    assert [r.status_code for r in responses] == [200] * len(requests)
    assert [r.json()["translations"] for r in responses] == expected


def mixed_requests(n):
    """n requests: mostly one sentence, some two, some with beam 2 (which must not merge with beam 1)."""
    requests, keys = [], []
    for i in range(n):
        texts = [SENTENCES[i % len(SENTENCES)]] + ([SENTENCES[(i * 7) % len(SENTENCES)]] if i % 5 == 0 else [])
        beam = 2 if i % 11 == 0 else None
        requests.append(("POST", "/v1/translate", {"texts": texts, **({"beam": beam} if beam else {})}))
        keys.append([(t, beam) for t in texts])
    return requests, keys


def test_300_concurrent_requests_are_merged_and_answered_exactly(make_app, single):
    app = make_app(Settings())
    requests, keys = mixed_requests(300)
    load(app, requests, [[single[k] for k in ks] for ks in keys])
    stats = get(app, "/v1/health").json()
    assert stats["requests"] == 300 and stats["errors"] == 0
    assert stats["sentences"] == sum(len(ks) for ks in keys)
    assert stats["merged_calls"] > 0 and stats["largest_batch_requests"] > 1  # really merged
    # A bound on work, not on time (a busy machine must not fail it): merging at least halves the model calls.
    assert stats["model_calls"] <= stats["requests"] // 2


def test_without_batching_every_request_runs_alone(make_app, single):
    app = make_app(Settings(batching=False))
    requests, keys = mixed_requests(60)
    load(app, requests, [[single[k] for k in ks] for ks in keys])
    stats = get(app, "/v1/health").json()
    assert stats["batching"] is False
    assert stats["model_calls"] == stats["requests"] == 60 and stats["merged_calls"] == 0


def test_a_real_uvicorn_server_on_loopback(make_app, single):
    app = make_app(Settings())
    with serve_in_thread(app) as url:
        async def main():
            async with httpx.AsyncClient(base_url=url, timeout=60) as client:
                rs = await asyncio.gather(*[client.post("/v1/translate", json={"texts": [SENTENCES[i % 15]]})
                                            for i in range(100)])
                return rs, await client.get("/v1/health")

        responses, health = asyncio.run(asyncio.wait_for(main(), 120))
    assert [r.json()["translations"][0] for r in responses] == [single[(SENTENCES[i % 15], None)] for i in range(100)]
    assert health.json()["requests"] == 100


def test_the_load_benchmark_runs(tmp_path):
    """benchmarks/server_load.py against the tiny model, minimal settings, so that it does not rot."""
    import importlib.util
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "server_load.py"
    spec = importlib.util.spec_from_file_location("rosetta_bench_server_load", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "load.json"
    bench.main(["--model", str(tiny_model_dir()), "--clients", "1,3", "--requests", "2", "--batching", "on",
                "--warmup", "1", "--json", str(out)])
    rows = json.loads(out.read_text())["results"]
    assert [(r["batching"], r["clients"], r["requests"]) for r in rows] == [("on", 1, 2), ("on", 3, 6)]
    assert all(r["sentences_per_s"] > 0 and r["p99_ms"] >= r["p50_ms"] > 0 and r["mean_batch"] >= 1 for r in rows)
