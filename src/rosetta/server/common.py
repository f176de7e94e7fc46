"""What every served model shares: the app with its model thread, /v1/health, /v1/model, the page, and the
one way model work is awaited (a timeout, and failures answered as JSON errors, never a crashed server).

    app, run = model_app(title, description, batcher, settings, model_info)
    @app.post("/v1/…")
    async def endpoint(body): return await run(batcher.submit_call(work))
"""

import asyncio
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from rosetta.server.batcher import Batcher

STATIC = Path(__file__).parent / "static"


class ModelFailed(Exception):
    """Model work raised (or took too long); answered with ``status`` and the message, the server goes on."""

    def __init__(self, message: str, status: int = 500):
        super().__init__(message)
        self.message, self.status = message, status


def rounded(maps: list, digits: int = 5) -> list:
    """Nested lists of floats with fewer digits: the JSON is about 3× smaller, rows still sum to 1 ± 1e-4."""
    if maps and isinstance(maps[0], float):
        return [round(x, digits) for x in maps]
    return [rounded(m, digits) for m in maps]


def model_app(title: str, description: str, batcher: Batcher, settings: Any,
              model_info: dict[str, Any]) -> tuple[FastAPI, Callable[[Future], Awaitable[Any]]]:
    """A FastAPI app whose model thread (``batcher``) stops at shutdown, with the routes every model has:
    GET /v1/health (liveness and batching counts), GET /v1/model (``model_info``), GET / (the page) and
    /static; and ``run(future)``, which awaits the batcher's work within ``settings.timeout_s``."""

    async def lifespan(app: FastAPI):
        yield
        batcher.close()

    app = FastAPI(title=title, version="1", lifespan=lifespan, description=description)
    app.state.settings, app.state.batcher = settings, batcher

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

    @app.get("/v1/health", summary="Liveness and batching statistics")
    async def health() -> JSONResponse:
        alive = batcher.thread.is_alive()
        return JSONResponse({"status": "ok" if alive else "model thread stopped", "batching": settings.batching,
                             "queued": batcher.pending(), **batcher.snapshot()}, status_code=200 if alive else 503)

    @app.get("/v1/model", summary="The model: family, task, configuration, parameter count and request limits")
    async def model() -> dict[str, Any]:
        return model_info

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app, run
