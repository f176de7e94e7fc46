"""``rosetta hub pull``: a Hugging Face model directory, safetensors and tokenizer files only (``rosetta.hub.pull``)."""

from __future__ import annotations

from pathlib import Path

import typer

from rosetta.cli.app import app, fail

hub_app = typer.Typer(no_args_is_help=True, help="Models from the Hugging Face Hub (optional: huggingface_hub).")
app.add_typer(hub_app, name="hub")


@hub_app.command("pull")
def pull(
    name: str = typer.Argument(..., help="Repository on the Hub, e.g. Helsinki-NLP/opus-mt-en-zh."),
    out: Path = typer.Option(..., "--out", help="Directory to write (then: rosetta translate --model DIR …)."),
    revision: str = typer.Option(None, "--revision", help="Branch, tag or commit (default: main)."),
) -> None:
    """Fetch a model's safetensors weights, configs and tokenizer files — never pickles — into OUT."""
    from rosetta.hub.pull import PullError
    from rosetta.hub.pull import pull as fetch

    try:
        files = fetch(name, out, revision)
    except PullError as e:
        fail(str(e))
    typer.echo(f"{len(files)} files of {name} → {out}: " + ", ".join(f.name for f in files))
