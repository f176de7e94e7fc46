"""The server: ``create_app(model, Settings())`` → FastAPI app for a model of any task; ``rosetta serve`` runs it.

    app.py      create_app (picks the module by the model's family and task), translation and
                summarisation: /v1/translate or /v1/summarise, /v1/attention
    limits.py   Settings (every limit, its default and its flag), the 413 body limit before any read, CORS
    encoder.py  an encoder: /v1/embed; a text classifier's /v1/classify and /v1/attention
    qa.py       a question-answering encoder: /v1/answer and the question → context /v1/attention
    lm.py       a language model: /v1/generate, streamed as NDJSON
    vision.py   the image model's endpoints: /v1/classify (JSON base64, multipart or a raw image body)
    common.py   what every app shares: /v1/health, /v1/model (with "endpoints"), the page, errors as JSON
    batcher.py  the model thread and the micro-batcher (concurrent requests merged into one model call)
    static/     the page (plain HTML, CSS and JavaScript, no build step): app.js, the attention explorer for
                translation and summarisation; modes/*.js, the classifier, language model, QA and ViT modes
"""

from rosetta.server.limits import Settings

__all__ = ["Settings", "create_app"]


def __getattr__(name: str):
    """``create_app`` on first use: it imports FastAPI, which the command line needs only to serve."""
    if name == "create_app":
        from rosetta.server.app import create_app

        return create_app
    raise AttributeError(f"module 'rosetta.server' has no attribute {name!r}")
