"""The interactive page's server: FastAPI around a :class:`~hintcolor.inference.Colorizer`.

FastAPI + a plain canvas page rather than Gradio: the click -> preview loop is one small JSON
request answered with raw pixels (no websocket queue or UI framework in the way of the 60 ms
budget), the page is three static files served from here (nothing from a CDN, so it works
offline), and the dependency footprint stays small.

This module is the routes: each request is read and checked on the event loop (cheap by
construction), and its work runs on a thread lane (:mod:`.lanes`): opening a photo and the
full-resolution download on one, at a lower CPU priority, the clicks' previews and
suggestions on their own, so a click never waits behind a download. Photos are decoded and
kept by :mod:`.photos`, images encoded by :mod:`.encode`.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import torch
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException, MultiPartParser

from hintcolor.app.cores import CpuWatch
from hintcolor.app.encode import DOWNLOAD_FORMATS, encode_download, png_data_url, rgba_bytes
from hintcolor.app.lanes import Lane
from hintcolor.app.photos import PhotoStore, display_name, open_photo
from hintcolor.data.images import IMAGE_EXTENSIONS
from hintcolor.inference import Colorizer, PreparedPhoto, Suggestions
from hintcolor.user_hints import HintError, UserHint, parse_hints

STATIC = Path(__file__).parent / "static"
# suggested colours a click may ask for
MAX_SUGGESTIONS = 16


@dataclass
class Limits:
    """``limits`` of conf/app.yaml (its comments say what each one bounds)."""

    max_upload_mb: float = 20.0
    max_pixels: int = 40_000_000
    max_photos: int = 32
    max_photo_memory_mb: float = 1000.0
    max_request_kb: float = 256.0
    max_hints: int = 500
    max_hint_size: int = 64
    workers: int = 1
    workers_nice: int = 10
    click_workers: int = 1
    queue: int = 8

    def __post_init__(self) -> None:
        if min(self.workers, self.click_workers) < 1 or self.queue < 0:
            raise ValueError("limits.workers and limits.click_workers must be >= 1, queue >= 0")


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def limited_body(request: Request, limit: int, message: str) -> AsyncIterator[bytes]:
    """The request's body, refused (413) as soon as it is known to pass ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, message)
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise HTTPException(413, message)
        yield chunk


async def read_upload(request: Request, limits: Limits) -> tuple[bytes, str | None]:
    """The bytes and file name of the form's ``file`` part (what the page's upload sends)."""
    if media_type(request) != "multipart/form-data":
        raise HTTPException(415, "upload the photo as multipart/form-data with a 'file' part")
    message = f"the file is larger than {limits.max_upload_mb:g} MB"
    limit = int(limits.max_upload_mb * 1e6) + 64 * 1024  # the form's own headers, boundaries
    body = limited_body(request, limit, message)
    parser = MultiPartParser(request.headers, body, max_files=1, max_fields=8)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise HTTPException(400, f"the upload is not a valid form: {exc.message}") from None
    try:
        file = form.get("file")
        if not isinstance(file, UploadFile):
            raise HTTPException(400, "the upload has no 'file' part")
        return await file.read(), file.filename
    finally:
        await form.close()


def attachment(name: str) -> str:
    """A Content-Disposition header naming a download ``name`` (any characters)."""
    safe = "".join(c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in name)
    return f"attachment; filename=\"{safe}\"; filename*=UTF-8''{quote(name)}"


def number(data: dict[str, Any], key: str) -> float:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise HTTPException(400, f"{key!r} must be a finite number")
    return float(value)


def suggestions_json(found: Suggestions) -> dict[str, Any]:
    """What the page gets for a point's suggested colours (probability None: none known)."""
    return {
        "source": found.source,
        "lightness": found.lightness,
        "start": found.start,
        "suggestions": [
            {
                "color": s.color,
                "ab": [round(float(s.ab[0]), 2), round(float(s.ab[1]), 2)],
                "probability": s.probability if math.isfinite(s.probability) else None,
            }
            for s in found.colors
        ],
    }


def create_app(colorizer: Colorizer, samples_dir: Path | None, limits: Limits) -> FastAPI:
    photos = PhotoStore(limits.max_photos, int(limits.max_photo_memory_mb * 1e6))
    names: dict[str, str] = {}  # photo id -> its name (the page names downloads after it)
    # Opening and downloading run torch on the cores no other process is using (.cores), niced
    # so that a click's thread comes first. A click runs on one core: its preview is ~2,000
    # small operations, and from a lane's thread two cores made it slower even when both were
    # idle (76 ms against 45 for the shipped model at 128 px, in the server on this machine)
    watch = CpuWatch(torch.get_num_threads())
    heavy = Lane("heavy", limits.workers, limits.queue, watch.threads, limits.workers_nice)
    clicks = Lane("click", limits.click_workers, limits.queue, lambda: 1)
    samples = (
        {p.name: p for p in sorted(samples_dir.rglob("*")) if p.suffix.lower() in IMAGE_EXTENSIONS}
        if samples_dir and samples_dir.is_dir()
        else {}
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        for lane in (heavy, clicks):
            lane.shutdown()
        watch.stop()

    app = FastAPI(title="hintcolor", docs_url=None, redoc_url=None, lifespan=lifespan)

    # ---- jobs: run on the lanes' threads, touch no shared state --------------------------

    def open_job(data: bytes | Path) -> tuple[PreparedPhoto, dict[str, Any]]:
        start = time.perf_counter()
        if isinstance(data, Path):
            data = data.read_bytes()
        max_bytes = int(limits.max_upload_mb * 1e6)
        photo = open_photo(data, colorizer, max_bytes, limits.max_pixels)
        h, w = photo.photo_size
        return photo, {
            "width": w,
            "height": h,
            "gray": png_data_url(photo.gray(colorizer.working_size)),
            "result": png_data_url(colorizer.preview(photo, [])),
            # fast previews (the network at a smaller size) while hints move, or not
            "interactive": colorizer.interactive_size != colorizer.working_size,
            "ms": (time.perf_counter() - start) * 1000,
        }

    def hints_of(photo: PreparedPhoto, raw: Any) -> list[UserHint]:
        h, w = photo.photo_size
        # the size bound in working-size pixels, so a hint costs the same on any photo
        max_size = math.ceil(limits.max_hint_size * max(h, w) / colorizer.working_size)
        try:
            return parse_hints(raw, w, h, max_hints=limits.max_hints, max_size=max_size)
        except HintError as exc:
            raise HTTPException(400, str(exc)) from None

    def preview_job(photo: PreparedPhoto, raw: Any, fast: bool, add: Any) -> Response:
        start = time.perf_counter()
        hints = hints_of(photo, raw)
        extra = {}
        if add is not None:
            # a new hint's click in one request: its suggested colours (given the other
            # hints) and the preview with it in the start colour, one round trip less
            new = hints_of(photo, [{**add, "color": [0, 0]}])[0]
            found = colorizer.suggest(photo, hints, new.x, new.y)
            a, b = (round(v, 2) for v in found.colors[found.start].ab)
            hints = [*hints, UserHint(new.x, new.y, a, b, new.size)]
            extra["X-Suggestions"] = json.dumps(suggestions_json(found))
        rgb = colorizer.preview(photo, hints, fast)
        headers = {
            "X-Width": str(rgb.shape[1]),
            "X-Height": str(rgb.shape[0]),
            "X-Hints": str(len(hints)),
            "X-Fast": "1" if fast and colorizer.interactive_size != colorizer.working_size else "0",
            "X-Server-Ms": f"{(time.perf_counter() - start) * 1000:.1f}",
            "X-Threads": str(torch.get_num_threads()),  # cores it ran on (.cores)
            **extra,
        }
        return Response(rgba_bytes(rgb), media_type="application/octet-stream", headers=headers)

    def suggest_job(photo: PreparedPhoto, raw: Any, x: float, y: float, count: int):
        start = time.perf_counter()
        found = colorizer.suggest(photo, hints_of(photo, raw), x, y, count)
        return {**suggestions_json(found), "ms": (time.perf_counter() - start) * 1000}

    def hints_job(photo: PreparedPhoto, raw: Any) -> dict[str, Any]:
        return {
            "hints": [
                {"x": h.x, "y": h.y, "a": h.a, "b": h.b, "size": h.size, "hex": h.hex}
                for h in hints_of(photo, raw)
            ]
        }

    def download_job(photo: PreparedPhoto, raw: Any, fmt: str) -> bytes:
        rgb = colorizer.colorize(photo, hints_of(photo, raw))
        # a PNG deflates on as many threads as the lane gave torch for this job (.cores)
        return encode_download(rgb, fmt, threads=torch.get_num_threads())

    # ---- requests: read and checked on the event loop, cheap by construction ------------

    async def open_request(data: bytes | Path, name: str) -> dict[str, Any]:
        photo, body = await heavy.run(open_job, data)
        photo_id = photos.add(photo)
        names[photo_id] = name
        for gone in names.keys() - photos.photos.keys():
            del names[gone]
        return {"id": photo_id, "name": name, **body}

    async def json_request(request: Request) -> dict[str, Any]:
        """The request's JSON object, naming a photo with ``"id"``."""
        if media_type(request) != "application/json":
            raise HTTPException(415, "send the request as JSON (Content-Type: application/json)")
        message = f"the request is larger than {limits.max_request_kb:g} KB (limits.max_request_kb)"
        limit = int(limits.max_request_kb * 1000)
        body = b"".join([chunk async for chunk in limited_body(request, limit, message)])
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):  # RecursionError: nested deeper than Python goes
            raise HTTPException(400, "the request is not valid JSON") from None
        if not isinstance(data, dict) or not isinstance(data.get("id"), str):
            raise HTTPException(400, 'expected {"id": "<photo id>", "hints": [...]}')
        return data

    def photo_and_hints(data: dict[str, Any]) -> tuple[PreparedPhoto, list[Any]]:
        """The photo ``data`` names and its hints, still unparsed (parsing is a job)."""
        raw = data.get("hints", [])
        if not isinstance(raw, list):
            raise HTTPException(400, "hints must be a JSON list of {x, y, color, size} objects")
        if len(raw) > limits.max_hints:
            raise HTTPException(
                413,
                f"{len(raw)} hints in one request; the limit is {limits.max_hints} "
                "(limits.max_hints)",
            )
        return photos.get(data["id"]), raw

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": exc.detail}, exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def any_error(request: Request, exc: Exception) -> JSONResponse:
        # whatever went wrong with one request, the server goes on answering the next
        return JSONResponse({"error": f"server error: {type(exc).__name__}"}, status_code=500)

    @app.get("/")
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/api/info")
    async def info() -> dict[str, Any]:
        """How the page's model runs (what `make bench-app` reports beside its timings)."""
        return {
            "working_size": colorizer.working_size,
            "interactive_size": colorizer.interactive_size,
            "precision": "bf16" if colorizer.bf16 else "fp32",
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "cores": watch.cores,
        }

    @app.get("/api/samples")
    async def list_samples() -> list[str]:
        return list(samples)

    @app.post("/api/samples/{name}")
    async def open_sample(name: str) -> dict[str, Any]:
        if name not in samples:
            raise HTTPException(404, f"no sample {name!r}")
        return await open_request(samples[name], display_name(name))

    @app.post("/api/photos")
    async def upload(request: Request) -> dict[str, Any]:
        data, filename = await read_upload(request, limits)
        return await open_request(data, display_name(filename))

    @app.post("/api/colorize")
    async def colorize(request: Request) -> Response:
        """The preview for these hints as raw RGBA (X-Width x X-Height); ``"fast": true``
        runs the network at the interactive size (while hints move). ``"add": {"x", "y",
        "size"}`` adds a hint there in its suggested start colour, the suggestions (as
        /api/suggest gives them) in the X-Suggestions header."""
        data = await json_request(request)
        add = data.get("add")
        if add is not None and not isinstance(add, dict):
            raise HTTPException(400, 'add must be {"x": ..., "y": ..., "size": ...}')
        fast = data.get("fast") is True
        return await clicks.run(preview_job, *photo_and_hints(data), fast, add)

    @app.post("/api/suggest")
    async def suggest(request: Request) -> dict[str, Any]:
        """Colours for a new hint at (x, y), given the other hints, most likely first."""
        data = await json_request(request)
        photo, raw = photo_and_hints(data)
        x, y = number(data, "x"), number(data, "y")
        h, w = photo.photo_size
        if not (0 <= x < w and 0 <= y < h):
            raise HTTPException(400, f"({x}, {y}) lies outside the {w}x{h} photo")
        count = data.get("count", 8)
        whole = isinstance(count, int) and not isinstance(count, bool)
        if not whole or not 0 < count <= MAX_SUGGESTIONS:
            raise HTTPException(400, f"count must be a whole number in 1..{MAX_SUGGESTIONS}")
        return await clicks.run(suggest_job, photo, raw, x, y, count)

    @app.post("/api/hints")
    async def check_hints(request: Request) -> dict[str, Any]:
        """A hints file the page loaded, checked as the CLI checks it and with the page's
        limits; its hints with their Lab colours, or a 400 naming the bad hint."""
        return await clicks.run(hints_job, *photo_and_hints(await json_request(request)))

    @app.post("/api/download")
    async def download(request: Request) -> Response:
        data = await json_request(request)
        fmt = data.get("format", "png")
        if fmt not in DOWNLOAD_FORMATS:
            raise HTTPException(400, f"format must be one of {', '.join(DOWNLOAD_FORMATS)}")
        photo, raw = photo_and_hints(data)
        name = f"{names.get(data['id'], 'photo')}_color.{'jpg' if fmt == 'jpeg' else 'png'}"
        image = await heavy.run(download_job, photo, raw, fmt)
        headers = {"Content-Disposition": attachment(name)}
        return Response(image, media_type=DOWNLOAD_FORMATS[fmt], headers=headers)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
