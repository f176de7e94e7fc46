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

A client that goes away stops its generation at once: its next step, already queued, is dropped unrun (the
Batcher skips cancelled jobs) and the generator is closed on the model thread. A stream notices through
Starlette, which listens for http.disconnect while it sends (ASGI servers of spec 2.3, uvicorn's) or gets
an error at the next send (one token later); a stream=false request listens itself (``unless_client_leaves``).
A client that reads slowly only pauses its own generation: the next step is asked for when the previous
line has been handed to the server, and no step, lock or batch slot is held in between.
"""

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Coroutine
from dataclasses import asdict
from typing import Any, Literal

import torch
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, create_model

from rosetta.checkpoint import model_task
from rosetta.decode.loading import LoadedModel
from rosetta.decode.precision import for_inference
from rosetta.decode.sampling import stream_text
from rosetta.server.batcher import Batcher
from rosetta.server.common import ModelFailed, head_importance, model_app, text_field

DEFAULT_NEW_TOKENS = 100
DEFAULT_TEMPERATURE = 0.8
MAX_SEED = 2**64 - 1  # torch.Generator.manual_seed takes 64 bits


class GenerateResponse(BaseModel):
    """The answer of a request with "stream": false."""

    text: str
    tokens: int
    stop: Literal["eos", "length"]


# "stream": true (the default) answers NDJSON instead: documented as the 200's second content type.
STREAMED = {200: {"content": {"application/x-ndjson": {"schema": {
    "type": "string", "description": 'one JSON object a line: {"id", "text"} per token, then {"done": true, "text", '
                                     '"tokens", "stop"}, or {"error"} if the model failed after the first line'}}}}}


def generate_request(settings):
    """The /v1/generate body, with the limits of ``settings`` (strict types: "5" is not a number of tokens, true
    is not a temperature; 1 is a float)."""
    return create_model(
        "GenerateRequest", __config__=ConfigDict(extra="forbid"),
        prompt=(text_field(settings.max_chars), Field(description="text to continue; empty: start from <s>")),
        max_new_tokens=(int, Field(DEFAULT_NEW_TOKENS, strict=True, ge=0, le=settings.max_new_tokens)),
        temperature=(float, Field(DEFAULT_TEMPERATURE, strict=True, ge=0, le=100, description="0: greedy")),
        top_k=(int | None, Field(None, strict=True, ge=1, description="sample among the k most likely")),
        top_p=(float | None, Field(None, strict=True, gt=0, le=1,
                                   description="nucleus: the smallest set of mass ≥ p")),
        seed=(int | None, Field(None, strict=True, ge=0, le=MAX_SEED, description="the same seed gives the same text")),
        stream=(bool, Field(True, strict=True, description="NDJSON lines, one per token")),
    )


class ClosingStreamingResponse(StreamingResponse):
    """A StreamingResponse that closes its line generator however the response ends. When the client leaves
    while a line is being sent, the generator is left suspended at its ``yield``; closing it here runs its
    cleanup (closing the token generator on the model thread) now, not whenever the garbage collector
    gets to it."""

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.body_iterator.aclose()


async def unless_client_leaves(request: Request, work: Coroutine) -> tuple[bool, Any]:
    """Await ``work`` while listening for the client: (True, its result), or (False, None) when the client
    disconnected first (``work`` is then cancelled, so its queued model steps are dropped)."""
    async def gone() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    task, watcher = asyncio.ensure_future(work), asyncio.ensure_future(gone())
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:  # also when this request is itself cancelled
        watcher.cancel()
        if not task.done():
            task.cancel()
    if task.cancelled() or not task.done():
        with contextlib.suppress(asyncio.CancelledError):
            await task  # let its cleanup run
        return False, None
    return True, task.result()


def create_lm_app(loaded: LoadedModel, settings) -> FastAPI:
    """A FastAPI app serving a ``LoadedModel`` of family "lm"."""
    model, tokenizer = for_inference(loaded.model, "fp32"), loaded.tokenizer  # on a CPU: decoding layers packed
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

    @app.post("/v1/generate", summary="Continue a prompt; streamed as NDJSON lines, one per token",
              response_model=GenerateResponse, responses=STREAMED)
    async def generate(body: GenerateRequest, request: Request):
        def last(ids: list[int]) -> dict[str, Any]:
            return {"text": tokenizer.decode(ids), "tokens": len(ids),
                    "stop": "length" if len(ids) >= body.max_new_tokens else "eos"}

        if not body.stream:
            async def whole() -> list[int]:
                steps = await run(batcher.submit_call(lambda: start(body)))
                return [token async for token, _ in tokens(steps)]

            stayed, ids = await unless_client_leaves(request, whole())
            # 499 (nginx's "client closed request"): nobody reads it, but the access log shows what happened
            return JSONResponse(last(ids)) if stayed else JSONResponse({"error": "the client left"}, 499)

        steps = await run(batcher.submit_call(lambda: start(body)))

        async def lines() -> AsyncIterator[str]:
            ids: list[int] = []
            try:
                async with contextlib.aclosing(tokens(steps)) as pieces:
                    async for token, piece in pieces:
                        ids.append(token)
                        yield json.dumps({"id": token, "text": piece}, ensure_ascii=False) + "\n"
            except ModelFailed as e:
                yield json.dumps({"error": e.message}, ensure_ascii=False) + "\n"
                return
            yield json.dumps({"done": True, **last(ids)}, ensure_ascii=False) + "\n"

        return ClosingStreamingResponse(lines(), media_type="application/x-ndjson")

    return app
