"""The translation server: ``create_app(translator, Settings())`` → FastAPI app; ``rosetta serve`` runs it.
Given an image model (a ViT ``LoadedModel``), the same ``create_app`` serves /v1/classify and the drawing page.

    app.py      endpoints, request validation, Settings (limits)
    vision.py   the image model's endpoints: /v1/classify (JSON base64, multipart or a raw image body)
    batcher.py  the model thread and the micro-batcher
    static/     the page (plain HTML, CSS and JavaScript, no build step): the attention explorer for a
                translation model, the digit canvas with prediction and attention overlay for a ViT
"""

from rosetta.server.app import Settings, create_app

__all__ = ["Settings", "create_app"]
