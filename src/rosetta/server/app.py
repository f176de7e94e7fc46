"""The HTTP API and the attention explorer page: ``create_app(model, settings)`` → a FastAPI app for any task.
This module serves a ``Translator`` (translation, and summarisation: the same model with task "summarisation");
other families have their own module, chosen by ``create_app``: vision.py (a ViT: /v1/classify for pictures),
encoder.py (text classification, embeddings, question answering), lm.py (a language model: /v1/generate).

    GET  /               the page (static/index.html, static/app.js, static/modes/*.js, static/style.css)
    POST /v1/translate   {"texts": [...], "beam"?: int, "max_length"?: int} → {"translations": [...]}
    POST /v1/summarise   (a summariser, instead of /v1/translate) {"texts": [...], …} → {"summaries": [...]}
    POST /v1/attention   {"text": "...", "beam"?: int, "kinds"?: [...]} → tokens, translation, attention maps
    GET  /v1/health      {"status": "ok", batching statistics}
    GET  /v1/model       configuration, languages, parameter count, limits
    GET  /docs           OpenAPI (Swagger UI; it is fetched from a CDN, /openapi.json works offline)

``Settings`` (limits.py) holds every limit. A body over ``max_body_bytes`` gets 413 before it is read (common.py
adds the guard to every app); then requests are checked by pydantic models built from ``Settings`` (so the
limits show in /docs); a bad request gets 422 with {"error": one readable line, "detail": pydantic's list}.
Model work runs on the Batcher's thread; an exception there becomes a 500 with its message, and the server
carries on.

(No ``from __future__ import annotations`` here: FastAPI reads the endpoints' annotations at run time, and the
request models are local to ``create_app``, so the annotations must be the classes, not their names.)
"""

from dataclasses import asdict, replace
from typing import Annotated, Any, Literal

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, create_model

from rosetta.checkpoint import model_task
from rosetta.server.batcher import Batcher
from rosetta.server.common import (  # noqa: F401 — STATIC, ModelFailed, describe_errors, HINTS re-exported
    HINTS,
    STATIC,
    ModelFailed,
    describe_errors,
    head_importance,
    model_app,
    rounded,
    text_field,
)
from rosetta.server.limits import Settings  # the one settings object (re-exported: rosetta.server.app.Settings)

KINDS = ("encoder", "decoder", "cross")


def request_models(settings: Settings, max_chars: int | None = None, max_attention_chars: int | None = None
                   ) -> tuple[type[BaseModel], type[BaseModel]]:
    """The two request bodies, with the limits of ``settings`` (strict: "3" is not a beam, 3 is not a text);
    ``max_chars`` / ``max_attention_chars`` replace the settings' (a summariser reads whole documents)."""
    max_chars = max_chars or settings.max_chars
    max_attention_chars = max_attention_chars or settings.max_attention_chars
    text = Annotated[str, StringConstraints(strict=True, max_length=max_chars)]
    beam = Annotated[int | None, Field(strict=True, ge=1, le=settings.max_beam,
                                       description="beam size; 1 = greedy; default: the model's")]
    forbid = ConfigDict(extra="forbid")
    translate = create_model(
        "TranslateRequest", __config__=forbid,
        texts=(list[text], Field(min_length=1, max_length=settings.max_texts,
                                 description=f"1 to {settings.max_texts} texts of at most {max_chars} "
                                             "characters; an empty text gives an empty translation")),
        beam=(beam, None),
        max_length=(Annotated[int | None, Field(strict=True, ge=1, le=settings.max_length,
                                                description="most output tokens per text")], None),
    )
    attention = create_model(
        "AttentionRequest", __config__=forbid,
        text=(text_field(max_attention_chars, blank=False), Field(description="one sentence")),
        beam=(beam, None),
        kinds=(list[Literal[KINDS]] | None,  # type: ignore[valid-type]
               Field(None, min_length=1, description="which maps to return (default: all three); a long "
                                                     "document's encoder maps are large")),
    )
    return translate, attention


class TranslateResponse(BaseModel):
    translations: list[str]


class SummariseResponse(BaseModel):
    summaries: list[str]


class AttentionResponse(BaseModel):
    source_tokens: list[str]
    target_tokens: list[str]
    translation: str
    encoder: list[list[list[list[float]]]] | None = Field(None, description="per layer (H, S, S)")
    decoder: list[list[list[list[float]]]] | None = Field(None, description="per layer (H, T, T)")
    cross: list[list[list[list[float]]]] | None = Field(None, description="per layer (H, T, S)")
    p_gen: list[float] | None = Field(None, description="a copy model only: per decoder row t, the probability "
                                      "that token t+1 was generated rather than copied from the source")
    copy_from: list[int] | None = Field(None, description="a copy model only: per decoder row t, the source "
                                        "position its copy distribution weighs most")


def count_parameters(config) -> int:
    """Parameters of the model ``config`` describes (shared tensors once). Counted on a weightless copy on the
    meta device, because an int8-quantized model's packed weights are not nn.Parameters."""
    import torch

    from rosetta.models.transformer import Transformer

    with torch.device("meta"):
        return Transformer(config).num_parameters()


def create_app(model, settings: Settings | None = None) -> FastAPI:
    """A FastAPI app serving ``model``; start it with uvicorn, or test it in-process with httpx's
    ASGITransport. The model thread stops when the app shuts down. What is served depends on the model:

        a Translator (rosetta.load)                     /v1/translate, or /v1/summarise for task "summarisation"
        a LoadedModel (load_any) of family "translation" the same, through a Translator
        family "encoder", a TextClassifier               /v1/embed, and /v1/classify or /v1/answer by its task
        family "lm"                                       /v1/generate (streamed)
        family "vit", an ImageClassifier                  /v1/classify for pictures
    """
    settings = settings or Settings()
    from rosetta.decode.loading import LoadedModel
    from rosetta.decode.text_classifier import TextClassifier
    from rosetta.decode.translator import Translator
    from rosetta.decode.vision import ImageClassifier

    family = getattr(model, "family", None)
    if isinstance(model, ImageClassifier) or family == "vit":
        from rosetta.server.vision import create_vision_app

        return create_vision_app(model, settings)
    if isinstance(model, TextClassifier) or family == "encoder":
        from rosetta.server.encoder import create_encoder_app

        return create_encoder_app(model, settings)
    if family == "lm":
        from rosetta.server.lm import create_lm_app

        return create_lm_app(model, settings)
    if isinstance(model, LoadedModel):  # a translation model from load_any
        device = next(model.model.parameters()).device
        model = Translator(model.model, model.tokenizer, model.target_tokenizer, model.info, device)
    return create_translation_app(model, settings)


def create_translation_app(translator, settings: Settings) -> FastAPI:
    """The app for a ``Translator``: /v1/translate (or /v1/summarise for a summariser) and /v1/attention."""
    task = model_task(getattr(translator, "info", None) or {})
    summariser = task == "summarisation"
    # A request may not ask for more output positions than the model has.
    settings = replace(settings, max_length=min(settings.max_length, translator.config.max_len))
    batcher = Batcher(translator.translate, batching=settings.batching, max_batch=settings.max_batch,
                      max_wait_ms=settings.max_wait_ms)
    TranslateRequest, AttentionRequest = request_models(
        settings, *((settings.max_document_chars, settings.max_document_attention_chars) if summariser else ()))

    model_info = {
        "family": "translation",
        "task": task,
        "config": translator.config.to_dict(),
        "src_lang": translator.src_lang,
        "tgt_lang": translator.tgt_lang,
        "parameters": count_parameters(translator.config),
        "decode": asdict(translator.decode_options),
        "limits": asdict(settings),
        **head_importance(getattr(translator, "info", None) or {}),
    }
    what = "Summarise documents" if summariser else "Translate text"
    app, run = model_app(f"Rosetta {'summarisation' if summariser else 'translation'} server",
                         f"{what} and look at the attention of a Rosetta Transformer.", batcher, settings, model_info)
    app.state.translator = translator

    if summariser:
        @app.post("/v1/summarise", response_model=SummariseResponse, summary="Summarise texts (kept in order)")
        async def summarise(body: TranslateRequest) -> dict[str, list[str]]:
            return {"summaries": await run(batcher.submit_translate(body.texts, body.beam, body.max_length))}
    else:
        @app.post("/v1/translate", response_model=TranslateResponse, summary="Translate texts (kept in order)")
        async def translate(body: TranslateRequest) -> dict[str, list[str]]:
            translations = await run(batcher.submit_translate(body.texts, body.beam, body.max_length))
            return {"translations": translations}

    @app.post("/v1/attention", response_model=AttentionResponse,
              summary=f"{what.split()[0]} one text and return its attention maps (layer × head)")
    async def attention(body: AttentionRequest) -> JSONResponse:
        kinds = body.kinds or KINDS

        def work() -> dict[str, Any]:  # on the model thread: the rounding of L·H·T² numbers included
            result = translator.attention(body.text, beam=body.beam)
            return {**{k: v for k, v in result.items() if k not in KINDS},
                    **{kind: rounded(result[kind]) for kind in KINDS if kind in kinds}}

        # Returned as is: re-validating the maps against the response model would cost more than computing them.
        return JSONResponse(await run(batcher.submit_call(work)))

    return app
