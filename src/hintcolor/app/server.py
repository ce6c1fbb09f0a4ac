"""The interactive page's server: FastAPI routes around a :class:`~.page.Page`.

FastAPI + a plain canvas page rather than Gradio: the click -> preview loop is one small JSON
request answered with raw pixels (no websocket queue or UI framework in the way of the 60 ms
budget), the page is three static files served from here (nothing from a CDN, so it works
offline), and the dependency footprint stays small.

This module is the routes: each request is read and checked on the event loop (cheap by
construction), and its work runs on a thread lane of the :class:`~.page.Page`: opening a
photo and the full-resolution download on one, at a lower CPU priority, the clicks' previews
and suggestions on their own, so a click never waits behind a download. Photos are decoded
and kept by :mod:`.photos`, images encoded by :mod:`.encode`, requests bounded by :mod:`.limits`.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import torch
from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from hintcolor.app.encode import DOWNLOAD_FORMATS
from hintcolor.app.limits import Limits, read_upload
from hintcolor.app.page import Page
from hintcolor.app.photos import display_name
from hintcolor.inference import Colorizer

__all__ = ["Limits", "create_app"]

STATIC = Path(__file__).parent / "static"
# suggested colours a click may ask for
MAX_SUGGESTIONS = 16


def attachment(name: str) -> str:
    """A Content-Disposition header naming a download ``name`` (any characters)."""
    safe = "".join(c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in name)
    return f"attachment; filename=\"{safe}\"; filename*=UTF-8''{quote(name)}"


def number(data: dict[str, Any], key: str) -> float:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise HTTPException(400, f"{key!r} must be a finite number")
    return float(value)


def create_app(colorizer: Colorizer, samples_dir: Path | None, limits: Limits) -> FastAPI:
    page = Page(colorizer, samples_dir, limits)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        page.close()

    app = FastAPI(title="hintcolor", docs_url=None, redoc_url=None, lifespan=lifespan)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": exc.detail}, exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def any_error(request: Request, exc: Exception) -> JSONResponse:
        # whatever went wrong with one request, the server goes on answering the next
        return JSONResponse({"error": f"server error: {type(exc).__name__}"}, status_code=500)

    app.include_router(photo_routes(page))
    app.include_router(hint_routes(page))
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def photo_routes(page: Page) -> APIRouter:
    """The page itself, how its model runs, and opening a photo (a sample or an upload)."""
    router = APIRouter()

    @router.get("/")
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @router.get("/api/info")
    async def info() -> dict[str, Any]:
        """How the page's model runs (what `make bench-app` reports beside its timings)."""
        return {
            "working_size": page.colorizer.working_size,
            "interactive_size": page.colorizer.interactive_size,
            "precision": "bf16" if page.colorizer.bf16 else "fp32",
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "cores": page.watch.cores,
        }

    @router.get("/api/samples")
    async def list_samples() -> list[str]:
        return list(page.samples)

    @router.post("/api/samples/{name}")
    async def open_sample(name: str) -> dict[str, Any]:
        if name not in page.samples:
            raise HTTPException(404, f"no sample {name!r}")
        return await page.open_request(page.samples[name], display_name(name))

    @router.post("/api/photos")
    async def upload(request: Request) -> dict[str, Any]:
        data, filename = await read_upload(request, page.limits)
        return await page.open_request(data, display_name(filename))

    return router


def hint_routes(page: Page) -> APIRouter:
    """What a photo's hints make: previews, suggested colours, checked hints, the download."""
    router = APIRouter()

    @router.post("/api/colorize")
    async def colorize(request: Request) -> Response:
        """The preview for these hints as raw RGBA (X-Width x X-Height); ``"fast": true``
        runs the network at the interactive size (while hints move). ``"add": {"x", "y",
        "size"}`` adds a hint there in its suggested start colour, the suggestions (as
        /api/suggest gives them) in the X-Suggestions header."""
        data = await page.json_request(request)
        add = data.get("add")
        if add is not None and not isinstance(add, dict):
            raise HTTPException(400, 'add must be {"x": ..., "y": ..., "size": ...}')
        fast = data.get("fast") is True
        return await page.clicks.run(page.preview_job, *page.photo_and_hints(data), fast, add)

    @router.post("/api/suggest")
    async def suggest(request: Request) -> dict[str, Any]:
        """Colours for a new hint at (x, y), given the other hints, most likely first."""
        data = await page.json_request(request)
        photo, raw = page.photo_and_hints(data)
        x, y = number(data, "x"), number(data, "y")
        h, w = photo.photo_size
        if not (0 <= x < w and 0 <= y < h):
            raise HTTPException(400, f"({x}, {y}) lies outside the {w}x{h} photo")
        count = data.get("count", 8)
        whole = isinstance(count, int) and not isinstance(count, bool)
        if not whole or not 0 < count <= MAX_SUGGESTIONS:
            raise HTTPException(400, f"count must be a whole number in 1..{MAX_SUGGESTIONS}")
        return await page.clicks.run(page.suggest_job, photo, raw, x, y, count)

    @router.post("/api/hints")
    async def check_hints(request: Request) -> dict[str, Any]:
        """A hints file the page loaded, checked as the CLI checks it and with the page's
        limits; its hints with their Lab colours, or a 400 naming the bad hint."""
        data = await page.json_request(request)
        return await page.clicks.run(page.hints_job, *page.photo_and_hints(data))

    @router.post("/api/download")
    async def download(request: Request) -> Response:
        data = await page.json_request(request)
        fmt = data.get("format", "png")
        if fmt not in DOWNLOAD_FORMATS:
            raise HTTPException(400, f"format must be one of {', '.join(DOWNLOAD_FORMATS)}")
        photo, raw = page.photo_and_hints(data)
        extension = "jpg" if fmt == "jpeg" else "png"
        name = f"{page.names.get(data['id'], 'photo')}_color.{extension}"
        image = await page.heavy.run(page.download_job, photo, raw, fmt)
        headers = {"Content-Disposition": attachment(name)}
        return Response(image, media_type=DOWNLOAD_FORMATS[fmt], headers=headers)

    return router
