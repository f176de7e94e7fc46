"""The HTTP API and page for an image model (a ViT): ``create_vision_app(loaded, settings)`` → a FastAPI app.
``create_app`` (app.py) calls it when it is given a ViT instead of a translator.

    GET  /               the page: draw a digit or upload a picture, see the prediction and the attention
    POST /v1/classify    a picture → {"label", "probability", "top", "attention": {"rollout", "layers"}, "grid"}
    GET  /v1/health      {"status": "ok", …}
    GET  /v1/model       {"family": "vit", "task": "image-classification", image spec, labels, limits, …}

A picture comes in one of three ways (``POST /v1/classify``):

    Content-Type: application/json       {"image": "data:image/png;base64,iVBOR…" or plain base64, "top_k"?: 5}
    Content-Type: multipart/form-data    a file field "image" (and optionally a field "top_k")
    Content-Type: image/png, image/jpeg  the picture's bytes as the body (``?top_k=5`` in the query)

The answer: ``top`` is [[label, probability], …], most likely first (``top_k``, default 5, at most the number
of labels); ``attention.layers[l][h]`` is the g × g grid of [CLS] → patch weights of layer l, head h;
``attention.rollout`` the g × g grid of the attention rollout (``rosetta.view.rollout``); ``grid`` is g.

Bad input is the client's fault and says so: 413 for a body or picture over the limits (``Settings``), 415 for
something that is not a picture (or a content type not listed above), 422 for a missing field, malformed JSON
or base64, a bad ``top_k``. The picture is decoded off the event loop; the model runs on the Batcher's thread.
"""

import asyncio
import base64
import binascii
import json
import re
from dataclasses import asdict
from email.message import Message
from typing import Annotated, Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from rosetta.decode.vision import ImageClassifier, PictureError, PictureTooLarge
from rosetta.server.batcher import Batcher
from rosetta.server.common import error_responses, field_name, model_app, rounded
from rosetta.server.limits import picture_body_bytes
from rosetta.view.rollout import cls_attention_grids, cls_rollout

DEFAULT_TOP_K = 5
DATA_URL = re.compile(r"^data:([\w.+-]+/[\w.+-]+)?((?:;[\w.+-]+=[\w.+-]+)*)(;base64)?,", re.IGNORECASE)
IMAGE_TYPES = ("image/png", "image/jpeg", "image/jpg", "image/gif", "image/bmp", "image/webp")
HOW = ('send JSON {"image": "<base64 PNG or JPEG, or a data: URL>"}, multipart/form-data with a file field '
       '"image", or the picture itself with Content-Type image/png or image/jpeg')


class BadRequest(Exception):
    """A request the server will not process: answered with ``status`` and {"error": message}."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes ``limit`` bytes (the declared Content-Length
    is checked first, so a large upload is not even read)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BadRequest(413, f"the request has {int(declared):,} bytes; the server accepts at most {limit:,} "
                              "(--max-image-bytes; GET /v1/model lists the limits)")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BadRequest(413, f"the request is over the server's limit of {limit:,} bytes "
                                  "(--max-image-bytes; GET /v1/model lists the limits)")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_top_k(value: Any, from_text: bool) -> int:
    """A positive integer, else 422: a JSON number must be an integer ("3" is not); a form field or the query
    string is text, so there digits are read as the number."""
    if from_text and isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BadRequest(422, f"top_k: should be an integer ≥ 1, got {value!r}")
    return value


def decode_base64(text: str) -> bytes:
    """A plain base64 string or a data: URL (``data:image/png;base64,…``) → bytes; 422 if it is neither."""
    text = text.strip()
    match = DATA_URL.match(text)
    if match:
        if not match.group(3):
            raise BadRequest(422, "image: a data: URL must be base64 (data:image/png;base64,…)")
        text = text[match.end():]
    elif text.startswith("data:"):
        raise BadRequest(422, "image: malformed data: URL; expected data:image/png;base64,…")
    text = re.sub(r"\s+", "", text)
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(422, "image: not valid base64") from None


def parse_multipart(body: bytes, content_type: str) -> dict[str, bytes]:
    """The fields of a multipart/form-data body (RFC 7578): name → content bytes (a repeated name is a 422).

    The body is split on the boundary (which by construction occurs nowhere else); each part is headers, an
    empty line, the content. Only Content-Disposition's ``name`` is read."""
    header = Message()
    header["content-type"] = content_type
    boundary = header.get_param("boundary")
    if not isinstance(boundary, str) or not boundary:
        raise BadRequest(422, "multipart/form-data without a boundary in its Content-Type")
    fields: dict[str, bytes] = {}
    parts = body.split(b"--" + boundary.encode("latin-1"))
    if len(parts) < 3:  # preamble, at least one part, the closing "--"
        raise BadRequest(422, "malformed multipart/form-data body: no complete part")
    for part in parts[1:]:
        if part.startswith(b"--"):  # the closing delimiter
            break
        head, separator, content = part.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        if not separator:
            raise BadRequest(422, "malformed multipart/form-data body: a part has no blank line after its headers")
        disposition = Message()
        for line in head.decode("latin-1").split("\r\n"):
            key, _, value = line.partition(":")
            if key.strip().lower() == "content-disposition":
                disposition["content-disposition"] = value.strip()
        name = disposition.get_param("name", header="content-disposition")
        if isinstance(name, str):
            if name in fields:  # which one was meant? (a list sent as a form repeats its field)
                raise BadRequest(422, f"{field_name(name)}: the form has this field more than once; send it once")
            fields[name] = content.removesuffix(b"\r\n")
    return fields


async def read_picture(request: Request, max_image_bytes: int) -> tuple[bytes, int]:
    """(picture bytes, top_k) from a JSON, multipart or raw-image request (see the module docs)."""
    content_type = request.headers.get("content-type", "application/json")
    kind = content_type.split(";")[0].strip().lower()
    if kind not in ("application/json", "multipart/form-data", *IMAGE_TYPES):
        raise BadRequest(415, f"Content-Type {kind!r} is not accepted: {HOW}")
    body = await read_body(request, picture_body_bytes(max_image_bytes))
    top_k: Any = request.query_params.get("top_k", DEFAULT_TOP_K)
    from_text = True  # the query string and form fields are text; JSON has numbers
    if kind in IMAGE_TYPES:
        picture = body
    elif kind == "multipart/form-data":
        fields = parse_multipart(body, content_type)
        if "image" not in fields:
            raise BadRequest(422, f"image: Field required (the form has {sorted(fields) or 'no fields'}); {HOW}")
        picture = fields["image"]
        if "top_k" in fields:  # an empty field is not a number either (422), as in JSON
            top_k = fields["top_k"].decode("latin-1")
    else:
        if not body.strip():
            raise BadRequest(422, f"empty body: {HOW}")
        try:
            data = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise BadRequest(422, f"the body is not valid JSON ({e})") from None
        except RecursionError:
            raise BadRequest(422, "the body's JSON is nested too deeply") from None
        if not isinstance(data, dict):
            raise BadRequest(422, f"the body should be a JSON object, got {type(data).__name__}; {HOW}")
        extra = sorted(set(data) - {"image", "top_k"})
        if extra:
            raise BadRequest(422, f"{', '.join(map(field_name, extra))}: Extra inputs are not permitted "
                                  "(fields: image, top_k)")
        if "image" not in data:
            raise BadRequest(422, f"image: Field required; {HOW}")
        if not isinstance(data["image"], str):
            raise BadRequest(422, f"image: should be a base64 string, got {type(data['image']).__name__}")
        picture = decode_base64(data["image"])
        if "top_k" in data:
            top_k, from_text = data["top_k"], False
    if not picture:
        raise BadRequest(422, "image: empty; send a PNG or JPEG picture")
    if len(picture) > max_image_bytes:
        raise BadRequest(413, f"the picture has {len(picture):,} bytes; the server accepts at most "
                              f"{max_image_bytes:,} (--max-image-bytes)")
    return picture, parse_top_k(top_k, from_text)


# An 8 × 8 black PNG: the schema's example (/docs sends it with "Try it out"; so does a schema-driven fuzzer).
EXAMPLE_PNG = "iVBORw0KGgoAAAANSUhEUgAAAAgAAAAICAAAAADhZOFXAAAADElEQVR42mNgoA4AAABIAAEQRe/SAAAAAElFTkSuQmCC"


class PictureAttention(BaseModel):
    rollout: list[list[float]] = Field(description="g × g: the attention rollout over the patches")
    layers: list[list[list[list[float]]]] = Field(description="[layer][head] g × g: [CLS] → patch weights")


class PictureResponse(BaseModel):
    label: str
    probability: float
    top: list[Annotated[list[str | float], Field(min_length=2, max_length=2)]] = Field(
        description="[label, probability] pairs, most likely first")
    attention: PictureAttention
    grid: int = Field(description="g: patches per side")


def classify_openapi() -> dict[str, Any]:
    """The request body of /v1/classify for /docs: the endpoint reads it itself (three content types)."""
    top_k = {"type": "integer", "minimum": 1, "default": DEFAULT_TOP_K, "description": "labels to return"}
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": {"type": "object", "required": ["image"], "additionalProperties": False,
                                        "properties": {"image": {"type": "string", "description":
                                                                 "base64 PNG/JPEG, or a data: URL"},
                                                       "top_k": top_k}},
                             "example": {"image": f"data:image/png;base64,{EXAMPLE_PNG}", "top_k": 3}},
        "multipart/form-data": {"schema": {"type": "object", "required": ["image"], "properties": {
            "image": {"type": "string", "format": "binary"}, "top_k": top_k}}},
        "image/png": {"schema": {"type": "string", "format": "binary"}},
        "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
    }}}


def create_vision_app(model, settings) -> FastAPI:
    """A FastAPI app serving a ViT: ``model`` is a ``LoadedModel`` of family "vit" or an ``ImageClassifier``;
    ``settings`` the server's ``Settings`` (the image limits are read from it)."""
    classifier = model if isinstance(model, ImageClassifier) else ImageClassifier(model)
    batcher = Batcher(None, batching=settings.batching, max_batch=settings.max_batch,
                      max_wait_ms=settings.max_wait_ms)

    limits = {k: v for k, v in asdict(settings).items()
              if k in ("max_image_bytes", "max_image_pixels", "timeout_s", "batching")}
    model_info = {
        "family": "vit",
        "task": "image-classification",
        "config": classifier.model.config.to_dict(),
        "image": classifier.image.to_dict(),
        "grid": classifier.grid,
        "labels": classifier.labels,
        "corpus": classifier.info.get("corpus"),
        "invert": classifier.invert,
        "parameters": classifier.model.num_parameters(),
        "limits": {**limits,  # a picture's body is refused at the smaller of the two limits
                   "max_body_bytes": min(settings.max_body_bytes, picture_body_bytes(settings.max_image_bytes))},
    }

    app, run = model_app("Rosetta image classification server",
                         "Classify a picture with a Vision Transformer and see where it looked.",
                         batcher, settings, model_info)
    app.state.classifier = classifier

    @app.exception_handler(BadRequest)
    async def bad_request(request: Request, exc: BadRequest) -> JSONResponse:
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    @app.post("/v1/classify", summary="Classify a picture; the [CLS] attention of every layer and head, and "
              "the rollout, as patch grids", openapi_extra=classify_openapi(), response_model=PictureResponse,
              responses=error_responses({415: "not a picture, or a Content-Type this endpoint does not take"}))
    async def classify(request: Request) -> JSONResponse:
        picture, top_k = await read_picture(request, settings.max_image_bytes)
        try:  # decoding and resizing take a while for a large photo: off the event loop
            x = await asyncio.to_thread(classifier.prepare, picture, settings.max_image_pixels)
        except PictureError as e:
            raise BadRequest(413 if isinstance(e, PictureTooLarge) else 415, str(e)) from None

        def work() -> dict[str, Any]:  # on the model thread
            prediction = classifier.predict(x[None], top_k=top_k, attention=True)[0]
            return {**prediction.to_dict(),
                    "attention": {"rollout": rounded(cls_rollout(prediction.attention).tolist()),
                                  "layers": rounded(cls_attention_grids(prediction.attention).tolist())},
                    "grid": classifier.grid}

        return JSONResponse(await run(batcher.submit_call(work)))

    return app
