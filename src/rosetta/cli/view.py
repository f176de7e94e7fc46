"""Commands to look at a model: ``rosetta attention``, ``rosetta serve``, ``rosetta plot positional`` and
``rosetta plot training``. matplotlib, FastAPI and uvicorn are imported inside the commands so that
``rosetta --help`` stays instant."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from pathlib import Path

import typer

from rosetta.cli.app import PRECISION_HELP, app, fail, load_model, load_translator, model_family, plot_app
from rosetta.server.limits import Settings, flag


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


def settings_options(command):
    """``command`` with one option per ``Settings`` field, named by ``limits.flag`` (max_texts → --max-texts),
    its default and help read from the field, so that each lives in one place; the command receives them
    together as ``settings``. A bad value (Settings checks them) is one line, exit code 2."""
    hints = typing.get_type_hints(Settings)
    own = [p for p in inspect.signature(command, eval_str=True).parameters.values() if p.name != "settings"]
    extra = []
    for f in dataclasses.fields(Settings):
        kind, default, names = hints[f.name], f.default, [flag(f.name)]
        if kind is bool:
            names = [f"{flag(f.name)}/--no-{flag(f.name)[2:]}"]
        elif kind == tuple[str, ...]:  # a repeatable option: --cors A --cors B
            kind, default = list[str], list(default) or None
        option = typer.Option(default, *names, help=f.metadata["help"], metavar=f.metadata["metavar"],
                              show_default=default is not None)
        extra.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=kind))

    @functools.wraps(command)
    def with_settings(**kwargs):
        values = {f.name: kwargs.pop(f.name) for f in dataclasses.fields(Settings)}
        try:
            settings = Settings(**{**values, "cors": tuple(values["cors"] or ())})
        except ValueError as e:
            fail(str(e))
        return command(settings=settings, **kwargs)

    with_settings.__signature__ = inspect.Signature(own + extra)
    with_settings.__annotations__ = {p.name: p.annotation for p in own + extra}
    return with_settings


@app.command("serve")
@settings_options
def serve(
    model: Path = typer.Option(..., "--model", help="Model directory or training run directory."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on: 127.0.0.1 (this machine only) "
                             "unless told otherwise; 0.0.0.0: every interface (put a reverse proxy in front, "
                             "see docs/serving.md)."),
    port: int = typer.Option(8000, "--port"),
    int8: bool = typer.Option(False, "--int8", help="Dynamic int8 quantization (CPU); = --precision int8."),
    precision: str = typer.Option("fp32", "--precision", help=PRECISION_HELP + " auto counts one request "
                                  "at a time (fp32 on a CPU)."),
    engine: str = typer.Option(None, "--engine", help="torch, onnx or ct2 (a translation model; default: what "
                                                      "--model holds, PyTorch or an export)."),
    device: str = typer.Option("cpu", "--device"),
    log_level: str = typer.Option("info", "--log-level", help="uvicorn's: critical, error, warning, info."),
    settings: Settings = None,  # made by settings_options from the --max-… options
) -> None:
    """Serve a model of any task over HTTP: the JSON API under /v1, a page at /, OpenAPI at /docs.

    A translation model: /v1/translate and /v1/attention; a summariser: /v1/summarise and /v1/attention; a text
    classifier: /v1/classify, /v1/embed and /v1/attention; any other encoder (all-MiniLM-L6-v2 too): /v1/embed;
    a question-answering model: /v1/answer; a language model: /v1/generate (streamed); an image model (ViT):
    /v1/classify, and a page to draw a digit (or upload a picture). GET /v1/model says the task and endpoints.

    The --max-… options are the limits (a request over one gets 413 or 422, docs/serving.md); the server listens
    on 127.0.0.1 and sends no CORS headers unless --host and --cors say otherwise."""
    import uvicorn

    from rosetta.server import create_app

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
    run_dirs: list[Path] = typer.Argument(..., help="A training run directory (holding metrics.jsonl), or several "
                                                    "to compare them side by side."),
    out: Path = typer.Option(None, "--out", help="A folder or a .png/.svg/.pdf file (default: the first RUN_DIR)."),
) -> None:
    """Training curves from RUN_DIR/metrics.jsonl: loss, validation BLEU (accuracy for a classifier), learning rate.
    Several runs: one line per run in each panel (training NLL, validation loss, validation BLEU)."""
    from rosetta.view import plots

    try:
        fig = plots.training_figure(run_dirs[0]) if len(run_dirs) == 1 else plots.comparison_figure(run_dirs)
    except (ValueError, FileNotFoundError) as e:
        fail(str(e))
    name = "training" if len(run_dirs) == 1 else "training-compared"
    for path in plots.save_figure(fig, _target(out or run_dirs[0], name)):
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
