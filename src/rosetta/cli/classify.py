"""``rosetta classify``: name what each input is, with the model's probabilities.

The model's family decides what an input is and how it is read: a ViT (family "vit") reads pictures. Other
families are refused for now (text classifiers will come through here too: add them to ``CLASSIFIERS``).
"""

from __future__ import annotations

from pathlib import Path

import typer

from rosetta.cli.app import app, fail, load_model, model_family


def _classify_images(model, inputs, top_k, as_json, invert, fit, device) -> int:
    from rosetta.cli.vision import classify_images

    return classify_images(model, inputs, top_k, as_json, invert, fit, device)


# family → function(model, inputs, top_k, as_json, invert, fit, device) → number of inputs that failed
CLASSIFIERS = {"vit": _classify_images}


@app.command("classify")
def classify(
    inputs: list[str] = typer.Argument(..., metavar="IMAGE",
                                       help="Pictures to classify: PNG or JPEG files of any size and mode."),
    model: Path = typer.Option(..., "--model", help="Model directory or training run directory (an image "
                                                    "model, ViT)."),
    top_k: int = typer.Option(3, "--top-k", help="Labels to print per input, most likely first."),
    as_json: bool = typer.Option(False, "--json",
                                 help='One JSON object per line: {"path", "label", "probability", "top"}.'),
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
        fail(f"classify is not supported yet for family {family!r} ({model}); it classifies pictures with an "
             f"image model (family {', '.join(repr(f) for f in CLASSIFIERS)})")
    failed = CLASSIFIERS[family](model, inputs, top_k, as_json, invert, fit, device)
    if failed:
        raise typer.Exit(1)
