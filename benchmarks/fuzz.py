"""Schema-driven fuzzing of every task's server (Schemathesis): no 5xx, every answer as its OpenAPI schema says,
every 4xx one readable line.

For each task a tiny real model (tests/tiny_models.py, tiny_translator.py, tiny_vit.py; the sentence encoder is
all-MiniLM-L6-v2, whose WordPiece tokenizer is another code path) is served in-process by ``create_app``, the
app's own /openapi.json is loaded with ``schemathesis.openapi.from_asgi``, and every operation gets cases drawn
from its schema: schema-valid ones (GenerationMode.POSITIVE) and schema-invalid ones (NEGATIVE: wrong types,
missing fields, bytes that are not JSON, …), plus the examples the schema documents. Each answer is judged by

    not_a_server_error            no 5xx
    status_code_conformance       the status is one the operation documents
    content_type_conformance      the Content-Type is one documented for that status
    response_schema_conformance   the body matches the documented schema
    negative_data_rejection       a schema-invalid request is refused (4xx), not served
    readable 4xx (ours)           every 4xx is JSON with "error": one non-empty line

(``positive_data_acceptance`` is not run: some schema-valid requests are rightly refused for what a schema cannot
say: base64 that is not a picture, a window past the context's last one. Their counts show as 4xx.)

    python benchmarks/fuzz.py                                # 2,000 cases per task, every task
    python benchmarks/fuzz.py --cases 200 --tasks lm,qa --json fuzz.json

tests/test_fuzz.py runs the same ``fuzz`` on a bounded number of cases per task, and this script on a tiny count.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import datetime
import json
import platform
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hypothesis
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import (  # Schemathesis' built-in checks, by name
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.failures import FailureGroup

from rosetta.server import Settings, create_app

TESTS = Path(__file__).resolve().parents[1] / "tests"  # the tiny models of every task

CHECKS = (not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          negative_data_rejection)
SCHEMA_CHECKS = ("status_code_conformance", "content_type_conformance", "response_schema_conformance")
# Limits small enough that a case takes milliseconds on a tiny model (the schema's shape does not change).
SETTINGS = Settings(max_texts=8, max_chars=120, max_attention_chars=80, max_document_chars=400,
                    max_document_attention_chars=200, max_new_tokens=16, max_image_bytes=200_000,
                    max_image_pixels=250_000)


def load_translator(directory: Path):
    import rosetta

    return rosetta.load(directory)


def tiny_model(task: str):
    """The model served for ``task``: a tiny real one (built once per process)."""
    if str(TESTS) not in sys.path:
        sys.path.insert(0, str(TESTS))
    from tiny_models import tiny_classifier_dir, tiny_lm_dir, tiny_qa_dir, tiny_summariser_dir
    from tiny_translator import tiny_model_dir
    from tiny_vit import tiny_vit_dir

    from rosetta.decode.loading import load_any

    builders: dict[str, Callable[[], Any]] = {
        "translation": lambda: load_translator(tiny_model_dir()),
        "summarisation": lambda: load_translator(tiny_summariser_dir()),
        "text-classification": lambda: load_any(tiny_classifier_dir()),
        "embedding": lambda: load_any("all-MiniLM-L6-v2"),
        "qa": lambda: load_any(tiny_qa_dir()),
        "lm": lambda: load_any(tiny_lm_dir()),
        "image-classification": lambda: load_any(tiny_vit_dir()),
    }
    return builders[task]()


TASKS = ("translation", "summarisation", "text-classification", "embedding", "qa", "lm", "image-classification")


@dataclasses.dataclass
class Report:
    """What one task's fuzz run saw. ``failures`` holds the first case of each distinct (operation, check)."""

    task: str
    cases: int = 0
    statuses: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    server_errors: int = 0
    schema_violations: int = 0
    invalid_accepted: int = 0
    unreadable_4xx: int = 0
    empty_form_values: int = 0
    wall_s: float = 0.0
    failures: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def clean(self) -> bool:
        return not (self.server_errors or self.schema_violations or self.invalid_accepted or self.unreadable_4xx)

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "statuses": {str(k): v for k, v in sorted(self.statuses.items())}}


def unreadable(response) -> str | None:
    """Why a 4xx answer is not {"error": "one readable line"} (None when it is)."""
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        return f"not a JSON object: {response.text[:120]!r}"
    if not isinstance(error, str) or not error.strip() or len(error.splitlines()) != 1:
        return f'"error" is not one non-empty line: {error!r}'
    return None


def form_sends_nothing_invalid(case, failure: FailureGroup) -> bool:
    """Whether a "schema-invalid request accepted" is a form whose invalid value is an empty list or object:
    a form sends no field for those, so the request as sent was valid (Schemathesis 4.32 cannot re-read a form
    with a file in it, and counts these as accepted invalid data)."""
    if not (case.media_type or "").startswith("multipart/form-data") or not isinstance(case.body, dict):
        return False
    empty = [name for name, value in case.body.items() if value in ([], {})]
    return any(f"/properties/{name} " in str(f.message) for f in failure.exceptions for name in empty)


def record(report: Report, case, response) -> None:
    """Count ``response`` and run every check on it; a failure is counted, and its first case kept."""
    report.cases += 1
    report.statuses[response.status_code] += 1
    label = case.operation.label
    for check in CHECKS:
        try:
            case.validate_response(response, checks=[check])
        except FailureGroup as e:  # the check's message says what failed and how to reproduce it
            name = check.__name__
            if name == "negative_data_rejection" and form_sends_nothing_invalid(case, e):
                report.empty_form_values += 1  # not a server fault: shown, not failed
                continue
            if name == "not_a_server_error":
                report.server_errors += 1
            elif name in SCHEMA_CHECKS:
                report.schema_violations += 1
            else:
                report.invalid_accepted += 1
            why = "; ".join(f"{f.title}: {f.message}" for f in e.exceptions).replace("\n", " ")
            report.failures.setdefault(f"{label} {name}", f"{case.body!r:.300} → {response.status_code}: {why}")
    if 400 <= response.status_code < 500 and (why := unreadable(response)):
        report.unreadable_4xx += 1
        report.failures.setdefault(f"{label} readable_4xx", f"{case.body!r:.300} → {response.status_code}: {why}")


def fuzz_operation(report: Report, operation, mode: GenerationMode, examples: int, seed: int) -> None:
    """``examples`` cases of ``operation`` drawn in ``mode``; the same cases every run for a ``seed``."""

    @hypothesis.seed(seed)
    @settings(max_examples=examples, deadline=None, database=None, print_blob=False,
              suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case) -> None:
        record(report, case, case.call())

    run()


def fuzz(app, task: str, cases: int, seed: int = 0) -> Report:
    """About ``cases`` requests to ``app``, spread over its operations and both generation modes."""
    report = Report(task)
    start = time.perf_counter()
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    plan = [(op, mode) for op in operations for mode in GenerationMode
            if op.body or op.query or mode is GenerationMode.POSITIVE]  # nothing to negate in a bare GET
    for i, (op, mode) in enumerate(plan):
        inputs = bool(op.body or op.query)
        fuzz_operation(report, op, mode, max(1, -(-(cases - report.cases) // (len(plan) - i))) if inputs else 1,
                       seed)
    report.wall_s = time.perf_counter() - start
    return report


def fuzz_task(task: str, cases: int, seed: int = 0) -> Report:
    app = create_app(tiny_model(task), SETTINGS)
    try:
        return fuzz(app, task, cases, seed)
    finally:
        app.state.batcher.close()


def table(reports: list[Report]) -> str:
    """A Markdown table of the reports (what RESULTS.md shows)."""
    lines = ["| task | cases | 2xx | 4xx (by status) | 5xx | schema violations | invalid accepted | unreadable 4xx "
             "| wall s |", "|---|---:|---:|---|---:|---:|---:|---:|---:|"]
    for r in reports:
        ok = sum(n for s, n in r.statuses.items() if 200 <= s < 300)
        client = ", ".join(f"{s}: {n}" for s, n in sorted(r.statuses.items()) if 400 <= s < 500)
        lines.append(f"| {r.task} | {r.cases} | {ok} | {client} | {r.server_errors} | {r.schema_violations} | "
                     f"{r.invalid_accepted} | {r.unreadable_4xx} | {r.wall_s:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=2000, help="cases per task (default 2000)")
    parser.add_argument("--tasks", default=",".join(TASKS), help=f"comma-separated, of: {', '.join(TASKS)}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--json", type=Path, help="also write the reports here")
    args = parser.parse_args(argv)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    unknown = sorted(set(tasks) - set(TASKS))
    if unknown:
        parser.error(f"unknown task(s) {', '.join(unknown)}; choose from {', '.join(TASKS)}")

    import torch

    torch.set_num_threads(args.threads)
    # Fuzzed texts are often longer than the tiny translator's positions: it says so each time, and carries on.
    warnings.filterwarnings("ignore", message=r"source of \d+ tokens truncated")
    reports = []
    for task in tasks:
        reports.append(report := fuzz_task(task, args.cases, args.seed))
        print(f"{task}: {report.cases} cases, {report.server_errors} server errors, {report.schema_violations} "
              f"schema violations, {report.wall_s:.0f} s", flush=True)
        for key, failure in report.failures.items():
            print(f"  FAILED {key}: {failure[:1500]}", flush=True)
    print(table(reports))
    if args.json:
        args.json.write_text(json.dumps({
            "date": datetime.date.today().isoformat(), "machine": platform.processor() or platform.machine(),
            "schemathesis": schemathesis.__version__, "cases_per_task": args.cases, "seed": args.seed,
            "reports": [r.to_dict() for r in reports]}, indent=1) + "\n")
    return 0 if all(r.clean for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
