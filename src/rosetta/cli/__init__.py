"""The ``rosetta`` command: one typer app (``cli.app``) and a module per command group, each adding its
commands to the app when imported here.

    translation  train, translate, evaluate, info, demo
    view         attention, serve, plot positional, plot training
    families     generate, embed, neighbors, plot embeddings
    data         data list
    classify     classify (pictures with an image model; the family decides)
    export       export (ONNX Runtime, CTranslate2)
    compress     prune, distill, plot pruning
    qa           answer (extractive question answering)
    summarise    summarise (documents → one-line summaries); evaluate's ROUGE for summarisers and baselines
    hub          hub pull (a Hugging Face model directory: safetensors, configs, tokenizer files)
"""

from rosetta.cli import classify, compress, data, export, families, hub, qa, summarise, translation, view  # noqa: F401
from rosetta.cli.app import app


def main() -> None:
    app()


__all__ = ["app", "main"]
