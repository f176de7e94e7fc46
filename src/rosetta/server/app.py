"""The HTTP API and the attention explorer page: ``create_app(translator, settings)`` → a FastAPI app.
(Given an image model instead — a ViT ``LoadedModel`` — it serves /v1/classify and the drawing page: vision.py.)

    GET  /               the page (static/index.html, static/app.js, static/style.css)
    POST /v1/translate   {"texts": [...], "beam"?: int, "max_length"?: int} → {"translations": [...]}
    POST /v1/attention   {"text": "...", "beam"?: int} → tokens, translation, every attention map
    GET  /v1/health      {"status": "ok", batching statistics}
    GET  /v1/model       configuration, languages, parameter count, limits
    GET  /docs           OpenAPI (Swagger UI; it is fetched from a CDN, /openapi.json works offline)

Requests are checked by pydantic models built from ``Settings`` (so the limits show in /docs); a bad request
gets 422 with {"error": one readable line, "detail": pydantic's list}. Model work runs on the Batcher's
thread; an exception there becomes a 500 with its message, and the server carries on.

(No ``from __future__ import annotations`` here: FastAPI reads the endpoints' annotations at run time, and the
request models are local to ``create_app``, so the annotations must be the classes, not their names.)
"""

from dataclasses import asdict, dataclass, replace
from typing import Annotated, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, create_model

from rosetta.server.batcher import Batcher
from rosetta.server.common import STATIC, ModelFailed, model_app, rounded  # noqa: F401 — re-exported

KINDS = ("encoder", "decoder", "cross")


@dataclass
class Settings:
    """Limits and behaviour of the server (``rosetta serve`` flags in brackets).

    max_texts          texts per /v1/translate request [--max-texts]
    max_chars          characters per text [--max-chars]
    max_attention_chars characters of a /v1/attention text (its answer grows with the square of the length)
    max_beam           largest beam a request may ask for
    max_length         largest max_length (output tokens) a request may ask for (at most the model's max_len)
    batching           merge concurrent requests into one model call [--no-batching turns it off]
    max_batch          most sentences in one merged call
    max_wait_ms        how long an idle worker waits for company before decoding a lone request
    timeout_s          a request still waiting after this long gets 504
    max_image_bytes    bytes of one picture sent to /v1/classify (an image model) [--max-image-bytes]
    max_image_pixels   pixels (width × height) of one picture, checked before it is decoded
    """

    max_texts: int = 64
    max_chars: int = 1000
    max_attention_chars: int = 300
    max_beam: int = 8
    max_length: int = 256
    batching: bool = True
    max_batch: int = 64
    max_wait_ms: float = 0.0
    timeout_s: float = 300.0
    max_image_bytes: int = 5_000_000
    max_image_pixels: int = 25_000_000


def request_models(settings: Settings) -> tuple[type[BaseModel], type[BaseModel]]:
    """The two request bodies, with the limits of ``settings`` (strict: "3" is not a beam, 3 is not a text)."""
    text = Annotated[str, StringConstraints(strict=True, max_length=settings.max_chars)]
    beam = Annotated[int | None, Field(strict=True, ge=1, le=settings.max_beam,
                                       description="beam size; 1 = greedy; default: the model's")]
    forbid = ConfigDict(extra="forbid")
    translate = create_model(
        "TranslateRequest", __config__=forbid,
        texts=(list[text], Field(min_length=1, max_length=settings.max_texts,
                                 description=f"1 to {settings.max_texts} texts of at most {settings.max_chars} "
                                             "characters; an empty text gives an empty translation")),
        beam=(beam, None),
        max_length=(Annotated[int | None, Field(strict=True, ge=1, le=settings.max_length,
                                                description="most output tokens per text")], None),
    )
    attention = create_model(
        "AttentionRequest", __config__=forbid,
        text=(Annotated[str, StringConstraints(strict=True, max_length=settings.max_attention_chars),
                        AfterValidator(not_blank)], Field(description="one sentence")),
        beam=(beam, None),
    )
    return translate, attention


class TranslateResponse(BaseModel):
    translations: list[str]


class AttentionResponse(BaseModel):
    source_tokens: list[str]
    target_tokens: list[str]
    translation: str
    encoder: list[list[list[list[float]]]] = Field(description="per layer (H, S, S)")
    decoder: list[list[list[list[float]]]] = Field(description="per layer (H, T, T)")
    cross: list[list[list[list[float]]]] = Field(description="per layer (H, T, S)")


def count_parameters(config) -> int:
    """Parameters of the model ``config`` describes (shared tensors once). Counted on a weightless copy on the
    meta device, because an int8-quantized model's packed weights are not nn.Parameters."""
    import torch

    from rosetta.models.transformer import Transformer

    with torch.device("meta"):
        return Transformer(config).num_parameters()


HINTS = {"too_long": "a server limit; GET /v1/model lists them",
         "string_too_long": "a server limit; GET /v1/model lists them"}


def describe_errors(errors: list[dict[str, Any]]) -> str:
    """pydantic's error list as one line: "texts: List should have at most 64 items …; beam: …"."""
    parts = []
    for e in errors:
        loc = [str(x) for x in e.get("loc", ())]
        if e.get("type") == "json_invalid":
            parts.append(f"the body is not valid JSON ({e.get('ctx', {}).get('error', e.get('msg'))})")
            continue
        if loc == ["body"] and e.get("type") == "missing":
            parts.append('empty body: send a JSON object, e.g. {"texts": ["Hello."]}')
            continue
        where = ".".join(x for x in loc if x != "body") or "body"
        hint = f" — {HINTS[e['type']]}" if e.get("type") in HINTS else ""
        parts.append(f"{where}: {e.get('msg', 'invalid')}{hint}")
    return "; ".join(parts)


def not_blank(text: str) -> str:
    if not text.strip():
        raise ValueError("the text is blank; send a sentence")
    return text


def create_app(translator, settings: Settings | None = None) -> FastAPI:
    """A FastAPI app serving ``translator`` (a ``rosetta.Translator``); start it with uvicorn, or test it
    in-process with httpx's ASGITransport. The model thread stops when the app shuts down.

    Given an image model instead (a ``LoadedModel`` of family "vit" from ``load_any``, or an
    ``ImageClassifier``), the app classifies pictures: ``rosetta.server.vision.create_vision_app``."""
    settings = settings or Settings()
    from rosetta.decode.vision import ImageClassifier

    if isinstance(translator, ImageClassifier) or getattr(translator, "family", None) == "vit":
        from rosetta.server.vision import create_vision_app

        return create_vision_app(translator, settings)
    # A request may not ask for more output positions than the model has.
    settings = replace(settings, max_length=min(settings.max_length, translator.config.max_len))
    batcher = Batcher(translator.translate, batching=settings.batching, max_batch=settings.max_batch,
                      max_wait_ms=settings.max_wait_ms)
    TranslateRequest, AttentionRequest = request_models(settings)

    model_info = {
        "family": "translation",
        "task": "translation",
        "config": translator.config.to_dict(),
        "src_lang": translator.src_lang,
        "tgt_lang": translator.tgt_lang,
        "parameters": count_parameters(translator.config),
        "decode": asdict(translator.decode_options),
        "limits": asdict(settings),
    }
    app, run = model_app("Rosetta translation server",
                         "Translate text and look at the attention of a Rosetta Transformer.",
                         batcher, settings, model_info)
    app.state.translator = translator

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        detail = [{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in errors]
        return JSONResponse({"error": describe_errors(errors), "detail": detail}, status_code=422)

    @app.exception_handler(ModelFailed)
    async def model_failed(request: Request, exc: ModelFailed) -> JSONResponse:
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    @app.post("/v1/translate", response_model=TranslateResponse, summary="Translate texts (kept in order)")
    async def translate(body: TranslateRequest) -> dict[str, list[str]]:
        translations = await run(batcher.submit_translate(body.texts, body.beam, body.max_length))
        return {"translations": translations}

    @app.post("/v1/attention", response_model=AttentionResponse,
              summary="Translate one text and return every attention map (layer × head)")
    async def attention(body: AttentionRequest) -> JSONResponse:
        def work() -> dict[str, Any]:  # on the model thread: the rounding of L·H·T² numbers included
            result = translator.attention(body.text, beam=body.beam)
            return {**result, **{kind: rounded(result[kind]) for kind in KINDS}}

        # Returned as is: re-validating the maps against the response model would cost more than computing them.
        return JSONResponse(await run(batcher.submit_call(work)))

    return app
