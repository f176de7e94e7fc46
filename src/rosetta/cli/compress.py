"""Compression commands: ``rosetta prune`` (attention heads), ``rosetta distill`` (knowledge distillation) and
``rosetta plot pruning`` (BLEU against the share of heads removed)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from rosetta.cli.app import DataDir, app, fail, load_translator, plot_app, read_lines

FRACTIONS = "0,0.1,0.25,0.4,0.5,0.6,0.75"


def _pairs(translator, corpus: str | None, split: str, src: Path | None, ref: Path | None, data_dir: Path | None,
           limit: int | None) -> list[tuple[str, str]]:
    """(source, reference) pairs from --src/--ref files or a known corpus (default: the model's own)."""
    if src or ref:
        if not (src and ref):
            fail("give both --src and --ref (validation sources and their references), or neither")
        sources, refs = read_lines(src), read_lines(ref)
        if len(sources) != len(refs):
            fail(f"{src} has {len(sources)} lines but {ref} has {len(refs)}: they must pair up")
        pairs = list(zip(sources, refs))
    else:
        corpus = corpus or translator.info.get("corpus")
        if not corpus:
            fail("this model was trained on its own files: give validation pairs with --src FILE --ref FILE")
        from rosetta.tasks import load_eval_pairs

        try:
            pairs, _ = load_eval_pairs(corpus, split, translator.info, data_dir)
        except (ValueError, FileNotFoundError) as e:
            fail(str(e))
    pairs = [(s, t) for s, t in pairs if s.strip() and t.strip()]
    return pairs[:limit] if limit else pairs


@app.command()
def prune(
    model: Path = typer.Option(..., "--model", help="Translation model or run directory."),
    out: Path = typer.Option(..., "--out", help="Directory for the pruned model."),
    heads: int = typer.Option(None, "--heads", help="Remove this many attention heads."),
    fraction: float = typer.Option(None, "--fraction", help="Remove this share of the heads, e.g. 0.25."),
    order: str = typer.Option("importance", "--order", help="importance (least important first) or random."),
    seed: int = typer.Option(1, "--seed", help="Seed of the random order."),
    corpus: str = typer.Option(None, "--corpus", help="Validation corpus (default: the model's)."),
    src: Path = typer.Option(None, "--src", help="Validation sources (instead of --corpus)."),
    ref: Path = typer.Option(None, "--ref", help="Validation references (with --src)."),
    valid_size: int = typer.Option(1000, "--valid-size", help="Validation pairs for the importance (0: all)."),
    data_dir: Path = DataDir,
) -> None:
    """Remove the least important attention heads (Michel et al., 2019) and save a smaller model.

    Importance is |∂loss/∂head mask| on validation pairs; heads go physically (smaller projections), one head
    per layer always stays. The result loads, translates and serves like any model."""
    from rosetta.compress.pruning import prune_directory

    if order not in ("importance", "random"):
        fail(f"--order must be importance or random, got {order!r}")
    translator = load_translator(model)
    pairs = _pairs(translator, corpus, "valid", src, ref, data_dir, valid_size)
    try:
        path = prune_directory(model, out, pairs, n_heads=heads, fraction=fraction, order=order, seed=seed)
    except ValueError as e:
        fail(str(e))
    from rosetta import checkpoint as ckpt

    pruning = ckpt.read_config(path)["pruning"]
    typer.echo(f"removed {pruning['heads_removed']} of {pruning['heads_before']} heads ({order} order); "
               f"heads per layer: {json.dumps(ckpt.read_config(path)['model']['heads_per_layer'])}")
    typer.echo(f"pruned model saved to {path}")


@app.command()
def distill(
    teacher: Path = typer.Option(..., "--teacher", help="The trained teacher (translation model or run)."),
    recipe: Path = typer.Option(..., "--recipe", help="The student's TOML recipe (its data, model and training)."),
    out: Path = typer.Option(..., "--out", help="Run directory of the student (and the teacher's translations)."),
    word_kd: float = typer.Option(0.0, "--word-kd", help="Weight α of word-level KD: + α·KL(teacher ‖ student)."),
    beam: int = typer.Option(None, "--beam", help="Teacher's beam size (default: the teacher's own)."),
    chunk_size: int = typer.Option(1000, "--chunk-size", help="Sources per cached chunk of teacher translations."),
    resume: bool = typer.Option(False, "--resume", help="Continue the student's training from its checkpoint."),
    set_: list[str] = typer.Option([], "--set", help="Override a recipe value: section.key=value."),
    data_dir: Path = DataDir,
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Sequence-level knowledge distillation (Kim & Rush, 2016): the teacher translates the recipe's training
    sources (cached in OUT/teacher, resumable), then the recipe's student trains on those translations."""
    from rosetta import checkpoint as ckpt
    from rosetta.compress.distill import CACHE_DIR
    from rosetta.compress.distill import distill as run_distillation
    from rosetta.train import load_recipe

    def progress(done: int, total: int) -> None:
        if not quiet:
            typer.echo(f"teacher translations: chunk {done}/{total}", err=True)

    try:
        rcp = load_recipe(recipe, set_)
        if rcp.data.task != "translation":
            fail(f"distillation trains a translation student; the recipe's task is {rcp.data.task!r}")
        if resume and not ckpt.has_checkpoint(out) and not (out / CACHE_DIR).is_dir():  # killed while translating
            fail(f"--resume: {out} has no checkpoint nor teacher translations to resume from")
        final = run_distillation(teacher, rcp, out, word_kd, beam, chunk_size, data_dir, resume, quiet, progress)
    except (ValueError, FileNotFoundError, ckpt.CheckpointError) as e:
        fail(str(e))
    typer.echo(f"student saved to {final}")


@plot_app.command("pruning")
def plot_pruning(
    model: Path = typer.Option(..., "--model", help="Translation model or run directory."),
    out: Path = typer.Option(Path("docs/images/pruning.png"), "--out", help="The figure (PNG or SVG)."),
    fractions: str = typer.Option(FRACTIONS, "--fractions", help="Shares of heads removed, comma-separated."),
    orders: str = typer.Option("importance,random", "--orders", help="importance and/or random."),
    sentences: int = typer.Option(500, "--sentences", help="Test sentences decoded per point (0: all)."),
    valid_size: int = typer.Option(1000, "--valid-size", help="Validation pairs for the importance (0: all)."),
    beam: int = typer.Option(1, "--beam", help="Beam size for the test BLEU (1: greedy)."),
    corpus: str = typer.Option(None, "--corpus", help="Corpus (default: the model's); valid and test splits."),
    seed: int = typer.Option(1, "--seed", help="Seed of the (first) random order."),
    random_orders: int = typer.Option(3, "--random-orders", help="Random orders drawn (seeds seed, seed+1, …)."),
    as_json: Path = typer.Option(None, "--json", help="Also write the points (and importance) as JSON here."),
    data_dir: Path = DataDir,
) -> None:
    """Test BLEU against the share of attention heads removed: least important first vs a random order."""
    from rosetta.compress.pruning import pruning_curve
    from rosetta.view.plots import save_figure
    from rosetta.view.pruning import pruning_figure

    try:
        shares = [float(f) for f in fractions.split(",") if f.strip()]
    except ValueError:
        fail(f"--fractions takes numbers separated by commas, e.g. {FRACTIONS}; got {fractions!r}")
    kinds = [o.strip() for o in orders.split(",") if o.strip()]
    if not kinds or any(o not in ("importance", "random") for o in kinds):
        fail(f"--orders takes importance and/or random, got {orders!r}")
    translator = load_translator(model)
    valid = _pairs(translator, corpus, "valid", None, None, data_dir, valid_size)
    test = _pairs(translator, corpus, "test", None, None, data_dir, sentences)

    def show(p: dict) -> None:
        typer.echo(f"{p['order']:>10}  {100 * p['fraction']:4.0f} % removed ({p['heads_left']} heads left)  "
                   f"BLEU {p['bleu']:5.2f}  chrF {p['chrf']:5.2f}")

    try:
        curve = pruning_curve(translator, valid, test, shares, kinds, range(seed, seed + max(random_orders, 1)),
                              beam=beam, progress=show)
    except ValueError as e:
        fail(str(e))
    name = corpus or translator.info.get("corpus") or str(model)
    title = f"{name}: {len(test)} test sentences, {'greedy' if beam <= 1 else f'beam {beam}'}"
    for path in save_figure(pruning_figure(curve["points"], title), out):
        typer.echo(f"wrote {path}")
    if as_json:
        as_json.parent.mkdir(parents=True, exist_ok=True)
        as_json.write_text(json.dumps({"model": str(model), **curve}, indent=1) + "\n", encoding="utf-8")
        typer.echo(f"wrote {as_json}")
