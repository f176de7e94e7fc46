"""The server's limits, and the guards that apply before any work is done.

    Settings         every limit and switch of the server: its default and its help live in the field
                     (``rosetta serve`` has a flag for each, --max-texts …; GET /v1/model lists them)
    BodyLimit        ASGI middleware: a request body over ``max_body_bytes`` gets 413 before it is read
    add_guards(app, settings)   BodyLimit, and CORS for the --cors origins (none by default)

The body limit is the first line: a request over it is refused from its Content-Length header alone (the body is
never read), or, sent without one (chunked), as soon as the bytes received pass the limit. The per-field limits
(texts, characters, tokens, picture bytes and pixels) are checked after, by each endpoint's request model.

This module imports no web framework (BodyLimit is plain ASGI), so the command line can read ``Settings`` while
``rosetta --help`` stays quick.
"""

import json
import re
from dataclasses import dataclass, field, fields
from typing import Any

JSON_ESCAPE_BYTES = 12  # the most bytes one character can take in JSON: "\ud83d\ude00" is one emoji
BODY_MARGIN = 64 * 1024  # room for the JSON (or multipart) around the texts or the picture
ORIGIN = re.compile(r"^(\*|https?://[^/\s?#]+)$")


def option(default: Any, help: str, metavar: str | None = None) -> Any:
    """A ``Settings`` field: its default and its ``rosetta serve`` help (and metavar), in one place."""
    return field(default=default, metadata={"help": help, "metavar": metavar})


@dataclass
class Settings:
    """Limits and behaviour of the server. Each field is the ``rosetta serve`` flag of the same name
    (``max_texts`` → ``--max-texts``; ``batching`` → ``--batching/--no-batching``); the help says what it is."""

    max_texts: int = option(64, "Most texts in one request (/v1/translate, /v1/summarise, /v1/classify, /v1/embed).")
    max_chars: int = option(1000, "Most characters in one text, a question or a prompt.")
    max_attention_chars: int = option(300, "Most characters of a /v1/attention text (its answer grows with the "
                                           "square of the length).")
    max_beam: int = option(8, "Largest beam a request may ask for.")
    max_length: int = option(256, "Largest max_length (output tokens) a request may ask for; at most the "
                                  "model's max_len.")
    batching: bool = option(True, "Merge concurrent requests into one model call (--no-batching: each alone).")
    max_batch: int = option(64, "Most sentences merged into one model call.")
    max_wait_ms: float = option(0.0, "How long an idle model thread waits for company before running a lone "
                                     "request.")
    timeout_s: float = option(300.0, "A request still unanswered after this many seconds gets 504.")
    max_image_bytes: int = option(5_000_000, "Most bytes of one picture sent to /v1/classify (an image model).")
    max_image_pixels: int = option(25_000_000, "Most pixels (width × height) of one picture, read from its "
                                               "header before it is decoded.")
    max_document_chars: int = option(8000, "Most characters of a document to summarise, or of a "
                                           "question-answering context.")
    max_document_attention_chars: int = option(2000, "Most characters of a summariser's /v1/attention text.")
    max_new_tokens: int = option(1000, "Most tokens one /v1/generate request may ask for.")
    max_body_bytes: int | None = option(None, "Most bytes of a request body, refused with 413 before it is read "
                                              "(by default what the largest request within the other limits can "
                                              "need).")
    cors: tuple[str, ...] = option((), "An origin (https://example.org) whose web pages may call this API; "
                                       "repeat for more, * for any (by default none).", metavar="ORIGIN")

    def __post_init__(self) -> None:
        """Check every value (one line naming the flag), and derive ``max_body_bytes`` when it is not given."""
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or f.name == "cors" or value is None:
                continue
            if not isinstance(value, int | float) or value < 0 or (value == 0 and f.name != "max_wait_ms"):
                least = ("0 or more" if f.name == "max_wait_ms" else "more than 0" if isinstance(value, float)
                         else "at least 1")
                raise ValueError(f"{flag(f.name)} must be {least}, got {value!r}")
        self.cors = tuple(self.cors)
        for origin in self.cors:
            if not ORIGIN.match(origin):
                raise ValueError(f"--cors takes an origin: scheme and host, optional port, no path or trailing "
                                 f"slash (https://example.org, http://localhost:3000) or *; got {origin!r}")
        if self.max_body_bytes is None:
            self.max_body_bytes = needed_body_bytes(self)


def flag(name: str) -> str:
    """The ``rosetta serve`` flag of a ``Settings`` field: max_texts → --max-texts."""
    return "--" + name.replace("_", "-")


def needed_body_bytes(settings: Settings) -> int:
    """The largest body a request within the other limits can need, so that the body limit never refuses a
    request the endpoints would accept: every text at its longest (a document's length, the longest there is)
    with each character written as a 12-byte JSON escape, or a picture (``picture_body_bytes``)."""
    texts = settings.max_texts * max(settings.max_chars, settings.max_document_chars) * JSON_ESCAPE_BYTES
    return max(texts + BODY_MARGIN, picture_body_bytes(settings.max_image_bytes))


def picture_body_bytes(max_image_bytes: int) -> int:
    """Most bytes of a request carrying a picture of ``max_image_bytes``: as base64 (4/3 as long), plus room for
    the JSON or multipart around it."""
    return max_image_bytes * 4 // 3 + BODY_MARGIN


class BodyTooLarge(Exception):
    """Raised from ``receive()`` when a streamed body passes the limit: the app stops reading it."""


class BodyLimit:
    """ASGI middleware that refuses a request body over ``max_bytes`` with 413 {"error": one line}.

    Plain ASGI (Starlette's BaseHTTPMiddleware would buffer the body and the streamed answers). A declared
    Content-Length over the limit is answered at once, without ever calling ``receive()``; a body without one
    (chunked) is counted as the app reads it, and the read that passes the limit raises ``BodyTooLarge`` inside
    the app: whatever the app then answers is dropped and the 413 is sent instead (unless the app had already
    started its answer, which then cannot be changed: the error goes on up and the server drops the connection).
    The 413 carries ``Connection: close``, so the server stops reading the rest of an upload.
    """

    def __init__(self, app: Any, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = content_length(scope)
        if declared is not None and declared > self.max_bytes:
            return await self.refuse(send, f"the body is {declared:,} bytes; this server accepts at most "
                                           f"{self.max_bytes:,} (--max-body-bytes; GET /v1/model lists the limits)")
        received, refused, started = 0, False, False

        async def counted_receive() -> dict:
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    refused = True
                    raise BodyTooLarge(f"the body is over {self.max_bytes:,} bytes")
            return message

        async def guarded_send(message: dict) -> None:
            nonlocal started
            if refused and not started:  # the app's answer to BodyTooLarge: the 413 below replaces it
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except BodyTooLarge:
            if started:
                raise
        if refused and not started:
            await self.refuse(send, f"the body is over {self.max_bytes:,} bytes, the most this server accepts "
                                    "(--max-body-bytes; GET /v1/model lists the limits)")

    @staticmethod
    async def refuse(send: Any, message: str) -> None:
        body = json.dumps({"error": message}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


def content_length(scope: dict) -> int | None:
    """The request's declared Content-Length, or None (absent, or not a number: the bytes are counted instead)."""
    for name, value in scope.get("headers", ()):
        if name.lower() == b"content-length":
            return int(value) if value.strip().isdigit() else None
    return None


def add_guards(app: Any, settings: Settings) -> None:
    """The body limit for every route of ``app``, and CORS headers for ``settings.cors`` (none without it: a
    page from another site cannot read the answers). CORS is added last, so it wraps the 413 too and a page
    that is allowed can read why its upload was refused."""
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    if settings.cors:
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors), allow_methods=["GET", "POST"],
                           allow_headers=["Content-Type"])
