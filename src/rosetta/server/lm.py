"""The HTTP API for a language model (a GPT, family "lm"): ``create_lm_app(loaded, settings)``.

    POST /v1/generate   {"prompt": "...", "max_new_tokens"?: 100, "temperature"?: 0.8, "top_k"?, "top_p"?,
                         "seed"?, "stream"?: true}
        stream true  → NDJSON (application/x-ndjson), one line per token as soon as it is chosen:
                         {"id": 17, "text": "e"}                    (the text the token adds; "" for half a character)
                         …
                         {"done": true, "text": "…", "tokens": n, "stop": "eos" | "length"}
        stream false → {"text": "…", "tokens": n, "stop": …}
    GET  /v1/model      {"family": "lm", "task": "lm", "endpoints", limits, …}

Tokens are produced one model step at a time on the Batcher's thread (``rosetta.decode.sampling.stream_text``,
the same generator ``rosetta generate`` prints): each step is its own job, so concurrent generations take turns
token by token and a classification or health check never waits for a whole generation. (Steps are not merged
into one batched matrix product: prompts of different lengths and sampling settings would need padded caches.)
The same ``seed`` gives the same text. A failure after the first line ends the stream with {"error": "…"}.
"""

import json
from collections.abc import AsyncIterator
from dataclasses import asdict
from typing import Any

import torch
from fastapi import FastAPI
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import ConfigDict, Field, create_model

from rosetta.checkpoint import model_task
from rosetta.decode.loading import LoadedModel
from rosetta.decode.sampling import stream_text
from rosetta.server.batcher import Batcher
from rosetta.server.common import ModelFailed, head_importance, model_app, text_field

DEFAULT_NEW_TOKENS = 100
DEFAULT_TEMPERATURE = 0.8


def generate_request(settings):
    """The /v1/generate body, with the limits of ``settings`` (strict types: "5" is not a number of tokens)."""
    return create_model(
        "GenerateRequest", __config__=ConfigDict(extra="forbid"),
        prompt=(text_field(settings.max_chars), Field(description="text to continue; empty: start from <s>")),
        max_new_tokens=(int, Field(DEFAULT_NEW_TOKENS, strict=True, ge=0, le=settings.max_new_tokens)),
        temperature=(float, Field(DEFAULT_TEMPERATURE, ge=0, le=100, description="0: greedy")),
        top_k=(int | None, Field(None, strict=True, ge=1, description="sample among the k most likely")),
        top_p=(float | None, Field(None, gt=0, le=1, description="nucleus: the smallest set of mass ≥ p")),
        seed=(int | None, Field(None, strict=True, ge=0, description="the same seed gives the same text")),
        stream=(bool, Field(True, strict=True, description="NDJSON lines, one per token")),
    )


def create_lm_app(loaded: LoadedModel, settings) -> FastAPI:
    """A FastAPI app serving a ``LoadedModel`` of family "lm"."""
    model, tokenizer = loaded.model, loaded.tokenizer
    batcher = Batcher(None, batching=settings.batching, max_batch=settings.max_batch,
                      max_wait_ms=settings.max_wait_ms)
    keep = ("max_chars", "max_new_tokens", "timeout_s")
    model_info = {"family": "lm", "task": model_task({**loaded.info, "family": "lm"}),
                  "config": model.config.to_dict(), "parameters": model.num_parameters(),
                  "vocab_size": model.vocab_size, "corpus": loaded.info.get("corpus"),
                  "defaults": {"max_new_tokens": DEFAULT_NEW_TOKENS, "temperature": DEFAULT_TEMPERATURE},
                  "limits": {k: v for k, v in asdict(settings).items() if k in keep}, **head_importance(loaded.info)}
    app, run = model_app("Rosetta language model server", "Continue a prompt with a Rosetta GPT, token by token.",
                         batcher, settings, model_info)
    app.state.loaded = loaded
    GenerateRequest = generate_request(settings)

    def start(body):
        """The token generator of one request (made on the model thread; it runs there step by step)."""
        generator = torch.Generator(device=model.output.weight.device)
        if body.seed is not None:
            generator.manual_seed(body.seed)
        else:
            generator.seed()
        return stream_text(model, tokenizer, body.prompt, body.max_new_tokens, body.temperature, body.top_k,
                           body.top_p, generator=generator)

    async def tokens(steps) -> AsyncIterator[tuple[int, str]]:
        """(id, text) per new token; each step is one job on the model thread."""
        try:
            while (step := await run(batcher.submit_call(lambda: next(steps, None)))) is not None:
                yield step
        finally:  # also when the client went away: the generator is closed on the model thread
            batcher.submit_call(steps.close)

    @app.post("/v1/generate", summary="Continue a prompt; streamed as NDJSON lines, one per token")
    async def generate(body: GenerateRequest):
        def last(ids: list[int]) -> dict[str, Any]:
            return {"text": tokenizer.decode(ids), "tokens": len(ids),
                    "stop": "length" if len(ids) >= body.max_new_tokens else "eos"}

        steps = await run(batcher.submit_call(lambda: start(body)))
        if not body.stream:
            ids = [token async for token, _ in tokens(steps)]
            return JSONResponse(last(ids))

        async def lines() -> AsyncIterator[str]:
            ids: list[int] = []
            try:
                async for token, piece in tokens(steps):
                    ids.append(token)
                    yield json.dumps({"id": token, "text": piece}, ensure_ascii=False) + "\n"
            except ModelFailed as e:
                yield json.dumps({"error": e.message}, ensure_ascii=False) + "\n"
                return
            yield json.dumps({"done": True, **last(ids)}, ensure_ascii=False) + "\n"

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    return app
