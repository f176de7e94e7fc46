"""Limits before work and defaults that keep people out (server/limits.py, ``rosetta serve``'s flags):

- a body over ``max_body_bytes`` gets 413 before it is read: from its Content-Length without one call of
  ``receive()``, or, chunked, after at most the limit and one more chunk; a body up to the limit passes unchanged;
- every task's app has that guard (the tiny models of tests/tiny_*.py), and a real uvicorn server on loopback
  answers a 100 MB upload with 413 within 100 ms, then closes the connection instead of reading the rest;
- a PNG whose header claims huge dimensions is refused with 413, without being decoded; no request field is
  opened as a file;
- CORS headers only for the --cors origins; ``rosetta serve`` listens on 127.0.0.1 and maps every flag onto
  ``Settings``; docs/serving.md lists every limit with its default.
"""

import asyncio
import base64
import dataclasses
import json
import re
import socket
import struct
import time
import zlib
from pathlib import Path

import httpx
import pytest
from tiny_models import tiny_classifier_dir, tiny_lm_dir, tiny_qa_dir, tiny_summariser_dir
from tiny_translator import serve_in_thread, tiny_model_dir

import rosetta
from rosetta.decode.loading import load_any
from rosetta.server import Settings, create_app
from rosetta.server.limits import BodyLimit, BodyTooLarge

LIMIT = 4096  # the body limit of the task apps below
MB100 = 100_000_000


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


# ------------------------------------------------------------------------------------------ the middleware alone
class Client:
    """A raw ASGI request: ``receive()`` hands out ``chunks`` (then more_body False) and counts what it gave."""

    def __init__(self, chunks: list[bytes], headers: dict[str, str]):
        self.chunks, self.calls, self.given = list(chunks), 0, 0
        self.scope = {"type": "http", "method": "POST", "path": "/", "query_string": b"",
                      "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]}
        self.sent: list[dict] = []

    async def receive(self) -> dict:
        self.calls += 1
        body = self.chunks.pop(0) if self.chunks else b""
        self.given += len(body)
        return {"type": "http.request", "body": body, "more_body": bool(self.chunks)}

    async def send(self, message: dict) -> None:
        self.sent.append(message)

    def call(self, app) -> tuple[int, bytes]:
        asyncio.run(app(self.scope, self.receive, self.send))
        starts = [m for m in self.sent if m["type"] == "http.response.start"]
        assert len(starts) == 1, self.sent  # one answer, never two
        return starts[0]["status"], b"".join(m.get("body", b"") for m in self.sent if m["type"] == "http.response.body")


async def echo(scope, receive, send, catch: bool = False) -> None:
    """An app that reads the whole body and answers it back (``catch``: it answers 400 to a failed read, as
    FastAPI does)."""
    body, more = b"", True
    try:
        while more:
            message = await receive()
            body, more = body + message["body"], message["more_body"]
    except BodyTooLarge:
        if not catch:
            raise
        body, status = b"could not read the body", 400
    else:
        status = 200
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": body})


def error_line(body: bytes) -> str:
    message = json.loads(body)["error"]
    assert isinstance(message, str) and "\n" not in message and len(message) < 300
    return message


def test_a_declared_body_over_the_limit_is_refused_without_reading_it():
    client = Client([b"x" * 1000] * 5, {"content-length": str(MB100)})
    start = time.perf_counter()
    status, body = client.call(BodyLimit(echo, max_bytes=1000))
    elapsed = time.perf_counter() - start
    assert status == 413 and client.calls == 0 and client.given == 0
    message = error_line(body)
    assert "100,000,000 bytes" in message and "at most 1,000" in message and "--max-body-bytes" in message
    assert elapsed < 0.1
    headers = dict(client.sent[0]["headers"])
    assert headers[b"content-type"] == b"application/json" and headers[b"connection"] == b"close"


@pytest.mark.parametrize("catch", [False, True], ids=["app-raises", "app-answers-400"])
def test_a_chunked_body_is_refused_once_the_bytes_pass_the_limit(catch):
    chunk = 64 * 1024
    client = Client([b"x" * chunk] * 100, {})  # 6.5 MB, no Content-Length

    async def app(scope, receive, send):
        await echo(scope, receive, send, catch=catch)

    status, body = client.call(BodyLimit(app, max_bytes=100_000))
    assert status == 413 and "over 100,000 bytes" in error_line(body)
    assert 100_000 < client.given <= 100_000 + chunk  # stopped at the first chunk past the limit


@pytest.mark.parametrize("declared", [False, True], ids=["chunked", "content-length"])
def test_a_body_up_to_the_limit_passes_unchanged(declared):
    chunks = [bytes(range(256)) * 4, b"\x00\xff" * 500, b"end"]
    size = len(b"".join(chunks))
    headers = {"content-length": str(size)} if declared else {}
    status, body = Client(chunks, headers).call(BodyLimit(echo, max_bytes=size))
    assert status == 200 and body == b"".join(chunks)
    status, _ = Client(chunks, headers).call(BodyLimit(echo, max_bytes=size - 1))
    assert status == 413


def test_an_answer_already_started_is_not_replaced():
    async def streams_then_reads(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        while True:
            await receive()

    client = Client([b"x" * 600] * 10, {})
    with pytest.raises(BodyTooLarge):  # up to the server, which drops the connection
        asyncio.run(BodyLimit(streams_then_reads, max_bytes=1000)(client.scope, client.receive, client.send))
    assert [m["type"] for m in client.sent] == ["http.response.start"] and client.given == 1200


def test_other_scopes_pass_through():
    seen = []

    async def app(scope, receive, send):
        seen.append(scope["type"])

    asyncio.run(BodyLimit(app, max_bytes=1)({"type": "lifespan"}, None, None))
    assert seen == ["lifespan"]


# ------------------------------------------------------------------------------------------ every task's app
def summariser():
    return rosetta.load(tiny_summariser_dir())


def embedder():  # the classifier's encoder, as a plain sentence encoder
    loaded = load_any(tiny_classifier_dir())
    return dataclasses.replace(loaded, info={**loaded.info, "task": "embedding", "labels": None})


def vit():
    pytest.importorskip("sklearn")
    from tiny_vit import tiny_vit_dir

    return load_any(tiny_vit_dir())


def png(width: int, height: int, pixels: bytes | None = None) -> bytes:
    """A greyscale PNG of ``width`` × ``height``; ``pixels`` (rows, each after a filter byte) default to a
    single black row: a picture whose header claims more than its data holds."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    data = zlib.compress(pixels if pixels is not None else b"\x00" * (width + 1))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", data) + chunk(b"IEND", b""))


DIGIT = png(8, 8, b"".join(b"\x00" + bytes([255 * (2 < x < 6) for x in range(8)]) for _ in range(8)))

# (model, endpoint, a valid request, the key its answer has)
TASKS = {
    "translation": (lambda: rosetta.load(tiny_model_dir()), "/v1/translate", {"texts": ["hello"]}, "translations"),
    "summarisation": (summariser, "/v1/summarise", {"texts": ["a short text"]}, "summaries"),
    "classification": (lambda: load_any(tiny_classifier_dir()), "/v1/classify", {"texts": ["good"]}, "predictions"),
    "embedding": (embedder, "/v1/embed", {"texts": ["good"]}, "embeddings"),
    "qa": (lambda: load_any(tiny_qa_dir()), "/v1/answer", {"question": "who?", "context": "Ada wrote it."}, "answer"),
    "lm": (lambda: load_any(tiny_lm_dir()), "/v1/generate",
           {"prompt": "ab", "max_new_tokens": 3, "seed": 0, "stream": False}, "text"),
    "image-classification": (vit, "/v1/classify", {"image": base64.b64encode(DIGIT).decode()}, "label"),
}


@pytest.fixture(scope="module")
def apps():
    """The app of each task, made on first use, with a small body limit; closed at the end of the module."""
    made = {}

    def get(task: str):
        if task not in made:
            made[task] = create_app(TASKS[task][0](), Settings(max_body_bytes=LIMIT))
        return made[task]

    yield get
    for app in made.values():
        app.state.batcher.close()


def request(app, method: str, path: str, **kwargs) -> httpx.Response:
    async def main():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://rosetta", timeout=60) as client:
            return await client.request(method, path, **kwargs)

    return asyncio.run(asyncio.wait_for(main(), 60))


class Upload:
    """A request body of ``total`` bytes in ``chunk``-byte pieces that counts the bytes the server pulled."""

    def __init__(self, total: int, chunk: int = 1 << 20):
        self.total, self.chunk, self.pulled = total, chunk, 0

    async def __aiter__(self):
        while self.pulled < self.total:
            self.pulled += self.chunk
            yield b" " * self.chunk


@pytest.mark.parametrize("task", TASKS)
def test_every_task_refuses_a_large_body_unread_and_serves_a_small_one(apps, task):
    _, path, valid, key = TASKS[task]
    app = apps(task)
    upload = Upload(MB100)
    r = request(app, "POST", path, content=upload, headers={"Content-Type": "application/json",
                                                             "Content-Length": str(MB100)})
    assert r.status_code == 413 and "100,000,000 bytes" in r.json()["error"] and upload.pulled == 0
    upload = Upload(MB100, chunk=1000)  # no Content-Length: sent chunked
    r = request(app, "POST", path, content=upload, headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and f"over {LIMIT:,} bytes" in r.json()["error"]
    assert LIMIT < upload.pulled <= LIMIT + 1000
    r = request(app, "POST", path, json=valid)  # under the limit: the endpoint's usual answer
    assert r.status_code == 200 and key in r.json(), r.text
    info = request(app, "GET", "/v1/model").json()
    assert info["limits"]["max_body_bytes"] == LIMIT
    assert request(app, "GET", "/").status_code == 200 and request(app, "GET", "/static/app.js").status_code == 200


def test_a_streamed_generation_passes_the_guard_line_by_line(apps):
    r = request(apps("lm"), "POST", "/v1/generate", json={"prompt": "ab", "max_new_tokens": 4, "seed": 0})
    lines = [json.loads(line) for line in r.text.splitlines()]
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
    assert lines[-1]["done"] and len(lines) == lines[-1]["tokens"] + 1 >= 2
    assert lines[-1]["text"] == "".join(x["text"] for x in lines[:-1])


def test_the_default_body_limit_fits_the_largest_valid_request():
    """12 bytes a character (a JSON-escaped emoji), every text at the longest a document may be; or the
    largest picture as base64; plus 64 KiB."""
    settings = Settings()
    largest = max(64 * 8000 * 12, 5_000_000 * 4 // 3) + 64 * 1024
    assert settings.max_body_bytes == largest == 6_732_202
    assert Settings(max_texts=1000).max_body_bytes == 1000 * 8000 * 12 + 64 * 1024
    assert Settings(max_body_bytes=10).max_body_bytes == 10


def test_a_real_server_answers_a_100_mb_upload_with_413_at_once():
    app = create_app(load_any(tiny_lm_dir()), Settings())
    with serve_in_thread(app) as url:
        port = int(url.rsplit(":", 1)[1])
        times = []
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                start = time.perf_counter()
                sock.sendall(f"POST /v1/generate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                             f"Content-Length: {MB100}\r\n\r\n".encode() + b" " * 65536)
                answer = b""
                while b"}" not in answer:
                    answer += sock.recv(65536)
                times.append(time.perf_counter() - start)
                assert answer.startswith(b"HTTP/1.1 413") and b"100,000,000 bytes" in answer
                sock.settimeout(5)
                assert sock.recv(65536) == b""  # the server closed the connection: the rest is never read
        assert httpx.get(url + "/v1/health", timeout=10).json()["status"] == "ok"
    app.state.batcher.close()
    assert min(times) < 0.1, times  # the bound; the best of three, so a busy machine does not fail it


# ------------------------------------------------------------------------------------------ pictures
def test_a_picture_claiming_huge_dimensions_is_refused_without_decoding(apps, monkeypatch):
    from PIL import ImageFile

    app = apps("image-classification")
    decoded = []
    load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: decoded.append(self.size) or load(self))
    for (width, height), says in [((6000, 6000), "6000×6000 pixels is more than the 25,000,000 allowed"),
                                  ((100_000, 100_000), "too many pixels")]:
        bomb = png(width, height)
        assert len(bomb) < 300  # tiny on the wire; 36 million and 10 billion pixels once decoded
        r = request(app, "POST", "/v1/classify", content=bomb, headers={"Content-Type": "image/png"})
        assert r.status_code == 413 and says in error_line(r.content), r.text
    assert decoded == []
    r = request(app, "POST", "/v1/classify", content=DIGIT, headers={"Content-Type": "image/png"})
    assert r.status_code == 200 and set(decoded) == {(8, 8)}  # the spy does see a picture decoded


def test_no_request_field_is_opened_as_a_file(apps, tmp_path: Path):
    app = apps("image-classification")
    (tmp_path / "digit.png").write_bytes(DIGIT)
    for name in (str(tmp_path / "digit.png"), "file://" + str(tmp_path / "digit.png")):
        r = request(app, "POST", "/v1/classify", json={"image": name})
        assert r.status_code in (415, 422) and error_line(r.content)  # the text is read as base64, not a path
    for path in ("/static/../app.py", "/static/%2e%2e/app.py", "/static/..%2fapp.py"):
        assert request(app, "GET", path).status_code == 404


# ------------------------------------------------------------------------------------------ CORS
def test_no_cors_headers_unless_an_origin_is_allowed(apps):
    headers = {"Origin": "https://elsewhere.example"}
    preflight = {**headers, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
    app = apps("classification")  # default: no --cors
    assert "access-control-allow-origin" not in request(app, "GET", "/v1/health", headers=headers).headers
    r = request(app, "OPTIONS", "/v1/classify", headers=preflight)
    assert r.status_code == 405 and "access-control-allow-origin" not in r.headers

    allowed = create_app(load_any(tiny_classifier_dir()), Settings(cors=("https://app.example",), max_body_bytes=10))
    try:
        r = request(allowed, "GET", "/v1/health", headers={"Origin": "https://app.example"})
        assert r.headers["access-control-allow-origin"] == "https://app.example"
        r = request(allowed, "OPTIONS", "/v1/classify", headers={**preflight, "Origin": "https://app.example"})
        assert r.status_code == 200 and "POST" in r.headers["access-control-allow-methods"]
        assert "access-control-allow-origin" not in request(allowed, "GET", "/v1/health", headers=headers).headers
        r = request(allowed, "POST", "/v1/classify", content=b"{" * 100, headers={"Origin": "https://app.example"})
        assert r.status_code == 413 and r.headers["access-control-allow-origin"] == "https://app.example"
    finally:
        allowed.state.batcher.close()


# ------------------------------------------------------------------------------------------ rosetta serve
FLAGS = {  # every Settings field: its flag and a value other than the default
    "max_texts": ("--max-texts", 3),
    "max_chars": ("--max-chars", 11),
    "max_attention_chars": ("--max-attention-chars", 12),
    "max_beam": ("--max-beam", 2),
    "max_length": ("--max-length", 13),
    "batching": ("--no-batching", False),
    "max_batch": ("--max-batch", 5),
    "max_wait_ms": ("--max-wait-ms", 2.5),
    "timeout_s": ("--timeout-s", 7.5),
    "max_image_bytes": ("--max-image-bytes", 1234),
    "max_image_pixels": ("--max-image-pixels", 4321),
    "max_document_chars": ("--max-document-chars", 14),
    "max_document_attention_chars": ("--max-document-attention-chars", 15),
    "max_new_tokens": ("--max-new-tokens", 16),
    "max_body_bytes": ("--max-body-bytes", 9999),
    "cors": ("--cors", ("https://a.example", "http://localhost:3000")),
}


def serve(monkeypatch, *args: str):
    """``rosetta serve`` on the tiny classifier with uvicorn.run replaced: (exit code, output, what run got)."""
    import uvicorn
    from typer.testing import CliRunner

    from rosetta.cli import app as cli_app

    got = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: got.update(app=app, **kwargs))
    r = CliRunner().invoke(cli_app, ["serve", "--model", str(tiny_classifier_dir()), *args])
    if "app" in got:
        got["app"].state.batcher.close()
    return r.exit_code, r.output, got


def test_rosetta_serve_maps_every_flag_onto_settings(monkeypatch):
    assert set(FLAGS) == {f.name for f in dataclasses.fields(Settings)}
    args = []
    for option, value in FLAGS.values():
        if isinstance(value, bool):
            args.append(option)
        else:
            args += [a for v in (value if isinstance(value, tuple) else [value]) for a in (option, str(v))]
    code, output, got = serve(monkeypatch, *args)
    assert code == 0, output
    assert dataclasses.asdict(got["app"].state.settings) == {name: value for name, (_, value) in FLAGS.items()}


def test_rosetta_serve_defaults_keep_people_out(monkeypatch):
    code, output, got = serve(monkeypatch)
    assert code == 0, output
    assert got["host"] == "127.0.0.1" and got["app"].state.settings == Settings()
    assert Settings().cors == () and "access-control-allow-origin" not in request(
        got["app"], "GET", "/v1/health", headers={"Origin": "https://elsewhere.example"}).headers


@pytest.mark.parametrize(("args", "says"), [
    (["--max-texts", "0"], "--max-texts must be at least 1, got 0"),
    (["--timeout-s", "-1"], "--timeout-s must be more than 0, got -1.0"),
    (["--max-wait-ms", "-1"], "--max-wait-ms must be 0 or more"),
    (["--max-body-bytes", "0"], "--max-body-bytes must be at least 1"),
    (["--cors", "https://app.example/"], "--cors takes an origin"),
])
def test_rosetta_serve_refuses_bad_limits_in_one_line(monkeypatch, args, says):
    code, output, got = serve(monkeypatch, *args)
    assert code == 2 and says in output and "Traceback" not in output and not got
    assert len([line for line in output.splitlines() if line.strip()]) == 1


# ------------------------------------------------------------------------------------------ the documentation
def documented(value) -> str:
    """A default as docs/serving.md writes it (thousands separators dropped before comparing)."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple):
        return ", ".join(value) or "none"
    return f"{value:g}" if isinstance(value, float) else str(value)


def test_docs_list_every_limit_with_its_default():
    """Every Settings field has a row `| `--flag` | default | … |` in docs/serving.md with the default it has."""
    text = (Path(__file__).parents[1] / "docs" / "serving.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| `(--[a-z-]+)[^`]*` \| ([^|]+) \|", text, flags=re.MULTILINE))
    defaults = dataclasses.asdict(Settings())
    for name, (option, _) in FLAGS.items():
        option = "--batching" if name == "batching" else option
        assert option in rows, f"docs/serving.md has no row for {option}"
        written = rows[option].strip().replace(",", "")
        assert written.startswith(documented(defaults[name])), f"{option}: the docs say {written!r}, " \
                                                               f"Settings {defaults[name]!r}"
