"""Metric against wall-clock time from a training run's metrics.jsonl, as a Markdown table.

    python benchmarks/curve.py runs/shakespeare-char [--metric valid_loss]

Rows: every validation record (step, seconds since the run started, the metric, and the training loss logged
closest before it), then the final evaluation of OUT/model. Seconds include evaluation time, as the
``max_minutes`` budget does.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def read_records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines() if line]


def curve(records: list[dict], metric: str) -> list[tuple[int, float, float | None, float]]:
    """(step, seconds since start, last training loss, metric) for every validation record with ``metric``."""
    train = [r for r in records if r["kind"] == "train"]
    if not train:
        raise ValueError("no training records in metrics.jsonl")
    start = train[0]["time"] - train[0]["elapsed"]  # wall-clock time of the run's start
    rows, last_loss = [], None
    for r in records:
        if r["kind"] == "train":
            last_loss = r["loss"]
        elif r["kind"] == "valid" and metric in r:
            rows.append((r["step"], r["time"] - start, last_loss, r[metric]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--metric", default="valid_loss")
    args = parser.parse_args()
    records = read_records(args.run)
    print(f"| step | seconds | train loss | {args.metric} |")
    print("|---:|---:|---:|---:|")
    for step, seconds, loss, value in curve(records, args.metric):
        loss_text = f"{loss:.3f}" if loss is not None else ""
        print(f"| {step} | {seconds:.0f} | {loss_text} | {value:.4f} |")
    final = [r for r in records if r["kind"] == "final"]
    if final:
        f = final[-1]
        values = ", ".join(f"{k} {v:.4f}" for k, v in f["final_metrics"].items() if isinstance(v, float))
        print(f"\nfinal model: {f['steps']} steps, {f['train_seconds']} s ({f['stop_reason']}); {values}")


if __name__ == "__main__":
    main()
