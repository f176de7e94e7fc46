"""The translation server: ``create_app(translator, Settings())`` → FastAPI app; ``rosetta serve`` runs it.

    app.py      endpoints, request validation, Settings (limits)
    batcher.py  the model thread and the micro-batcher
    static/     the attention explorer page (plain HTML, CSS and JavaScript, no build step)
"""

from rosetta.server.app import Settings, create_app

__all__ = ["Settings", "create_app"]
