"""Translation commands: ``train`` (any task), ``translate``, ``evaluate``, ``info`` and ``demo``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import typer

from rosetta.cli.app import PRECISION_HELP, DataDir, app, fail, load_translator, model_family, read_lines


@app.command()
def train(
    recipe: Path = typer.Argument(..., help="TOML recipe, e.g. configs/tatoeba-en-zh.toml"),
    out: Path = typer.Option(..., "--out", help="Run directory (checkpoints, metrics, final model)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the last checkpoint in --out."),
    set_: list[str] = typer.Option([], "--set", help="Override a recipe value: section.key=value."),
    data_dir: Path = DataDir,
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Train a model from a recipe; writes OUT/model (the model to use) and OUT/checkpoints."""
    from rosetta import checkpoint as ckpt
    from rosetta.tasks import build_task
    from rosetta.train import Trainer, load_recipe

    try:
        rcp = load_recipe(recipe, set_)
        if resume and not ckpt.has_checkpoint(out):
            fail(f"--resume: {out} has no checkpoint to resume from "
                 f"(expected {ckpt.checkpoints_dir(out) / ckpt.LATEST})")
        task = build_task(rcp, data_dir=data_dir, run_dir=out, resume=resume)
    except (ValueError, FileNotFoundError) as e:
        fail(str(e))
    try:
        final = Trainer(rcp, task, out, progress=not quiet).fit(resume=resume)
    except ckpt.CheckpointError as e:  # a damaged checkpoint to resume from, or a full disk while saving one
        fail(str(e), code=1 if isinstance(e, ckpt.CheckpointWriteError) else 2)
    typer.echo(f"model saved to {final}")


@app.command()
def translate(
    texts: list[str] = typer.Argument(None, help="Sentences; none: read stdin, one per line."),
    model: Path = typer.Option(..., "--model", help="Model directory or training run directory."),
    beam: int = typer.Option(None, "--beam", help="Beam size (1 = greedy; default from the model)."),
    input_file: Path = typer.Option(None, "--input", "-i", help="Read sentences from this file."),
    int8: bool = typer.Option(False, "--int8", help="Dynamic int8 quantization (CPU); = --precision int8."),
    precision: str = typer.Option("fp32", "--precision", help=PRECISION_HELP),
    device: str = typer.Option("cpu", "--device"),
) -> None:
    """Translate sentences: one translation per line, in input order (empty lines stay empty)."""
    lines = list(texts) if texts else read_lines(input_file)
    translator = load_translator(model, device, int8, precision, sentences=min(len(lines), 64), beam=beam)
    for line in translator.translate(lines, beam=beam):
        typer.echo(line)


@app.command()
def evaluate(
    model: Path = typer.Option(..., "--model"),
    corpus: str = typer.Option(None, "--corpus", help="A known corpus, e.g. multi30k (mnist, digits: image models)."),
    split: str = typer.Option("test", "--split"),
    src: Path = typer.Option(None, "--src", help="Source file (instead of --corpus)."),
    ref: Path = typer.Option(None, "--ref", help="Reference file (instead of --corpus)."),
    beam: int = typer.Option(None, "--beam"),
    int8: bool = typer.Option(False, "--int8", help="= --precision int8."),
    precision: str = typer.Option("fp32", "--precision", help=PRECISION_HELP),
    limit: int = typer.Option(None, "--limit", help="Only the first N sentences (images)."),
    output: Path = typer.Option(None, "--output", help="Write the translations (predicted labels) here."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    tgt_lang_option: str = typer.Option(None, "--tgt-lang", help="Target language for BLEU's tokenizer with "
                                        "--src/--ref (default: the model's; zh uses sacreBLEU's zh tokenizer)."),
    data_dir: Path = DataDir,
    device: str = typer.Option("cpu", "--device"),
) -> None:
    """BLEU and chrF (sacreBLEU, detokenised, target-language tokenizer) with the signature; for an image model
    (ViT), the accuracy on an image corpus split (--corpus mnist or digits); for a summariser, or the baselines
    --model lead-1 / oracle, ROUGE-1/2/L on a summarisation corpus (--corpus scitldr --split valid)."""
    import time

    from rosetta.cli.summarise import evaluate_summaries, wants_summaries

    if wants_summaries(model, corpus):  # a summariser, a summarisation corpus, or --model lead-1 / oracle
        evaluate_summaries(model, corpus, split, beam, limit, output, as_json, data_dir, device)
        return
    if model_family(model) == "vit":
        from rosetta.cli.vision import evaluate_images

        given = {"--src": src, "--ref": ref, "--beam": beam, "--int8": int8}
        evaluate_images(model, corpus, split, limit, output, as_json, data_dir, device,
                        translation_only=[flag for flag, value in given.items() if value])
        return

    from rosetta.tasks.metrics import score

    translator = load_translator(model, device, int8, precision, beam=beam)
    tgt_lang = translator.tgt_lang
    try:
        if corpus:
            from rosetta.tasks import load_eval_pairs

            pairs, tgt_lang = load_eval_pairs(corpus, split, translator.info, data_dir)
            sources, refs = [s for s, _ in pairs], [t for _, t in pairs]
        elif src and ref:
            sources, refs = read_lines(src), read_lines(ref)
            tgt_lang = tgt_lang_option or tgt_lang
            if tgt_lang is None:  # a text-to-text model serves several target languages
                tasks = [t["tgt_lang"] for t in translator.info.get("tasks", [])]
                fail(f"this model translates into several languages ({', '.join(tasks)}): say which one the "
                     "references are in with --tgt-lang (it picks BLEU's tokenizer), or use --corpus NAME")
        else:
            fail("give --corpus NAME [--split test] or both --src FILE and --ref FILE")
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        fail(str(e))
    if limit:
        sources, refs = sources[:limit], refs[:limit]
    start = time.time()
    hyps = translator.translate(sources, beam=beam)
    seconds = time.time() - start
    if output:
        output.write_text("\n".join(hyps) + "\n", encoding="utf-8")
    result = score(hyps, refs, tgt_lang)
    if as_json:
        typer.echo(json.dumps({**result.to_dict(), "beam": beam or translator.decode_options.beam,
                               "seconds": round(seconds, 2), "precision": translator.precision}))
    else:
        typer.echo(str(result))
        typer.echo(f"  decoded in {seconds:.1f} s ({translator.precision})")


@app.command()
def info(directory: Path = typer.Argument(..., help="Model, checkpoint or run directory.")) -> None:
    """Configuration, parameter count and training summary of a model."""
    from rosetta import checkpoint as ckpt

    try:
        path = ckpt.resolve_model_dir(directory)
        meta = ckpt.read_config(path)
    except (ValueError, RuntimeError) as e:
        fail(str(e))
    from safetensors import SafetensorError, safe_open

    if meta.get("format", "pytorch") != "pytorch":  # rosetta export: the engine's files, no safetensors
        n_params = f"{meta['format']} export of {meta.get('exported_from')}"
    else:
        try:
            with safe_open(str(path / ckpt.MODEL_FILE), "pt") as f:
                n_params = f"{sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys()):,}"
        except (SafetensorError, OSError) as e:
            fail(f"{path / ckpt.MODEL_FILE} cannot be read ({e}); copy the model folder again")
    typer.echo(f"model: {path}")
    typer.echo(f"family: {meta.get('family', 'translation')}  parameters: {n_params}")
    typer.echo(json.dumps({k: v for k, v in meta.items()}, indent=2, ensure_ascii=False))


@app.command()
def demo(
    data_dir: Path = DataDir,
    out: Path = typer.Option(Path("runs/tatoeba-en-zh"), "--out"),
    recipe: Path = typer.Option(Path("configs/tatoeba-en-zh.toml"), "--recipe"),
    set_: list[str] = typer.Option([], "--set", help="Override a recipe value: section.key=value."),
) -> None:
    """The main job: train the Tatoeba English→Chinese recipe (≈15 min on 2 cores) and translate."""
    from rosetta import checkpoint as ckpt

    if not ckpt.has_final_model(out):
        train(recipe=recipe, out=out, resume=ckpt.has_checkpoint(out), set_=set_, data_dir=data_dir, quiet=False)
    translator = load_translator(out)
    examples = ["I am a student.", "How are you?", "I like to read books.", "Where is the train station?",
                "The weather is nice today."]
    for source, target in zip(examples, translator.translate(examples)):
        typer.echo(f"{source}  →  {target}")
    typer.echo(f"\nmodel saved in {out / ckpt.FINAL_DIR}; translate more with:\n"
               f"  .venv/bin/rosetta translate --model {out} \"Your sentence.\"")
