"""Where a decoding step spends its time: torch.profiler over peers.py's decoding workload.

    python benchmarks/profile_decode.py [--beam 4] [--threads 2] [--rows 25] [--precision fp32|bf16|int8]

Decodes peers.py's 64 random sources (≈ 20 tokens) to exactly 30 tokens with the ``small`` architecture and
prints the operators sorted by their own CPU time, plus the wall time of one decode and of the same decode
with no profiler attached (the profiler adds its own per-operator cost).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peers  # noqa: E402

from rosetta.decode import for_inference  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--beam", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch1", action="store_true", help="decode the first source alone (latency)")
    parser.add_argument("--rows", type=int, default=25)
    parser.add_argument("--precision", choices=["fp32", "bf16", "int8"], default="fp32",
                        help="the model as rosetta.decode.for_inference prepares it")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    arch, work = peers.ARCHS["small"], peers.WORKLOADS["full"]
    model = for_inference(peers.build_rosetta(arch).eval(), args.precision)
    sources = peers.decode_sources(arch, work)
    src = peers.pad(sources[:1] if args.batch1 else sources)
    run = peers.rosetta_decoder(model, src, work.out_len, args.beam, torch.device("cpu"))
    run()  # warm-up

    times = []
    for _ in range(3):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    print(f"decode, no profiler: {min(times) * 1e3:.1f} ms (best of 3), "
          f"{src.shape[0] / min(times):.1f} sentences/s")

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        run()
        elapsed = time.perf_counter() - start
    print(f"decode under the profiler: {elapsed * 1e3:.1f} ms")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))


if __name__ == "__main__":
    main()
