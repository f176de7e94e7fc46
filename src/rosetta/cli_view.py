"""Commands to look at a model: ``rosetta attention``, ``rosetta serve``, ``rosetta plot positional`` and
``rosetta plot training``. ``rosetta.cli`` calls ``register(app, plot_app)`` at import time; matplotlib,
FastAPI and uvicorn are imported inside the commands so that ``rosetta --help`` stays instant."""

from __future__ import annotations

from pathlib import Path

import typer


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def _formats(value: str) -> tuple[str, ...]:
    formats = tuple(f.strip().lower() for f in value.split(",") if f.strip())
    bad = [f for f in formats if f not in ("png", "svg", "pdf")]
    if bad or not formats:
        _fail(f"--format takes png, svg and/or pdf separated by commas, got {value!r}")
    return formats


def _load(model: Path, device: str = "cpu", int8: bool = False):
    import rosetta

    try:
        return rosetta.load(model, device=device, int8=int8)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        _fail(str(e))


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
        _fail(f"--kind must be cross, encoder or decoder, got {kind!r}")
    translator = _load(model, device)
    from rosetta import plots

    result = translator.attention(text, beam=beam)
    try:
        paths = plots.write_attention_plots(result, out, layer=layer, head=head, kind=kind, formats=formats)
    except ValueError as e:
        _fail(str(e))
    typer.echo(f"{text}  →  {result['translation']}")
    for path in paths:
        typer.echo(f"wrote {path}")


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
        _fail("--max-texts, --max-chars and --max-batch must be at least 1")
    translator = _load(model, device, int8)
    settings = Settings(max_texts=max_texts, max_chars=max_chars, max_batch=max_batch, batching=not no_batching)
    app = create_app(translator, settings)
    typer.echo(f"serving {model} at http://{host}:{port}/  (API docs: http://{host}:{port}/docs)")
    uvicorn.run(app, host=host, port=port, log_level=log_level)


def plot_positional(
    d_model: int = typer.Option(128, "--d-model", help="Model width (columns of the table)."),
    length: int = typer.Option(100, "--length", help="Positions (rows of the table)."),
    out: Path = typer.Option(Path("positional"), "--out",
                             help="A folder (gets positional.png and .svg) or a file name ending .png/.svg/.pdf."),
) -> None:
    """The sinusoidal positional encoding: the table as a heatmap and a few dimensions as curves."""
    if d_model < 2 or length < 1:
        _fail("--d-model must be at least 2 and --length at least 1")
    from rosetta import plots

    for path in plots.save_figure(plots.positional_figure(d_model, length), _target(out, "positional")):
        typer.echo(f"wrote {path}")


def plot_training(
    run_dir: Path = typer.Argument(..., help="A training run directory (holding metrics.jsonl)."),
    out: Path = typer.Option(None, "--out", help="A folder or a .png/.svg/.pdf file (default: RUN_DIR)."),
) -> None:
    """Training curves from RUN_DIR/metrics.jsonl: loss, validation BLEU, learning rate."""
    from rosetta import plots

    try:
        fig = plots.training_figure(run_dir)
    except (ValueError, FileNotFoundError) as e:
        _fail(str(e))
    for path in plots.save_figure(fig, _target(out or run_dir, "training")):
        typer.echo(f"wrote {path}")


def _target(out: Path, name: str) -> Path:
    """``out`` itself if it names a figure file, else ``out/name`` (both formats)."""
    return out if out.suffix.lower() in (".png", ".svg", ".pdf") else out / name


def register(app: typer.Typer, plot_app: typer.Typer) -> None:
    app.command("attention")(attention)
    app.command("serve")(serve)
    plot_app.command("positional")(plot_positional)
    plot_app.command("training")(plot_training)
