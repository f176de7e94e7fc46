"""The server with an image model (tiny_vit.py's ViT): POST /v1/classify as JSON base64, multipart and a raw
image body; every kind of bad input answered 4xx (never 500); concurrent requests; /v1/model and the page.
Answers are compared with the model called directly on the same picture."""

import asyncio
import base64

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

from rosetta.data.images import to_tensor
from rosetta.decode.loading import load_any
from rosetta.server import Settings, create_app
from rosetta.view.rollout import attention_rollout

pytest.importorskip("sklearn")
from tiny_vit import digit_picture, encode, tiny_vit_dir  # noqa: E402 — needs scikit-learn's digits

MAX_BYTES = 20_000


@pytest.fixture(scope="module")
def loaded():
    return load_any(tiny_vit_dir())


@pytest.fixture(scope="module")
def app(loaded):
    app = create_app(loaded, Settings(max_image_bytes=MAX_BYTES, max_image_pixels=1_000_000))
    yield app
    app.state.batcher.close()


def send(app, requests):
    """[(method, path, httpx keyword arguments)] sent concurrently in-process; the responses in order."""

    async def main():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://rosetta", timeout=60) as client:
            return await asyncio.gather(*[client.request(m, p, **kw) for m, p, kw in requests])

    return asyncio.run(asyncio.wait_for(main(), 120))


def post(app, **kwargs):
    return send(app, [("POST", "/v1/classify", kwargs)])[0]


def expected(loaded, png: bytes):
    """What the model says about the picture, called directly: probabilities (10,), attention per layer."""
    spec = loaded.info["image"]
    x = to_tensor(png, spec["image_size"], spec["channels"], spec["mean"], spec["std"], invert="auto")
    with torch.no_grad():
        logits, attention = loaded.model(x[None], return_attention=True)
    return logits[0].softmax(-1), [a[0] for a in attention]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# ------------------------------------------------------------------------------------------ answers
def test_a_base64_png_is_classified_with_its_attention(app, loaded):
    picture, _ = digit_picture(5, scale=4)
    png = encode(picture)
    r = post(app, json={"image": "data:image/png;base64," + b64(png)})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"label", "probability", "top", "attention", "grid"} and body["grid"] == 4
    probs, attention = expected(loaded, png)
    assert body["label"] == str(int(probs.argmax())) and body["probability"] == pytest.approx(float(probs.max()),
                                                                                              abs=1e-5)
    assert len(body["top"]) == 5 and body["top"][0] == [body["label"], body["probability"]]
    assert [p for _, p in body["top"]] == sorted((p for _, p in body["top"]), reverse=True)
    assert [label for label, _ in body["top"]] == [str(i) for i in probs.topk(5).indices.tolist()]
    layers = torch.tensor(body["attention"]["layers"])  # (L, H, g, g)
    assert layers.shape == (2, 4, 4, 4)
    for layer in range(2):
        for head in range(4):
            row = attention[layer][head, 0, 1:].reshape(4, 4)  # [CLS] → the 16 patches, row-major
            torch.testing.assert_close(layers[layer, head], row, atol=1e-4, rtol=0)
    rollout = torch.tensor(body["attention"]["rollout"])
    assert rollout.shape == (4, 4)
    torch.testing.assert_close(rollout, attention_rollout(attention)[0, 1:].reshape(4, 4), atol=1e-4, rtol=0)
    assert 0 < float(rollout.sum()) < 1  # the rest stays on [CLS]
    plain = post(app, json={"image": b64(png), "top_k": 2}).json()  # plain base64, fewer labels
    assert plain["label"] == body["label"] and plain["top"] == body["top"][:2]


def test_multipart_and_a_raw_image_body_give_the_same_answer(app, loaded):
    picture, _ = digit_picture(7, scale=3, mode="RGB")
    jpeg = encode(picture, "JPEG")
    as_json = post(app, json={"image": b64(jpeg), "top_k": 3}).json()
    multipart = post(app, files={"image": ("digit.jpg", jpeg, "image/jpeg")}, data={"top_k": "3"})
    assert multipart.status_code == 200, multipart.text
    assert multipart.json() == as_json and len(as_json["top"]) == 3
    raw = post(app, content=jpeg, headers={"Content-Type": "image/jpeg"}, params={"top_k": 3})
    assert raw.status_code == 200 and raw.json() == as_json
    probs, _ = expected(loaded, jpeg)
    assert as_json["label"] == str(int(probs.argmax()))


def test_pictures_of_any_mode_and_size(app, loaded):
    picture, _ = digit_picture(2)
    pixels = np.asarray(picture)
    rgba = np.zeros((8, 8, 4), dtype=np.uint8)
    rgba[..., 3] = pixels  # black ink on transparent: read inverted, exactly the digit
    grey = post(app, json={"image": b64(encode(picture))}).json()
    ink = post(app, json={"image": b64(encode(Image.fromarray(rgba, "RGBA")))}).json()
    assert ink["label"] == grey["label"] and [p for _, p in ink["top"]] == pytest.approx([p for _, p in grey["top"]],
                                                                                      abs=1e-4)
    assert ink["probability"] == pytest.approx(grey["probability"], abs=1e-4)
    wide = Image.new("RGB", (100, 60))
    wide.paste(picture.resize((60, 60)).convert("RGB"), (20, 0))
    r = post(app, files={"image": ("wide.jpg", encode(wide, "JPEG"), "image/jpeg")})
    assert r.status_code == 200 and r.json()["label"] in [str(i) for i in range(10)]


# ------------------------------------------------------------------------------------------ bad input
def noise_png(side: int) -> bytes:
    """A random RGB picture: PNG cannot compress it, so it has about 3·side² bytes."""
    return encode(Image.fromarray(np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)))


TEXT = b"hello, this is not a picture\n"
PNG = encode(digit_picture(0)[0])
BAD = [
    ({"json": {"image": b64(TEXT)}}, 415, "not an image"),
    ({"json": {"image": b64(PNG[:60])}}, 415, "damaged"),  # a truncated PNG
    ({"json": {}}, 422, "image: Field required"),
    ({"json": {"img": b64(PNG)}}, 422, "img: Extra inputs are not permitted"),
    ({"json": {"image": "%%% not base64 %%%"}}, 422, "not valid base64"),
    ({"json": {"image": "data:image/png,iVBORw0KGgo"}}, 422, "must be base64"),
    ({"json": {"image": 12}}, 422, "should be a base64 string"),
    ({"json": {"image": None}}, 422, "should be a base64 string"),
    ({"json": {"image": ""}}, 422, "empty"),
    ({"json": {"image": b64(PNG), "top_k": 0}}, 422, "top_k"),
    ({"json": {"image": b64(PNG), "top_k": "3"}}, 422, "top_k"),
    ({"json": {"image": b64(PNG), "top_k": 2.5}}, 422, "top_k"),
    ({"json": [b64(PNG)]}, 422, "JSON object"),
    ({"content": b"{not json", "headers": {"Content-Type": "application/json"}}, 422, "not valid JSON"),
    ({"content": b"", "headers": {"Content-Type": "application/json"}}, 422, "empty body"),
    ({"content": b"[" * 50_000, "headers": {"Content-Type": "application/json"}}, 422, "JSON"),
    ({"content": TEXT, "headers": {"Content-Type": "text/plain"}}, 415, "text/plain"),
    ({"content": TEXT, "headers": {"Content-Type": "image/png"}}, 415, "not an image"),
    ({"files": {"picture": ("d.png", PNG, "image/png")}}, 422, "image: Field required"),
    ({"files": {"image": ("notes.txt", TEXT, "text/plain")}}, 415, "not an image"),
    ({"files": {"image": ("d.png", PNG, "image/png")}, "data": {"top_k": "many"}}, 422, "top_k"),
    ({"content": b"--x\r\nno blank line", "headers": {"Content-Type": "multipart/form-data; boundary=x"}}, 422,
     "malformed"),
    ({"content": PNG, "headers": {"Content-Type": "multipart/form-data"}}, 422, "boundary"),
    ({"json": {"image": b64(noise_png(100))}}, 413, "at most 20,000"),  # ~30 kB decoded: over the picture limit
    ({"content": noise_png(200), "headers": {"Content-Type": "image/png"}}, 413, "at most"),  # over the body limit
    ({"json": {"image": b64(encode(Image.new("L", (1200, 1000))))}}, 413, "1,000,000 allowed"),  # pixels
]


@pytest.mark.parametrize(("request_kwargs", "status", "message"), BAD,
                         ids=[f"{i}-{s}-{m.split()[0]}" for i, (_, s, m) in enumerate(BAD)])
def test_bad_input_is_a_clear_4xx(app, request_kwargs, status, message):
    r = post(app, **request_kwargs)
    assert r.status_code == status, r.text
    assert message in r.json()["error"], r.json()["error"]


def test_an_oversized_body_is_refused_before_it_is_read(app):
    async def endless():  # a client that would send far more than the limit, without a Content-Length
        for _ in range(1000):
            yield b"x" * 10_000

    r = post(app, content=endless(), headers={"Content-Type": "image/png"})
    assert r.status_code == 413 and "limit" in r.json()["error"]
    r = post(app, content=b"x", headers={"Content-Type": "image/png", "Content-Length": str(10**9)})
    assert r.status_code == 413 and "1,000,000,000 bytes" in r.json()["error"]


def test_the_server_still_answers_after_bad_requests(app):
    send(app, [("POST", "/v1/classify", kw) for kw, _, _ in BAD[:6]])
    assert post(app, json={"image": b64(PNG)}).status_code == 200
    assert send(app, [("GET", "/v1/health", {})])[0].json()["status"] == "ok"


# ------------------------------------------------------------------------------------------ load
def test_concurrent_requests_are_all_answered_exactly(app, loaded):
    pngs = [encode(digit_picture(i, scale=2)[0]) for i in range(40)]
    responses = send(app, [("POST", "/v1/classify", {"json": {"image": b64(png), "top_k": 1}}) for png in pngs])
    assert all(r.status_code == 200 for r in responses)
    for png, r in zip(pngs, responses):
        probs, _ = expected(loaded, png)
        assert r.json()["label"] == str(int(probs.argmax()))
        assert r.json()["probability"] == pytest.approx(float(probs.max()), abs=1e-5)
    assert len({r.json()["label"] for r in responses}) >= 5  # different digits, different answers


# ------------------------------------------------------------------------------------------ info and page
def test_model_info_page_and_docs(app, loaded):
    info, page, docs, schema = send(app, [("GET", p, {}) for p in ("/v1/model", "/", "/docs", "/openapi.json")])
    info = info.json()
    assert (info["family"], info["task"]) == ("vit", "image-classification")
    assert info["image"] == loaded.info["image"] and info["grid"] == 4 and info["labels"] == list("0123456789")
    assert info["parameters"] == loaded.model.num_parameters() and info["corpus"] == "digits"
    assert info["limits"]["max_image_bytes"] == MAX_BYTES and info["limits"]["max_image_pixels"] == 1_000_000
    assert page.status_code == 200 and 'id="draw"' in page.text and docs.status_code == 200
    body = schema.json()["paths"]["/v1/classify"]["post"]["requestBody"]["content"]
    assert {"application/json", "multipart/form-data", "image/png", "image/jpeg"} <= set(body)
    assert "/v1/translate" not in schema.json()["paths"]


def test_a_translation_server_says_its_family(translator):
    app = create_app(translator, Settings())
    try:
        info = send(app, [("GET", "/v1/model", {})])[0].json()
        assert (info["family"], info["task"]) == ("translation", "translation")
        r = send(app, [("POST", "/v1/classify", {"json": {"image": b64(PNG)}})])[0]
        assert r.status_code in (404, 405)  # no classify endpoint on a translation server
    finally:
        app.state.batcher.close()


def test_a_real_uvicorn_server_takes_a_multipart_upload(loaded):
    from tiny_translator import serve_in_thread

    app = create_app(loaded, Settings())
    try:
        with serve_in_thread(app) as url:
            r = httpx.post(f"{url}/v1/classify", files={"image": ("d.png", PNG, "image/png")}, timeout=30)
        assert r.status_code == 200 and r.json()["grid"] == 4
        probs, _ = expected(loaded, PNG)
        assert r.json()["label"] == str(int(probs.argmax()))
    finally:
        app.state.batcher.close()



def test_rosetta_serve_builds_the_image_app_for_a_vit(monkeypatch):
    import uvicorn
    from typer.testing import CliRunner

    from rosetta.cli import app as cli_app

    served = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: served.update(app=app, **kwargs))
    r = CliRunner().invoke(cli_app, ["serve", "--model", str(tiny_vit_dir()), "--port", "8123",
                                     "--max-image-bytes", "1234"])
    assert r.exit_code == 0, r.output
    app = served["app"]
    try:
        assert served["port"] == 8123 and app.state.settings.max_image_bytes == 1234
        info = send(app, [("GET", "/v1/model", {})])[0].json()
        assert info["family"] == "vit" and info["limits"]["max_image_bytes"] == 1234
        r = post(app, json={"image": b64(noise_png(30))})  # 2.7 kB: over this server's limit
        assert r.status_code == 413
    finally:
        app.state.batcher.close()
    r = CliRunner().invoke(cli_app, ["serve", "--model", str(tiny_vit_dir()), "--int8"])
    assert r.exit_code == 2 and "--int8" in r.stderr
