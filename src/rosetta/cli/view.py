"""Commands to look at a model: ``rosetta attention``, ``rosetta serve``, ``rosetta plot positional`` and
``rosetta plot training``. matplotlib, FastAPI and uvicorn are imported inside the commands so that
``rosetta --help`` stays instant."""

from __future__ import annotations

from pathlib import Path

import typer

from rosetta.cli.app import PRECISION_HELP, app, fail, load_model, load_translator, model_family, plot_app


def _formats(value: str) -> tuple[str, ...]:
    formats = tuple(f.strip().lower() for f in value.split(",") if f.strip())
    bad = [f for f in formats if f not in ("png", "svg", "pdf")]
    if bad or not formats:
        fail(f"--format takes png, svg and/or pdf separated by commas, got {value!r}")
    return formats


@app.command("attention")
def attention(
    text: str = typer.Argument(..., metavar="TEXT|IMAGE",
                               help="The sentence to translate, e.g. \"I am a student.\"; for an image model "
                                    "(ViT): the picture, a PNG or JPEG file."),
    model: Path = typer.Option(..., "--model", help="Model directory or training run directory."),
    out: Path = typer.Option(Path("attention"), "--out", help="Folder for the figures."),
    layer: int = typer.Option(None, "--layer", help="Only this layer (0-based)."),
    head: int = typer.Option(None, "--head", help="Only this head (0-based); with --layer: one map."),
    kind: str = typer.Option(None, "--kind", help="cross, encoder or decoder (default: all three)."),
    beam: int = typer.Option(None, "--beam", help="Beam size for the translation (default: the model's)."),
    fmt: str = typer.Option(None, "--format",
                            help="Comma-separated: png, svg, pdf (default: png,svg; png for an image model)."),
    device: str = typer.Option("cpu", "--device"),
) -> None:
    """Translate TEXT and draw its attention: every head of every layer, tokens on both axes.

    With an image model (ViT), IMAGE is classified and the [CLS] attention of every layer and head is drawn
    over it (layers.png), with the attention rollout through all layers (rollout.png)."""
    if model_family(model) == "vit":
        if kind is not None or beam is not None:
            fail(f"--kind and --beam are for translation models; {model} holds an image model (ViT)")
        from rosetta.cli.vision import image_attention

        image_attention(model, text, out, layer, head, _formats(fmt or "png"), device)
        return
    formats = _formats(fmt or "png,svg")
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
    max_image_bytes: int = typer.Option(5_000_000, "--max-image-bytes",
                                        help="Largest picture /v1/classify accepts (image models)."),
    int8: bool = typer.Option(False, "--int8", help="Dynamic int8 quantization (CPU); = --precision int8."),
    precision: str = typer.Option("fp32", "--precision", help=PRECISION_HELP + " auto counts one request "
                                  "at a time (fp32 on a CPU)."),
    engine: str = typer.Option(None, "--engine", help="torch, onnx or ct2 (a translation model; default: what "
                                                      "--model holds, PyTorch or an export)."),
    device: str = typer.Option("cpu", "--device"),
    log_level: str = typer.Option("info", "--log-level", help="uvicorn's: critical, error, warning, info."),
) -> None:
    """Serve a model of any task over HTTP: the JSON API under /v1, a page at /, OpenAPI at /docs.

    A translation model: /v1/translate and /v1/attention; a summariser: /v1/summarise and /v1/attention; a text
    classifier: /v1/classify, /v1/embed and /v1/attention; any other encoder (all-MiniLM-L6-v2 too): /v1/embed;
    a question-answering model: /v1/answer; a language model: /v1/generate (streamed); an image model (ViT):
    /v1/classify, and a page to draw a digit (or upload a picture). GET /v1/model says the task and endpoints."""
    import uvicorn

    from rosetta.server import Settings, create_app

    if min(max_texts, max_chars, max_batch, max_image_bytes) < 1:
        fail("--max-texts, --max-chars, --max-batch and --max-image-bytes must be at least 1")
    settings = Settings(max_texts=max_texts, max_chars=max_chars, max_batch=max_batch, batching=not no_batching,
                        max_image_bytes=max_image_bytes)
    family = model_family(model)
    if family in (None, "translation"):  # None: no readable config.json, the loader says why
        from rosetta.cli.export import engine_model_dir

        directory, int8 = engine_model_dir(model, engine, int8)
        served = load_translator(directory, device, int8, precision, sentences=1)
    else:
        if int8 or engine or precision != "fp32":
            fail(f"--int8, --precision and --engine are for translation models; {model} holds a {family!r} model")
        served = load_model(model, device)
    app = create_app(served, settings)
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
    """Training curves from RUN_DIR/metrics.jsonl: loss, validation BLEU (accuracy for a classifier), learning rate."""
    from rosetta.view import plots

    try:
        fig = plots.training_figure(run_dir)
    except (ValueError, FileNotFoundError) as e:
        fail(str(e))
    for path in plots.save_figure(fig, _target(out or run_dir, "training")):
        typer.echo(f"wrote {path}")


@plot_app.command("relative-bias")
def plot_relative_bias(
    model: Path = typer.Option(..., "--model", help="A model with relative positions (T5 layout)."),
    max_distance: int = typer.Option(40, "--max-distance", help="Offsets −M … M on the x axis."),
    out: Path = typer.Option(Path("relative-bias"), "--out",
                             help="A folder (gets relative-bias.png and .svg) or a .png/.svg/.pdf file."),
) -> None:
    """T5's learned relative position bias: per head, the bias added to a logit against key − query offset."""
    from rosetta.view import plots

    loaded = load_model(model)
    stacks = {name: getattr(getattr(loaded.model, name, None), "relative_bias", None)
              for name in ("encoder", "decoder")}
    stacks = {name: bias for name, bias in stacks.items() if bias is not None}
    if not stacks:
        fail(f"{model} has no relative position bias (positional = {loaded.model.config.positional!r}); "
             'train a model with positional = "relative", e.g. configs/t5-multitask.toml')
    if max_distance < 1:
        fail("--max-distance must be at least 1")
    for path in plots.save_figure(plots.relative_bias_figure(stacks, max_distance), _target(out, "relative-bias")):
        typer.echo(f"wrote {path}")


def _target(out: Path, name: str) -> Path:
    """``out`` itself if it names a figure file, else ``out/name`` (both formats)."""
    return out if out.suffix.lower() in (".png", ".svg", ".pdf") else out / name
