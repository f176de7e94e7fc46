"""What the commands do with an image model (a ViT, family "vit"): ``classify`` pictures, ``attention`` over a
picture, ``evaluate`` on an image corpus. The commands themselves (classify.py, view.py, translation.py) look
at the model's family and call these; torch, Pillow and matplotlib are imported inside."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer

from rosetta.cli.app import fail, load_model

CHUNK = 64  # pictures converted and classified at a time (memory stays flat for long lists)
INVERT = {"auto": "auto", "yes": True, "no": False}
FITS = ("pad", "crop", "stretch")


def image_classifier(model: Path, device: str, invert: str | None = None, fit: str = "pad"):
    """An ``ImageClassifier`` for the ViT in ``model``, or a clear message and exit code 2."""
    from rosetta.decode.vision import ImageClassifier

    if invert is not None and invert not in INVERT:
        fail(f"--invert takes auto, yes or no, got {invert!r}")
    if fit not in FITS:
        fail(f"--fit takes {', '.join(FITS)}, got {fit!r}")
    loaded = load_model(model, device)
    if loaded.family != "vit":
        fail(f"{model} holds a {loaded.family} model, not an image model (ViT)")
    return ImageClassifier(loaded, invert=None if invert is None else INVERT[invert], fit=fit)


def classify_images(model: Path, paths: list[str], top_k: int, as_json: bool, invert: str | None, fit: str,
                    device: str) -> int:
    """Print the ``top_k`` labels of each picture, one line each, in order; an unreadable one gets an error
    line on stderr and the others go on. Returns the number of pictures that failed."""
    import torch

    from rosetta.decode.vision import PictureError

    classifier = image_classifier(model, device, invert, fit)
    failed = 0
    for start in range(0, len(paths), CHUNK):
        ready: list[tuple[str, object]] = []
        for path in paths[start : start + CHUNK]:
            try:
                ready.append((path, classifier.prepare(Path(path))))
            except PictureError as e:
                typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
                failed += 1
        if not ready:
            continue
        predictions = classifier.predict(torch.stack([x for _, x in ready]), top_k=top_k)
        for (path, _), prediction in zip(ready, predictions):
            if as_json:
                typer.echo(json.dumps({"path": path, **prediction.to_dict()}, ensure_ascii=False))
            else:
                typer.echo(f"{path}: " + ", ".join(f"{label} ({p:.3f})" for label, p in prediction.top))
    return failed


def image_attention(model: Path, picture: str, out: Path, layer: int | None, head: int | None,
                    formats: tuple[str, ...], device: str) -> None:
    """``rosetta attention`` for a ViT: [CLS] attention of every layer and head over the picture, and the
    rollout, as overlays (layers.png, rollout.png)."""
    from rosetta.decode.vision import PictureError
    from rosetta.view.image_attention import write_image_attention_plots
    from rosetta.view.rollout import cls_attention_grids, cls_rollout

    classifier = image_classifier(model, device)
    try:
        x = classifier.prepare(Path(picture))
    except PictureError as e:
        fail(str(e))
    prediction = classifier.predict(x[None], top_k=1, attention=True)[0]
    grids = cls_attention_grids(prediction.attention).numpy()  # (L, H, g, g)
    rollout = cls_rollout(prediction.attention).numpy()  # (g, g)
    title = f"{Path(picture).name}: {prediction.label} ({prediction.probability:.1%})"
    try:
        paths = write_image_attention_plots(classifier.unnormalize(x), grids, rollout, out, layer=layer, head=head,
                                            formats=formats, title=title)
    except ValueError as e:
        fail(str(e))
    typer.echo(f"{picture}  →  {prediction.label} ({prediction.probability:.1%})")
    for path in paths:
        typer.echo(f"wrote {path}")


def evaluate_images(model: Path, corpus: str | None, split: str, limit: int | None, output: Path | None,
                    as_json: bool, data_dir: Path | None, device: str, translation_only: list[str]) -> None:
    """``rosetta evaluate`` for a ViT: accuracy on an image corpus split (mnist, digits)."""
    from rosetta.data.images import IMAGE_SETS, load_images

    if translation_only:
        fail(f"{', '.join(translation_only)}: for translation models; {model} holds an image model (ViT): "
             f"give --corpus {' or '.join(IMAGE_SETS)} [--split test]")
    if not corpus:
        fail(f"give --corpus {' or '.join(IMAGE_SETS)} [--split test] for an image model")
    classifier = image_classifier(model, device)
    try:
        images, labels = load_images(corpus, split, data_dir)
    except (ValueError, FileNotFoundError, ImportError, RuntimeError) as e:
        fail(str(e))
    if limit:
        images, labels = images[:limit], labels[:limit]
    start = time.time()
    result = classifier.evaluate(images, labels)
    seconds = time.time() - start
    if output:
        output.write_text("".join(classifier.labels[i] + "\n" for i in result["predicted"]), encoding="utf-8")
    if as_json:
        typer.echo(json.dumps({"accuracy": round(result["accuracy"], 6), "correct": result["correct"],
                               "n": result["n"], "corpus": corpus, "split": split, "seconds": round(seconds, 2)}))
    else:
        typer.echo(f"accuracy {result['accuracy']:.2%} ({result['correct']}/{result['n']}) on {corpus} {split}")
        typer.echo(f"  classified in {seconds:.1f} s")
