"""Streams and disconnects (issue 22, item 3) on a real uvicorn server over loopback: a client that leaves a
/v1/generate mid-way frees the model thread at once (streamed or not), a client that does not read its stream
holds nobody else up, and hundreds of requests (some abandoned) leave no growing structure behind.

The tiny language model is wrapped so that each model step is counted and takes ``delay`` seconds: an
abandoned generation that went on would show as steps counted after its client left. The counts are checked
against what each request asked for (``max_new_tokens`` steps, one ``decode_step`` each; greedy decoding of
a model that never saw </s> does not stop early), not against the server's own statistics.
"""

import asyncio
import json
import socket
import threading
import time
import weakref

import httpx
import pytest
import torch
from tiny_models import tiny_lm_dir
from tiny_translator import serve_in_thread

import rosetta.server.lm as lm_server
from rosetta.decode.loading import load_any
from rosetta.server import Settings, create_app
from rosetta.server.batcher import Batcher

DELAY = 0.01  # seconds per model step while a test wants generations to be long in time
LONG = 1000  # tokens of an abandoned generation: 10 s of steps had it not stopped


class CountingModel:
    """The model's ``decode_step`` wrapped: ``steps`` counts calls, each sleeps ``delay`` first."""

    def __init__(self, model):
        self.steps, self.delay, self.inner = 0, 0.0, model.decode_step
        model.decode_step = self

    def __call__(self, *args, **kwargs):
        self.steps += 1
        if self.delay:
            time.sleep(self.delay)
        return self.inner(*args, **kwargs)


@pytest.fixture(scope="module")
def served():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    loaded = load_any(tiny_lm_dir())
    counter = CountingModel(loaded.model)
    app = create_app(loaded, Settings(max_new_tokens=LONG))
    try:
        with serve_in_thread(app) as url:
            yield url, counter, app.state.batcher
    finally:
        app.state.batcher.close()
        torch.set_num_threads(before)


@pytest.fixture
def slow(served):
    url, counter, batcher = served
    counter.delay = DELAY
    yield url, counter, batcher
    counter.delay = 0.0


def body(tokens: int, stream: bool = True, prompt: str = "the ") -> dict:
    return {"prompt": prompt, "max_new_tokens": tokens, "temperature": 0.0, "stream": stream}


def raw_post(url: str, payload: dict) -> socket.socket:
    """Send a POST /v1/generate on a bare socket and return it unread (a client that does not read)."""
    host, port = url.removeprefix("http://").split(":")
    data = json.dumps(payload).encode()
    sock = socket.create_connection((host, int(port)))
    sock.sendall(b"POST /v1/generate HTTP/1.1\r\nHost: rosetta\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(data), data))
    return sock


def wait_until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.005)


def settled(counter: CountingModel, quiet: float = 0.3) -> int:
    """The step count once no step has run for ``quiet`` seconds (30 steps' time at DELAY)."""
    while True:
        seen = counter.steps
        time.sleep(quiet)
        if counter.steps == seen:
            return seen


def test_a_stream_whose_client_leaves_stops_at_once(slow):
    url, counter, _ = slow
    start = counter.steps
    with httpx.Client(timeout=30) as client:
        with client.stream("POST", url + "/v1/generate", json=body(LONG)) as response:
            lines = response.iter_lines()
            assert "id" in json.loads(next(lines)) and "id" in json.loads(next(lines))
        # leaving the block closes the half-read response: httpx drops the connection
        ran = settled(counter) - start
        assert 2 <= ran <= 12  # the two lines read, the few already on their way, the one step in flight
        begin = time.perf_counter()
        short = client.post(url + "/v1/generate", json=body(5, stream=False))
        seconds = time.perf_counter() - begin
    assert short.status_code == 200 and short.json()["tokens"] == 5
    assert counter.steps - start == ran + 5  # no step of the abandoned generation ran beside the short one
    assert seconds < 3  # its remaining ~990 steps would take 10 s


def test_a_non_streamed_request_whose_client_leaves_stops_at_once(slow):
    url, counter, _ = slow
    start = counter.steps
    sock = raw_post(url, body(LONG, stream=False))
    wait_until(lambda: counter.steps - start >= 3)
    sock.close()
    ran = settled(counter) - start
    assert ran <= 15  # not 1000: the generation stopped within a step or two of the disconnect
    with httpx.Client(timeout=30) as client:
        assert client.post(url + "/v1/generate", json=body(4, stream=False)).json()["tokens"] == 4
    assert counter.steps - start == ran + 4


def test_a_client_that_does_not_read_holds_up_nobody(slow):
    url, counter, _ = slow
    start = counter.steps
    sock = raw_post(url, body(100))
    wait_until(lambda: counter.steps - start >= 3)  # the unread generation is under way
    with httpx.Client(timeout=30) as client:
        short = client.post(url + "/v1/generate", json=body(5, stream=False, prompt="a cat"))
    during = counter.steps - start
    assert short.status_code == 200 and short.json()["tokens"] == 5
    assert during < 100 + 5  # the short request was answered before the unread one had made its 100 tokens
    received = b""  # now read it all: the unread stream lost nothing
    sock.settimeout(30)
    while chunk := sock.recv(65536):
        received += chunk
    sock.close()
    head, _, payload = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    lines = [json.loads(line) for line in dechunk(payload).decode().splitlines()]
    assert lines[-1]["done"] and lines[-1]["tokens"] == 100 and len(lines) == 101
    assert "".join(line["text"] for line in lines[:-1]) == lines[-1]["text"]


def dechunk(payload: bytes) -> bytes:
    """The body of an HTTP/1.1 chunked transfer encoding."""
    body = b""
    while payload:
        size, _, rest = payload.partition(b"\r\n")
        n = int(size, 16)
        if n == 0:
            break
        body, payload = body + rest[:n], rest[n + 2:]
    return body


def test_hundreds_of_requests_some_abandoned_leave_nothing_behind(served, monkeypatch):
    """Every token generator is closed on the model thread and freed; the batcher's queue is empty and its
    statistics keep their few keys (nothing per request is kept)."""
    url, counter, batcher = served
    made, closed, original = [], [], lm_server.stream_text

    def tracked(*args, **kwargs):
        inner = original(*args, **kwargs)

        def generator():
            try:
                yield from inner
            finally:
                closed.append(threading.current_thread().name)

        made.append(weakref.ref(gen := generator()))
        return gen

    monkeypatch.setattr(lm_server, "stream_text", tracked)
    keys = set(batcher.snapshot())

    async def one(client: httpx.AsyncClient, i: int) -> None:
        if i % 10 == 9:  # abandoned after its first line
            async with client.stream("POST", "/v1/generate", json=body(LONG)) as response:
                async for _ in response.aiter_lines():
                    return
        r = await client.post("/v1/generate", json=body(1 + i % 7, stream=i % 2 == 0, prompt="the dog "[:i % 9]))
        assert r.status_code == 200

    async def main() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            for first in range(0, 200, 20):  # 20 at a time
                await asyncio.gather(*[one(client, i) for i in range(first, first + 20)])

    asyncio.run(asyncio.wait_for(main(), 120))
    settled(counter, quiet=0.2)
    wait_until(lambda: len(closed) == len(made) == 200)
    assert set(closed) == {"rosetta-model"}
    wait_until(lambda: not any(ref() for ref in made))  # freed (no reference cycle keeps one)
    assert batcher.pending() == 0 and set(batcher.snapshot()) == keys


def test_the_batcher_drops_a_job_whose_caller_gave_up():
    """A cancelled job is skipped unrun and counted; the thread lives on (it used to die on set_result)."""
    gate, ran = threading.Event(), []
    batcher = Batcher(None, functions={"echo": lambda texts: texts})
    try:
        blocker = batcher.submit_call(gate.wait)
        dropped_call = batcher.submit_call(lambda: ran.append("call"))
        dropped_batch = batcher.submit_batch("echo", ["x"])
        kept = batcher.submit_batch("echo", ["y"])
        assert dropped_call.cancel() and dropped_batch.cancel()
        gate.set()
        assert blocker.result(5) is True and kept.result(5) == ["y"]
        assert batcher.submit_call(lambda: 7).result(5) == 7
        assert ran == [] and batcher.snapshot()["cancelled"] == 2
        started = batcher.submit_call(lambda: time.sleep(0.2))
        time.sleep(0.1)
        assert not started.cancel()  # running: it cannot be cancelled, and ends normally
        assert started.result(5) is None and batcher.thread.is_alive()
    finally:
        batcher.close()


def test_the_every_task_load_benchmark_runs(served):
    """benchmarks/server_load.py's burst and soak against this module's server, so that they do not rot; its
    answer check catches a wrong answer."""
    import importlib.util
    import os
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "server_load.py"
    spec = importlib.util.spec_from_file_location("rosetta_bench_server_load_tasks", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    url, _, _ = served
    pool = bench.pools(["generate"])["generate"]
    burst = asyncio.run(bench.burst({"generate": url}, [("generate", pool[i % len(pool)]) for i in range(12)], 60))
    assert burst["requests"] == 12 and burst["distinct"] == len(pool) and burst["mismatches"] == 0
    assert burst["requests_per_s"] > 0 and burst["p99_ms"] >= burst["p50_ms"] > 0
    soak = asyncio.run(bench.soak(url, pool, os.getpid(), total=20, clients=3, warmup=5, timeout=60))
    assert soak["requests"] == 20 and soak["mismatches"] == 0 and len(soak["rss_samples_mib"]) == 10
    assert soak["rss_end_mib"] > 0 and abs(soak["rss_growth_pct"]) < 100
    assert bench.same({"p": [0.5, "a"]}, {"p": [0.500001, "a"]}) and not bench.same([0.5], [0.5001])
    assert not bench.same({"text": "ab"}, {"text": "abc"}) and not bench.same([1, 2], [1, 2, 3])
