"""What a training run reports as it goes: the JSONL metrics log (OUT/metrics.jsonl) and the progress bar."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from rosetta import checkpoint as ckpt


class MetricsLog:
    """Append-only JSONL log: one JSON object per line, flushed as written."""

    def __init__(self, path: Path, enabled: bool):
        self.path, self.enabled = path, enabled

    def write(self, **record: Any) -> None:
        if self.enabled:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps({"time": round(time.time(), 3), **record}) + "\n")

    def rewind(self, step: int) -> None:
        """Keep only the records up to ``step``, the resumed checkpoint's: the steps a killed run did after it are
        about to be redone, a line it left half written is dropped, and so is a final record (a new one comes)."""
        if not (self.enabled and self.path.exists()):
            return
        kept = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # the last line, cut short by the kill
            if record.get("kind") != "final" and record.get("step", 0) <= step:
                kept.append(line + "\n")
        ckpt.atomic_write_text(self.path, "".join(kept))


class ProgressBar:
    """rich progress bar with loss, learning rate, tokens/s and ETA (silent when disabled)."""

    def __init__(self, total: int, start: int, enabled: bool):
        self.enabled = enabled
        if enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            self.progress = Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
                                     TextColumn("{task.fields[info]}"), transient=False)
            self.task = self.progress.add_task("train", total=total, completed=start, info="")

    def __enter__(self):
        if self.enabled:
            self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        if self.enabled:
            self.progress.__exit__(*exc)

    def update(self, step: int, stats: dict[str, float], eta: float | None) -> None:
        if self.enabled:
            eta_text = f"{eta / 60:5.1f} min" if eta is not None else "?"
            info = (f"loss {stats['loss']:.3f}  lr {stats['lr']:.2e}  "
                    f"{stats.get('tokens_per_s', 0):,.0f} tok/s  ETA {eta_text}")
            self.progress.update(self.task, completed=step, info=info)

    def note(self, step: int, metrics: dict[str, float]) -> None:
        if self.enabled:
            text = "  ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items())
            self.progress.console.print(f"step {step}: {text}")
