"""Commands to look at a model: ``rosetta attention``, ``rosetta serve``, ``rosetta plot positional`` and
``rosetta plot training``. matplotlib, FastAPI and uvicorn are imported inside the commands so that
``rosetta --help`` stays instant."""

from __future__ import annotations

from pathlib import Path

import typer

from rosetta.cli.app import app, fail, load_translator, plot_app


def _formats(value: str) -> tuple[str, ...]:
    formats = tuple(f.strip().lower() for f in value.split(",") if f.strip())
    bad = [f for f in formats if f not in ("png", "svg", "pdf")]
    if bad or not formats:
        fail(f"--format takes png, svg and/or pdf separated by commas, got {value!r}")
    return formats


@app.command("attention")
def attention(
    text: str = typer.Argument(..., help="The sentence to translate, e.g. \"I am a student.\""),
    model: Path = typer.Option(..., "--model", help="Model directory or training run directory."),
    out: Path = typer.Option(Path("attention"), "--out", help="Folder for the figures."),
    layer: int = typer.Option(None, "--layer", help="Only this layer (0-based)."),
    head: int = typer.Option(None, "--head", help="Only this head (0-based); with --layer: one map."),
    kind: str = typer.Option(None, "--kind", help="cross, encoder or decoder (default: all three)."),
    beam: int = typer.Option(None, "--beam", help="Beam size for the translation (default: the model's)."),
    fmt: str = typer.Option("png,svg", "--format", help="Comma-separated: png, svg, pdf."),
    device: str = typer.Option("cpu", "--device"),
) -> None:
    """Translate TEXT and draw its attention: every head of every layer, tokens on both axes."""
    formats = _formats(fmt)
    if kind is not None and kind not in ("cross", "encoder", "decoder"):
        fail(f"--kind must be cross, encoder or decoder, got {kind!r}")
    translator = load_translator(model, device)
    from rosetta.view import plots

    result = translator.attention(text, beam=beam)
    try:
        paths = plots.write_attention_plots(result, out, layer=layer, head=head, kind=kind, formats=formats)
    except ValueError as e:
        fail(str(e))
    typer.echo(f"{text}  →  {result['translation']}")
    for path in paths:
        typer.echo(f"wrote {path}")


@app.command("serve")
def serve(
    model: Path = typer.Option(..., "--model", help="Model directory or training run directory."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0: every interface)."),
    port: int = typer.Option(8000, "--port"),
    max_texts: int = typer.Option(64, "--max-texts", help="Most texts in one /v1/translate request."),
    max_chars: int = typer.Option(1000, "--max-chars", help="Most characters in one text."),
    max_batch: int = typer.Option(64, "--max-batch", help="Most sentences merged into one model call."),
    no_batching: bool = typer.Option(False, "--no-batching", help="Run every request alone (no merging)."),
    int8: bool = typer.Option(False, "--int8", help="Dynamic int8 quantization (CPU)."),
    device: str = typer.Option("cpu", "--device"),
    log_level: str = typer.Option("info", "--log-level", help="uvicorn's: critical, error, warning, info."),
) -> None:
    """Serve a model over HTTP: the JSON API under /v1, the attention explorer at /, OpenAPI at /docs."""
    import uvicorn

    from rosetta.server import Settings, create_app

    if min(max_texts, max_chars, max_batch) < 1:
        fail("--max-texts, --max-chars and --max-batch must be at least 1")
    translator = load_translator(model, device, int8)
    settings = Settings(max_texts=max_texts, max_chars=max_chars, max_batch=max_batch, batching=not no_batching)
    app = create_app(translator, settings)
    typer.echo(f"serving {model} at http://{host}:{port}/  (API docs: http://{host}:{port}/docs)")
    uvicorn.run(app, host=host, port=port, log_level=log_level)


@plot_app.command("positional")
def plot_positional(
    d_model: int = typer.Option(128, "--d-model", help="Model width (columns of the table)."),
    length: int = typer.Option(100, "--length", help="Positions (rows of the table)."),
    out: Path = typer.Option(Path("positional"), "--out",
                             help="A folder (gets positional.png and .svg) or a file name ending .png/.svg/.pdf."),
) -> None:
    """The sinusoidal positional encoding: the table as a heatmap and a few dimensions as curves."""
    if d_model < 2 or length < 1:
        fail("--d-model must be at least 2 and --length at least 1")
    from rosetta.view import plots

    for path in plots.save_figure(plots.positional_figure(d_model, length), _target(out, "positional")):
        typer.echo(f"wrote {path}")


@plot_app.command("training")
def plot_training(
    run_dir: Path = typer.Argument(..., help="A training run directory (holding metrics.jsonl)."),
    out: Path = typer.Option(None, "--out", help="A folder or a .png/.svg/.pdf file (default: RUN_DIR)."),
) -> None:
    """Training curves from RUN_DIR/metrics.jsonl: loss, validation BLEU, learning rate."""
    from rosetta.view import plots

    try:
        fig = plots.training_figure(run_dir)
    except (ValueError, FileNotFoundError) as e:
        fail(str(e))
    for path in plots.save_figure(fig, _target(out or run_dir, "training")):
        typer.echo(f"wrote {path}")


def _target(out: Path, name: str) -> Path:
    """``out`` itself if it names a figure file, else ``out/name`` (both formats)."""
    return out if out.suffix.lower() in (".png", ".svg", ".pdf") else out / name
