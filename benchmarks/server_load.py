"""Load tests of ``rosetta serve``: the translation batching table, and every task's server under load.

Every server runs in its own process (as in production, and so that the clients' Python does not share its
interpreter lock), on a free port of 127.0.0.1 only. The clients run on the same machine and take some of
its CPU: numbers are for "server and load generator on one box", which is what a 2-core laptop sees too.

**The batching table** (``--model``): each of C clients sends R one-sentence requests one after the other (a
closed loop), everyday English sentences; per (batching on/off, C): sentences_per_s, p50_ms and p99_ms as the
client sees them, mean_batch (sentences per model call inside the server; 1.0 = no merging happened).

**Every task** (``--tasks``): translation, summarisation, classification, embedding, question answering,
language-model generation (streamed and not) and ViT image classification, each its own server, serving the
models of ``--models task=DIR,…`` or, by default, the tests' tiny trained models (tests/tiny_*.py, built in
a few seconds). Each task's requests are drawn from a few distinct ones (several endpoints, options and
body kinds); each distinct request is first sent alone, then ``--requests`` (300) of them at once, and every
answer must equal the one its request got alone (floats to 1e-5). Then a mixed run: 300 requests over all
the servers at once. Reported: requests_per_s, p50_ms, p99_ms, mismatches.

**Soak** (``--tasks … --soak 10000``): per server, a warm-up, then 10,000 requests from 8 closed-loop clients;
the server process's resident memory (/proc/PID/status VmRSS) after the warm-up, every tenth of the run
and at the end: rss_growth_pct = (end − after warm-up) / after warm-up.

    python benchmarks/server_load.py --model runs/tatoeba-en-zh --json server_load.json
    python benchmarks/server_load.py --model runs/tatoeba-en-zh --clients 1,8 --requests 10 --batching on
    python benchmarks/server_load.py --tasks all --json every_task.json
    python benchmarks/server_load.py --tasks all --soak 10000 --json soak.json
    python benchmarks/server_load.py --tasks classification,qa --models classification=runs/sst2,qa=runs/squad
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import datetime
import json
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

# Written for this benchmark (not corpus text): short, everyday sentences of 3 to 12 words.
SENTENCES = [
    "I am a student.", "How are you today?", "Where is the train station?", "The weather is nice today.",
    "I like to read books in the evening.", "Can you help me carry this bag?", "My brother works in a hospital.",
    "We are going to the beach tomorrow.", "She bought three apples at the market.", "Please close the window.",
    "This coffee is too hot to drink.", "He has lived here for ten years.", "What time does the shop open?",
    "I forgot my umbrella at home.", "The children are playing in the park.", "Do you speak English?",
    "It is raining again.", "They will visit their grandmother next week.", "Turn left at the second corner.",
    "I have never seen such a big dog.", "The meeting was moved to Friday afternoon.", "Thank you very much.",
    "Could you speak a little more slowly?", "My phone battery is almost empty.",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``rosetta serve`` in a subprocess (on 127.0.0.1: its default); ``with Server(...) as server``: its
    ``url``, and ``proc.pid`` the server process itself (whose memory a soak samples)."""

    def __init__(self, model: str, batching: bool, extra: list[str] | None = None, start_timeout: float = 120,
                 threads: int | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.cmd = [sys.executable, "-m", "rosetta.cli", "serve", "--model", model, "--port", str(self.port),
                    "--log-level", "warning", *([] if batching else ["--no-batching"]), *(extra or [])]
        self.start_timeout = start_timeout
        self.env = {**os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {})}  # torch's threads

    def __enter__(self) -> Server:
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=self.env)
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.proc.stderr.read().decode(errors='replace')[-2000:]}")
            try:
                if httpx.get(f"{self.url}/v1/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.__exit__()
        raise RuntimeError(f"server did not answer on {self.url} within {self.start_timeout} s")

    def __exit__(self, *exc: Any) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


async def drive(url: str, clients: int, requests: int, beam: int | None, timeout: float) -> dict[str, Any]:
    """``clients`` closed-loop clients × ``requests`` single-sentence requests each; latencies in ms.

    Each client has its own connection (its own httpx client): one shared pool of many connections is
    itself a bottleneck in httpx at 32 concurrent requests and would be measured instead of the server."""
    latencies: list[float] = []
    sessions = [httpx.AsyncClient(base_url=url, timeout=timeout) for _ in range(clients)]
    try:
        # open every connection first, so that connection set-up is not counted as latency
        await asyncio.gather(*[s.post("/v1/translate", json={"texts": ["Hello."]}) for s in sessions])
        before = (await sessions[0].get("/v1/health")).json()

        async def one_client(c: int) -> None:
            for r in range(requests):
                body = {"texts": [SENTENCES[(c * requests + r) % len(SENTENCES)]], **({"beam": beam} if beam else {})}
                start = time.perf_counter()
                response = await sessions[c].post("/v1/translate", json=body)
                latencies.append((time.perf_counter() - start) * 1000)
                response.raise_for_status()

        start = time.perf_counter()
        await asyncio.gather(*[one_client(c) for c in range(clients)])
        wall = time.perf_counter() - start
        after = (await sessions[0].get("/v1/health")).json()
    finally:
        await asyncio.gather(*[s.aclose() for s in sessions])
    calls = after["model_calls"] - before["model_calls"]
    sentences = after["sentences"] - before["sentences"]
    cuts = statistics.quantiles(latencies, n=100, method="inclusive") if len(latencies) > 1 else latencies * 99
    return {"clients": clients, "requests": clients * requests, "seconds": round(wall, 3),
            "sentences_per_s": round(clients * requests / wall, 2), "p50_ms": round(statistics.median(latencies), 1),
            "p99_ms": round(cuts[98], 1), "mean_batch": round(sentences / max(calls, 1), 2)}


# ---------------------------------------------------------------------------------------------- every task
# A request: (path, httpx keyword arguments: json=… or content=… with headers). Each pool holds the few
# distinct requests of one task's server; a run draws its requests from it, so each can first be sent alone.
Request = tuple[str, dict[str, Any]]
TASKS = ("translation", "summarisation", "classification", "embedding", "qa", "generate", "vit")


def pools(tasks: list[str], seed: int = 0) -> dict[str, list[Request]]:
    """The distinct requests of each of ``tasks``, built from the tiny models' own made-up texts (tests/)."""
    from tiny_models import CONTEXTS, QUESTIONS, REVIEWS
    from tiny_translator import SENTENCES as PAIRS_EN

    rng = random.Random(seed)
    reviews = [t for t, _ in REVIEWS]

    def some(texts: list[str], k: int) -> list[list[str]]:
        return [rng.sample(texts, rng.choice([1, 1, 2, 3])) for _ in range(k)]

    def pictures() -> list[Request]:  # scikit-learn's digits (its import takes seconds: only when asked for)
        from tiny_vit import digit_picture, encode

        png = [encode(digit_picture(i)[0]) for i in range(6)]
        return [("/v1/classify", {"json": {"image": base64.b64encode(p).decode(), "top_k": 3}}) for p in png[:3]] + [
            ("/v1/classify", {"content": p, "headers": {"content-type": "image/png"}}) for p in png[3:]]

    make = {
        "translation": lambda: [("/v1/translate", {"json": {"texts": t, **({"beam": 2} if i % 3 == 0 else {})}})
                                for i, t in enumerate(some(PAIRS_EN, 8))] + [
            ("/v1/attention", {"json": {"text": "How are you?"}})],
        "summarisation": lambda: [("/v1/summarise", {"json": {"texts": t}}) for t in some(PAIRS_EN, 6)] + [
            ("/v1/attention", {"json": {"text": "It is raining today.", "kinds": ["cross"]}})],
        "classification": lambda: [("/v1/classify", {"json": {"texts": t}}) for t in some(reviews, 8)] + [
            ("/v1/attention", {"json": {"text": "a wonderful film"}})],
        "embedding": lambda: [("/v1/embed", {"json": {"texts": t, "normalize": i % 2 == 0}})
                              for i, t in enumerate(some(reviews, 8))],
        "qa": lambda: [("/v1/answer", {"json": {"question": q, "context": c}}) for q in QUESTIONS for c in CONTEXTS]
        + [("/v1/attention", {"json": {"question": QUESTIONS[0], "context": CONTEXTS[0]}})],
        "generate": lambda: [("/v1/generate", {"json": {"prompt": p, "max_new_tokens": 12, "seed": i,
                                                        "stream": i % 2 == 0}})
                             for i, p in enumerate(["the ", "a cat", "", "the dog", "fox"])],
        "vit": pictures,
    }
    return {task: make[task]() for task in tasks}


def tiny_models(root: Path, tasks: list[str]) -> dict[str, Path]:
    """Build the tests' tiny trained models of ``tasks`` (a few seconds each) under ``root``: task → directory."""
    from tiny_models import build_tiny_classifier, build_tiny_lm, build_tiny_qa, build_tiny_summariser
    from tiny_translator import build_tiny_model
    from tiny_vit import build_tiny_vit

    builders = {"translation": build_tiny_model, "summarisation": build_tiny_summariser, "qa": build_tiny_qa,
                "classification": build_tiny_classifier, "embedding": build_tiny_classifier,
                "generate": build_tiny_lm, "vit": build_tiny_vit}
    built: dict[str, Path] = {}
    for task in tasks:
        twin = "classification" if task == "embedding" else "embedding" if task == "classification" else None
        built[task] = built.get(twin) or builders[task](root / task)  # one classifier serves both
    return built


def answer(response: httpx.Response) -> Any:
    """JSON, or the NDJSON lines of a streamed generation."""
    if response.headers.get("content-type", "").startswith("application/x-ndjson"):
        return [json.loads(line) for line in response.text.splitlines()]
    return response.json()


def same(got: Any, expected: Any) -> bool:
    """Exact, except floats to 1e-5 (a merged batch may sum the same numbers in another order)."""
    if isinstance(expected, float) and isinstance(got, int | float):
        return abs(got - expected) <= 1e-5
    if isinstance(expected, dict):
        return isinstance(got, dict) and got.keys() == expected.keys() and all(same(got[k], expected[k]) for k in got)
    if isinstance(expected, list):
        return isinstance(got, list) and len(got) == len(expected) and all(map(same, got, expected))
    return got == expected


def rss_kib(pid: int) -> int:
    """The resident memory of process ``pid`` (Linux /proc), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


def percentiles(latencies: list[float], wall: float) -> dict[str, float]:
    cuts = statistics.quantiles(latencies, n=100, method="inclusive") if len(latencies) > 1 else latencies * 99
    return {"requests_per_s": round(len(latencies) / wall, 1), "p50_ms": round(statistics.median(latencies), 1),
            "p99_ms": round(cuts[98], 1)}


async def burst(urls: dict[str, str], requests: list[tuple[str, Request]], timeout: float) -> dict[str, Any]:
    """Each distinct request alone, one after the other (the reference answers); then all ``requests`` at once,
    over connections opened beforehand. Every answer is compared with its reference."""
    async with httpx.AsyncClient(timeout=timeout, limits=httpx.Limits(max_connections=len(requests) + 50)) as client:
        singles: dict[str, Any] = {}
        for task, (path, kwargs) in requests:
            key = repr((task, path, kwargs))
            if key not in singles:
                singles[key] = answer((await client.post(urls[task] + path, **kwargs)).raise_for_status())
        await asyncio.gather(*[client.get(urls[task] + "/v1/health") for task, _ in requests])  # open them

        async def one(task: str, path: str, kwargs: dict[str, Any]) -> tuple[float, bool]:
            start = time.perf_counter()
            response = await client.post(urls[task] + path, **kwargs)
            ms = (time.perf_counter() - start) * 1000
            return ms, response.status_code == 200 and same(answer(response), singles[repr((task, path, kwargs))])

        start = time.perf_counter()
        results = await asyncio.gather(*[one(task, path, kwargs) for task, (path, kwargs) in requests])
        wall = time.perf_counter() - start
    return {"requests": len(requests), "distinct": len(singles), "seconds": round(wall, 2),
            **percentiles([ms for ms, _ in results], wall), "mismatches": sum(not ok for _, ok in results)}


async def soak(url: str, pool: list[Request], pid: int, total: int, clients: int, warmup: int,
               timeout: float) -> dict[str, Any]:
    """``warmup`` requests, then ``total`` more from ``clients`` closed-loop clients, cycling through ``pool``;
    the server's RSS after the warm-up, after every tenth of the run and at the end. Every answer is compared
    with the one the same request got alone."""
    async with httpx.AsyncClient(base_url=url, timeout=timeout, limits=httpx.Limits(max_connections=clients)) as c:
        singles = [answer((await c.post(path, **kwargs)).raise_for_status()) for path, kwargs in pool]
        latencies: list[float] = []
        counts = {"sent": 0, "wrong": 0}

        async def closed_loop(n: int, samples: list[int] | None) -> None:
            while counts["sent"] < n:
                i = counts["sent"] % len(pool)
                counts["sent"] += 1
                if samples is not None and counts["sent"] % max(n // 10, 1) == 0:
                    samples.append(rss_kib(pid))
                start = time.perf_counter()
                response = await c.post(pool[i][0], **pool[i][1])
                latencies.append((time.perf_counter() - start) * 1000)
                counts["wrong"] += response.status_code != 200 or not same(answer(response), singles[i])

        await asyncio.gather(*[closed_loop(warmup, None) for _ in range(clients)])
        before, samples = rss_kib(pid), []
        counts["sent"], latencies[:] = 0, []
        start = time.perf_counter()
        await asyncio.gather(*[closed_loop(total, samples) for _ in range(clients)])
        wall, after = time.perf_counter() - start, rss_kib(pid)
    return {"requests": len(latencies), "seconds": round(wall, 1), **percentiles(latencies, wall),
            "mismatches": counts["wrong"], "rss_after_warmup_mib": round(before / 1024, 1),
            "rss_end_mib": round(after / 1024, 1), "rss_max_mib": round(max([after, *samples]) / 1024, 1),
            "rss_samples_mib": [round(k / 1024, 1) for k in samples], "rss_growth_pct": round(100 * (after - before)
                                                                                              / before, 2)}


def every_task(args: argparse.Namespace, report: dict[str, Any]) -> None:
    """Each task's server in its own process: ``--requests`` concurrent requests (or a ``--soak``); then, with
    every server up at once, a mixed burst over all of them."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # the tiny models' builders
    tasks = list(TASKS) if args.tasks == "all" else args.tasks.split(",")
    given = dict(item.split("=", 1) for item in args.models.split(",") if item)
    rng, all_pools = random.Random(args.seed), pools(tasks, args.seed)
    with tempfile.TemporaryDirectory(prefix="rosetta-load-") as tmp, contextlib.ExitStack() as stack:
        built = tiny_models(Path(tmp), [t for t in tasks if t not in given])
        models = {task: str(given.get(task) or built[task]) for task in tasks}
        report["models"] = {t: m if t in given else f"tiny ({t}, tests/)" for t, m in models.items()}
        servers = {task: stack.enter_context(Server(models[task], True, args.serve_args.split(), threads=args.threads))
                   for task in tasks}
        urls = {task: server.url for task, server in servers.items()}
        runs = [*tasks, "mixed"] if len(tasks) > 1 and not args.soak else tasks
        print(f"{'task':>15} {'requests':>8} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8} {'wrong':>5}"
              + (f" {'RSS MiB':>8} {'growth %':>8}" if args.soak else ""))
        for run in runs:
            if args.soak:
                row = asyncio.run(soak(urls[run], all_pools[run], servers[run].proc.pid, args.soak, args.soak_clients,
                                       args.soak_warmup, args.timeout))
            else:
                names = tasks if run == "mixed" else [run]
                requests = [(t, rng.choice(all_pools[t])) for t in rng.choices(names, k=args.requests)]
                row = asyncio.run(burst(urls, requests, args.timeout))
            report["results"].append({"task": run, **row})
            print(f"{run:>15} {row['requests']:>8} {row['requests_per_s']:>7} {row['p50_ms']:>8} {row['p99_ms']:>8} "
                  f"{row['mismatches']:>5}" + (f" {row['rss_end_mib']:>8} {row['rss_growth_pct']:>8}"
                                                if args.soak else ""), flush=True)



def levels(args: argparse.Namespace, report: dict[str, Any]) -> None:
    """The translation table: ``--model`` served with batching on and off, at each ``--clients`` level."""
    print(f"{'batching':>8} {'clients':>7} {'requests':>8} {'sent/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'batch':>6}")
    for mode in [m.strip() for m in args.batching.split(",")]:
        with Server(args.model, mode == "on", args.serve_args.split(), threads=args.threads) as server:
            url = server.url
            asyncio.run(drive(url, 1, args.warmup, args.beam, args.timeout))  # first calls pay one-off costs
            for clients in [int(c) for c in args.clients.split(",")]:
                row = {"batching": mode, **asyncio.run(drive(url, clients, args.requests, args.beam, args.timeout))}
                report["results"].append(row)
                print(f"{mode:>8} {clients:>7} {row['requests']:>8} {row['sentences_per_s']:>8} "
                      f"{row['p50_ms']:>8} {row['p99_ms']:>8} {row['mean_batch']:>6}", flush=True)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="translation model or run directory: the batching table")
    parser.add_argument("--tasks", help="every task instead: 'all' or a comma list of " + ", ".join(TASKS))
    parser.add_argument("--models", default="", help="with --tasks: task=DIR,… to serve (default: tiny models)")
    parser.add_argument("--soak", type=int, default=0, help="with --tasks: N requests per server, RSS sampled")
    parser.add_argument("--clients", default="1,8,32", help="comma-separated concurrency levels (--model)")
    parser.add_argument("--requests", type=int, default=None,
                        help="requests per client at each level (--model, default 20); concurrent requests per "
                             "task (--tasks, default 300)")
    parser.add_argument("--batching", default="on,off", help="on, off or on,off (--model)")
    parser.add_argument("--beam", type=int, default=None, help="beam per request (default: the model's)")
    parser.add_argument("--warmup", type=int, default=3, help="requests sent before measuring (--model)")
    parser.add_argument("--soak-clients", type=int, default=8, help="closed-loop clients of a --soak")
    parser.add_argument("--soak-warmup", type=int, default=500, help="requests before the first RSS sample")
    parser.add_argument("--seed", type=int, default=0, help="which requests are drawn (--tasks)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per request before it fails")
    parser.add_argument("--threads", type=int, default=None, help="torch threads of each server (OMP_NUM_THREADS; "
                                                                     "default: torch's, one per core)")
    parser.add_argument("--serve-args", default="", help="extra rosetta serve flags, e.g. '--int8'")
    parser.add_argument("--json", type=Path, help="write the report here")
    args = parser.parse_args(argv)
    if not (args.model or args.tasks):
        parser.error("give --model DIR (the translation batching table) or --tasks all (every task)")
    args.requests = args.requests or (300 if args.tasks else 20)
    report: dict[str, Any] = {
        "benchmark": "server_load", "model": args.model, "tasks": args.tasks, "requests": args.requests,
        "soak": args.soak, "beam": args.beam, "serve_args": args.serve_args, "threads": args.threads,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "environment": {"python": platform.python_version(), "platform": platform.platform(),
                        "cpus": os.cpu_count(), "processor": platform.processor()},
        "results": [],
    }
    if args.tasks:
        every_task(args, report)
    else:
        levels(args, report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    return report


if __name__ == "__main__":
    main()
