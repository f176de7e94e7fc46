"""``rosetta summarise`` (documents → one-line summaries) and what ``rosetta evaluate`` does for summarisation:
ROUGE-1/2/L on a corpus split for a trained summariser, or for a baseline (``--model lead-1`` / ``oracle``)."""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import typer

from rosetta.cli.app import app, fail, load_translator, read_lines

BASELINE_NAMES = ("lead-1", "oracle")


def _load_summariser(model: Path, device: str):
    from rosetta.checkpoint import model_task

    translator = load_translator(model, device)
    task = model_task(translator.info)
    # a Hugging Face text-to-text directory (BART, T5) summarises as it translates: with its generation_config.json
    if task != "summarisation" and translator.info.get("source") != "huggingface":
        fail(f"{model} holds a {task!r} model, not a summariser (config.json \"task\"); "
             "use rosetta translate for translation models")
    return translator


@app.command()
def summarise(
    inputs: list[str] = typer.Argument(None, metavar="FILE|TEXT",
                                       help="A file with one document a line, or documents as arguments; "
                                            "none: read standard input, one document a line."),
    model: Path = typer.Option(..., "--model", help="A summariser's model or training run directory."),
    beam: int = typer.Option(None, "--beam", help="Beam size (1 = greedy; default: the model's [decode])."),
    length_penalty: float = typer.Option(None, "--length-penalty",
                                         help="α of the length penalty ((5 + |Y|) / 6)^α (default: the model's)."),
    no_repeat_ngram_size: int = typer.Option(None, "--no-repeat-ngram-size",
                                             help="No n-gram twice in a summary (0 = off; default: the model's)."),
    max_length: int = typer.Option(None, "--max-length", help="At most this many summary tokens."),
    device: str = typer.Option("cpu", "--device"),
) -> None:
    """Summarise documents: one summary per line, in input order (an empty line gives an empty one)."""
    for name, value in (("--beam", beam), ("--max-length", max_length)):
        if value is not None and value < 1:
            fail(f"{name} must be at least 1, got {value}")
    if no_repeat_ngram_size is not None and no_repeat_ngram_size < 0:
        fail(f"--no-repeat-ngram-size must be 0 (off) or more, got {no_repeat_ngram_size}")
    if inputs and len(inputs) == 1 and Path(inputs[0]).is_file():
        documents = read_lines(Path(inputs[0]))
    else:
        documents = list(inputs) if inputs else read_lines(None)
    translator = _load_summariser(model, device)
    summaries = translator.translate(documents, beam=beam, max_length=max_length, length_penalty=length_penalty,
                                     no_repeat_ngram_size=no_repeat_ngram_size)
    for line in summaries:
        typer.echo(line)


def wants_summaries(model: Path, corpus: str | None) -> bool:
    """``rosetta evaluate`` is about summaries: a baseline name, a summarisation corpus, or a summariser."""
    from rosetta import checkpoint as ckpt
    from rosetta.data.registry import REGISTRY

    if str(model).lower() in BASELINE_NAMES:
        return True
    if corpus in REGISTRY and REGISTRY[corpus].task == "summarisation":
        return True
    try:
        return ckpt.model_task(ckpt.read_config(ckpt.resolve_model_dir(model))) == "summarisation"
    except (ckpt.CheckpointError, OSError, ValueError):
        return False


def evaluate_summaries(model: Path, corpus: str | None, split: str, beam: int | None, limit: int | None,
                       output: Path | None, as_json: bool, data_dir: Path | None, device: str) -> None:
    """ROUGE-1/2/L (rouge-score, stemming, best reference by ROUGE-1) of a summariser or a baseline on the
    documents of ``corpus`` / ``split`` (valid: the repeats of train dropped)."""
    from rosetta.data.summaries import load_summaries
    from rosetta.tasks.summarise import baseline_summaries, score_summaries

    if not corpus:
        fail("give --corpus NAME (e.g. scitldr) and --split valid to evaluate summaries")
    try:
        docs = load_summaries(corpus, split, data_dir)[:limit]
    except (ValueError, FileNotFoundError) as e:
        fail(str(e))
    start, name = time.time(), str(model).lower()
    if name in BASELINE_NAMES:
        summaries, settings = baseline_summaries(docs, name), {"baseline": name}
    else:
        translator = _load_summariser(model, device)
        with warnings.catch_warnings(record=True) as cut:  # long abstracts are cut: counted, not one line each
            warnings.simplefilter("always")
            summaries = translator.translate([doc.text for doc in docs], beam=beam)
        options, n_cut = translator.decode_options, sum("truncated" in str(w.message) for w in cut)
        settings = {"beam": beam or options.beam, "length_penalty": options.length_penalty,
                    "no_repeat_ngram_size": options.no_repeat_ngram_size,
                    f"sources cut to {translator.max_src_tokens} tokens": n_cut}
    seconds = time.time() - start
    if output:
        output.write_text("\n".join(summaries) + "\n", encoding="utf-8")
    result = score_summaries(summaries, docs)
    if as_json:
        typer.echo(json.dumps({**result.to_dict(), **settings, "corpus": corpus, "split": split,
                               "seconds": round(seconds, 2)}))
    else:
        typer.echo(f"{result}\n  {', '.join(f'{k} {v}' for k, v in settings.items())}; {seconds:.1f} s")
