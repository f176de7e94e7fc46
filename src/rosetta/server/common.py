"""What every served model shares: the app with its model thread, /v1/health, /v1/model, the page, the
one way model work is awaited (a timeout, and failures answered as JSON errors, never a crashed server), the
one way a bad request is answered (422 with one readable line; every error is {"error": one line}, and
every error status is in the OpenAPI schema as ``ErrorResponse``), and the guards of limits.py (413 for a body
over the limit before it is read; CORS only for the --cors origins).

    app, run = model_app(title, description, batcher, settings, model_info)
    @app.post("/v1/…")
    async def endpoint(body): return await run(batcher.submit_call(work))
"""

import asyncio
import json
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import AfterValidator, BaseModel, Field, StringConstraints
from starlette.exceptions import HTTPException

from rosetta.server.batcher import Batcher
from rosetta.server.limits import add_guards

STATIC = Path(__file__).parent / "static"


class ModelFailed(Exception):
    """Model work raised (or took too long); answered with ``status`` and the message, the server goes on."""

    def __init__(self, message: str, status: int = 500):
        super().__init__(message)
        self.message, self.status = message, status


class ErrorResponse(BaseModel):
    """Every error answer (4xx, 5xx): what was wrong, in one line."""

    error: str = Field(description="what was wrong, and how to fix it when the client can")
    detail: list[dict[str, Any]] | None = Field(None, description="a 422 of the request's checks: pydantic's "
                                                                  "errors (loc, msg, type)")


def error_responses(why: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for a route: an ``ErrorResponse`` body for each {status: description}."""
    return {status: {"model": ErrorResponse, "description": text} for status, text in why.items()}


# The errors any endpoint may answer (in the schema of every operation, so that /docs and a client know them).
ERRORS = error_responses({
    400: "the body could not be read (it is not UTF-8)",
    413: "the body is over the server's limit (GET /v1/model lists the limits)",
    422: "the request is not what the endpoint takes; the error says what is wrong",
    500: "the model failed on this request; the server goes on",
    504: "no answer within the server's timeout"})


async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
    """Starlette's own errors (an unknown path, a wrong method, a body FastAPI could not read) as
    {"error": one line}, like every other error."""
    where = f"{request.method} {request.url.path}"
    message = {404: f"no {where} here; GET /v1/model lists this server's endpoints",
               405: f"{where}: this path does not take {request.method}; GET /v1/model lists the endpoints"
               }.get(exc.status_code, str(exc.detail))
    if exc.__cause__ is not None:  # FastAPI's "There was an error parsing the body", and why
        message = f"{message}: {type(exc.__cause__).__name__}: {exc.__cause__}; send UTF-8 JSON"
    return JSONResponse({"error": message}, status_code=exc.status_code, headers=getattr(exc, "headers", None))


HINTS = {"too_long": "a server limit; GET /v1/model lists them",
         "string_too_long": "a server limit; GET /v1/model lists them"}


def field_name(key: Any) -> str:
    """A field's name as an error line shows it: as is, or quoted and escaped when it is empty, has spaces at
    an end or a character that does not print (a client's key with a newline would break the one line)."""
    text = str(key)
    return text if text and text.isprintable() and text == text.strip() else json.dumps(text)


def describe_errors(errors: list[dict[str, Any]]) -> str:
    """pydantic's error list as one line: "texts: List should have at most 64 items …; beam: …"."""
    parts = []
    for e in errors:
        loc = list(e.get("loc", ()))
        if e.get("type") == "json_invalid":
            parts.append(f"the body is not valid JSON ({e.get('ctx', {}).get('error', e.get('msg'))})")
            continue
        if loc == ["body"] and e.get("type") == "missing":
            parts.append('empty body: send a JSON object, e.g. {"texts": ["Hello."]}')
            continue
        where = ".".join(field_name(x) for x in (loc[1:] if loc[:1] == ["body"] else loc)) or "body"
        hint = f" — {HINTS[e['type']]}" if e.get("type") in HINTS else ""
        parts.append(f"{where}: {e.get('msg', 'invalid')}{hint}")
    return "; ".join(parts)


def not_blank(text: str) -> str:
    if not text.strip():
        raise ValueError("the text is blank; send a sentence")
    return text


def text_field(max_chars: int, blank: bool = True) -> Any:
    """A request's text: a JSON string (strict: 3 is not a text) of at most ``max_chars`` characters;
    ``blank=False`` also refuses an empty or all-space text (the schema says so with a pattern: a non-space)."""
    text = Annotated[str, StringConstraints(strict=True, max_length=max_chars)]
    return text if blank else Annotated[text, AfterValidator(not_blank), Field(json_schema_extra={"pattern": r"\S"})]


def endpoints(app: FastAPI) -> list[str]:
    """The API's paths ("POST /v1/classify", …) for /v1/model: what this server answers."""
    return sorted(f"{method} {route.path}" for route in app.routes if route.path.startswith("/v1/")
                  for method in sorted(getattr(route, "methods", ())) if method != "HEAD")


def head_importance(info: dict[str, Any]) -> dict[str, Any]:
    """{"head_importance": …} when config.json has it (head pruning writes [layer][head] floats, or such a
    table per attention kind), for /v1/model: the page shows each head's importance next to its map."""
    return {"head_importance": info["head_importance"]} if info.get("head_importance") is not None else {}


def rounded(maps: list, digits: int = 5) -> list:
    """Nested lists of floats with fewer digits: the JSON is about 3× smaller, rows still sum to 1 ± 1e-4."""
    if maps and isinstance(maps[0], float):
        return [round(x, digits) for x in maps]
    return [rounded(m, digits) for m in maps]


def model_app(title: str, description: str, batcher: Batcher, settings: Any,
              model_info: dict[str, Any]) -> tuple[FastAPI, Callable[[Future], Awaitable[Any]]]:
    """A FastAPI app whose model thread (``batcher``) stops at shutdown, with the routes every model has:
    GET /v1/health (liveness and batching counts), GET /v1/model (``model_info``, its "limits" with the body
    limit), GET / (the page) and /static; and ``run(future)``, which awaits the batcher's work within
    ``settings.timeout_s``. The body limit and CORS (``add_guards``) wrap every route."""

    async def lifespan(app: FastAPI):
        yield
        batcher.close()

    app = FastAPI(title=title, version="1", lifespan=lifespan, description=description, responses=ERRORS)
    app.state.settings, app.state.batcher = settings, batcher
    app.add_exception_handler(HTTPException, http_error)
    add_guards(app, settings)
    if "limits" in model_info:
        model_info = {**model_info, "limits": {"max_body_bytes": settings.max_body_bytes, **model_info["limits"]}}

    async def run(future: Future) -> Any:
        """Await a Batcher future without blocking the event loop; failures become ModelFailed."""
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), settings.timeout_s)
        except TimeoutError:
            raise ModelFailed(f"no answer within {settings.timeout_s:g} s; the server is busy", 504) from None
        except Exception as e:
            raise ModelFailed(f"the model failed on this request: {type(e).__name__}: {e}") from e

    @app.exception_handler(ModelFailed)
    async def model_failed(request: Request, exc: ModelFailed) -> JSONResponse:
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        detail = [{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in errors]
        return JSONResponse({"error": describe_errors(errors), "detail": detail}, status_code=422)

    @app.get("/v1/health", summary="Liveness and batching statistics",
             responses={503: {"description": "the model thread stopped: the server cannot answer requests"}})
    async def health() -> JSONResponse:
        alive = batcher.thread.is_alive()
        return JSONResponse({"status": "ok" if alive else "model thread stopped", "batching": settings.batching,
                             "queued": batcher.pending(), **batcher.snapshot()}, status_code=200 if alive else 503)

    @app.get("/v1/model", summary="The model: family, task, endpoints, configuration, parameter count and "
                                  "request limits")
    async def model() -> dict[str, Any]:
        return {**model_info, "endpoints": endpoints(app)}

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app, run
