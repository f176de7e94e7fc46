"""The ``rosetta`` command: one typer app (``cli.app``) and a module per command group, each adding its
commands to the app when imported here.

    translation  train, translate, evaluate, info, demo
    view         attention, serve, plot positional, plot training
    families     generate, embed, neighbors, plot embeddings
    data         data list
    classify     classify (pictures with an image model; the family decides)
"""

from rosetta.cli import classify, data, families, translation, view  # noqa: F401 — importing adds their commands
from rosetta.cli.app import app


def main() -> None:
    app()


__all__ = ["app", "main"]
