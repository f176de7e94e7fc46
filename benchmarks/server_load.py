"""Load test of ``rosetta serve``: throughput and latency with 1, 8 and 32 concurrent clients, batching on/off.

For each setting the server runs in its own process (as in production, and so that the clients' Python does
not share its interpreter lock), on a free loopback port. Each of C clients sends R requests one after the
other (a closed loop: a client waits for its answer before sending the next), each request one sentence
from a list of everyday English sentences. Reported per (batching, C):

    sentences_per_s   answered sentences / wall time of the whole run
    p50_ms, p99_ms    request latency percentiles, as the client sees it
    mean_batch        sentences per model call inside the server (1.0 = no merging happened)

The clients run on the same machine and take some of its CPU: numbers are for "server and load generator on
one box", which is what a 2-core laptop sees too.

    python benchmarks/server_load.py --model runs/tatoeba-en-zh --json server_load.json
    python benchmarks/server_load.py --model runs/tatoeba-en-zh --clients 1,8 --requests 10 --batching on
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
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
    """``rosetta serve`` in a subprocess; ``with Server(...) as url``."""

    def __init__(self, model: str, batching: bool, extra: list[str] | None = None, start_timeout: float = 120):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.cmd = [sys.executable, "-m", "rosetta.cli", "serve", "--model", model, "--port", str(self.port),
                    "--log-level", "warning", *([] if batching else ["--no-batching"]), *(extra or [])]
        self.start_timeout = start_timeout

    def __enter__(self) -> str:
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.proc.stderr.read().decode(errors='replace')[-2000:]}")
            try:
                if httpx.get(f"{self.url}/v1/health", timeout=1).status_code == 200:
                    return self.url
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


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="model or run directory (rosetta serve --model)")
    parser.add_argument("--clients", default="1,8,32", help="comma-separated concurrency levels")
    parser.add_argument("--requests", type=int, default=20, help="requests per client at each level")
    parser.add_argument("--batching", default="on,off", help="on, off or on,off")
    parser.add_argument("--beam", type=int, default=None, help="beam per request (default: the model's)")
    parser.add_argument("--warmup", type=int, default=3, help="requests sent before measuring")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per request before it fails")
    parser.add_argument("--serve-args", default="", help="extra rosetta serve flags, e.g. '--int8'")
    parser.add_argument("--json", type=Path, help="write the report here")
    args = parser.parse_args(argv)
    levels = [int(c) for c in args.clients.split(",")]
    modes = [m.strip() for m in args.batching.split(",")]
    report: dict[str, Any] = {
        "benchmark": "server_load", "model": args.model, "requests_per_client": args.requests, "beam": args.beam,
        "serve_args": args.serve_args,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "environment": {"python": platform.python_version(), "platform": platform.platform(),
                        "cpus": os.cpu_count(), "processor": platform.processor()},
        "results": [],
    }
    print(f"{'batching':>8} {'clients':>7} {'requests':>8} {'sent/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'batch':>6}")
    for mode in modes:
        with Server(args.model, batching=mode == "on", extra=args.serve_args.split()) as url:
            asyncio.run(drive(url, 1, args.warmup, args.beam, args.timeout))  # first calls pay one-off costs
            for clients in levels:
                row = {"batching": mode, **asyncio.run(drive(url, clients, args.requests, args.beam, args.timeout))}
                report["results"].append(row)
                print(f"{mode:>8} {clients:>7} {row['requests']:>8} {row['sentences_per_s']:>8} "
                      f"{row['p50_ms']:>8} {row['p99_ms']:>8} {row['mean_batch']:>6}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    return report


if __name__ == "__main__":
    main()
