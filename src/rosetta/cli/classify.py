"""``rosetta classify``: name what each input is, with the model's probabilities.

The model's family decides what an input is and how it is read (``CLASSIFIERS``): a ViT (family "vit") reads
pictures, a text classifier (family "encoder" trained with task "classification", e.g. on SST-2) reads texts —
given as arguments, or on standard input one per line when none is given or the only one is "-".
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from rosetta.cli.app import app, fail, load_model, model_family, read_lines


def _classify_images(model, inputs, top_k, as_json, invert, fit, device) -> int:
    from rosetta.cli.vision import classify_images

    return classify_images(model, inputs, top_k, as_json, invert, fit, device)


def _classify_texts(model, inputs, top_k, as_json, invert, fit, device) -> int:
    """One line per text, in order: its ``top_k`` labels with probabilities, a tab, the text; with ``--json``
    {"text", "label", "probability", "probabilities": {label: p}} per line."""
    from rosetta.decode.text_classifier import TextClassifier

    if invert is not None or fit != "pad":
        fail("--invert and --fit are for image models; this model classifies texts")
    texts = read_lines(None) if not inputs or inputs == ["-"] else inputs
    if not texts:
        fail("no texts: give them as arguments, or on standard input one per line")
    try:
        classifier = TextClassifier(load_model(model, device))
    except ValueError as e:
        fail(str(e))
    for start in range(0, len(texts), CHUNK):
        chunk = texts[start : start + CHUNK]
        for text, prediction in zip(chunk, classifier.classify(chunk)):
            if as_json:
                typer.echo(json.dumps({"text": text, **prediction.to_dict()}, ensure_ascii=False))
            else:
                top = sorted(prediction.probabilities.items(), key=lambda item: -item[1])[:top_k]
                typer.echo(", ".join(f"{label} ({p:.3f})" for label, p in top) + f"\t{text}")
    return 0


CHUNK = 256  # texts per model call from the command line (outputs appear as each chunk is done)

# family → function(model, inputs, top_k, as_json, invert, fit, device) → number of inputs that failed
CLASSIFIERS = {"vit": _classify_images, "encoder": _classify_texts}


@app.command("classify")
def classify(
    inputs: list[str] = typer.Argument(None, metavar="IMAGE|TEXT …",
                                       help="An image model (ViT): pictures, PNG or JPEG files of any size and "
                                            "mode. A text classifier: texts; none, or -, reads standard input, "
                                            "one text per line."),
    model: Path = typer.Option(..., "--model", help="Model directory or training run directory: an image model "
                                                    "(ViT) or a text classifier (an encoder, e.g. SST-2)."),
    top_k: int = typer.Option(3, "--top-k", help="Labels to print per input, most likely first."),
    as_json: bool = typer.Option(False, "--json",
                                 help='One JSON object per line: {"path", "label", "probability", "top"} for a '
                                      'picture, {"text", "label", "probability", "probabilities"} for a text.'),
    invert: str = typer.Option(None, "--invert",
                               help="auto, yes or no: read the picture's colours inverted (dark ink on light "
                                    "paper → light on black). Default: auto for models trained on MNIST or "
                                    "digits (light on black), no otherwise."),
    fit: str = typer.Option("pad", "--fit", help="Making a picture square: pad (keep its shape), crop or stretch."),
    device: str = typer.Option("cpu", "--device"),
) -> None:
    """Classify each input: one line per input with its most likely labels and their probabilities.

    An input that cannot be read (not an image, missing) gets an error line on stderr and the others are still
    classified; the exit code is then 1 (0 when all were classified)."""
    if top_k < 1:
        fail(f"--top-k must be at least 1, got {top_k}")
    family = model_family(model)
    if family is None:  # no readable config.json: the loader says why
        family = load_model(model, device).family
    if family not in CLASSIFIERS:
        fail(f"classify is not supported for family {family!r} ({model}); it classifies pictures with an "
             "image model (family 'vit') and texts with a text classifier (family 'encoder', task "
             "'classification')")
    if family == "vit" and not inputs:
        fail("no pictures: give PNG or JPEG files as arguments")
    failed = CLASSIFIERS[family](model, list(inputs or []), top_k, as_json, invert, fit, device)
    if failed:
        raise typer.Exit(1)
