"""The interactive page's server: FastAPI around a :class:`~hintcolor.inference.Colorizer`.

FastAPI + a plain canvas page rather than Gradio: the click -> preview loop is one small JSON
request (no websocket queue or UI framework in the way of the 150 ms budget), the page is
three static files served from here (nothing from a CDN, so it works offline), and the
dependency footprint stays small.

The event loop only reads requests and answers them; decoding, the network and PNG encoding
run on thread pools ("lanes"): opening a photo and the full-resolution download on one, clicks
on their own so a click never waits behind a download. A lane holds a bounded number of
waiting jobs; past that the server answers 503 at once rather than letting work pile up.
Kept photos are bounded in number and in bytes (least recently used dropped first).
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import math
import os
import sys
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from PIL import Image, UnidentifiedImageError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException, MultiPartParser

from hintcolor.data.images import IMAGE_EXTENSIONS, load_rgb
from hintcolor.inference import Colorizer, PreparedPhoto
from hintcolor.user_hints import HintError, UserHint, parse_hints

STATIC = Path(__file__).parent / "static"
BUSY = "busy, try again"
T = TypeVar("T")


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


def png_data_url(rgb: np.ndarray) -> str:
    buffer = io.BytesIO()
    # compress_level 1: a 256 px PNG in ~2 ms instead of ~10 ms, a few KB larger
    Image.fromarray(rgb).save(buffer, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def decode_photo(data: bytes, limits: Limits) -> np.ndarray:
    """Bytes of an uploaded file -> (H, W, 3) uint8, or an HTTP 4xx with a clear message."""
    if not data:
        raise HTTPException(400, "the file is empty")
    if len(data) > limits.max_upload_mb * 1e6:
        raise HTTPException(413, f"the file is larger than {limits.max_upload_mb:g} MB")
    try:
        with Image.open(io.BytesIO(data)) as img:
            w, h = img.size  # from the header: nothing decoded yet
            if w * h > limits.max_pixels:
                raise HTTPException(
                    413,
                    f"the image has {w}x{h} pixels; the limit is {limits.max_pixels / 1e6:g} "
                    "megapixels",
                )
        # the project's one decoder (EXIF rotation, RGBA/palette/16-bit/CMYK -> RGB)
        return load_rgb(io.BytesIO(data))
    except HTTPException:
        raise
    except Image.DecompressionBombError:  # PIL refuses before we can read the header's size
        raise HTTPException(
            413,
            f"the image has too many pixels; the limit is {limits.max_pixels / 1e6:g} megapixels",
        ) from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        kind = "not an image" if isinstance(exc, UnidentifiedImageError) else "unreadable"
        raise HTTPException(400, f"the file is {kind} (PNG, JPEG, WebP, TIFF, BMP ...)") from None


class Lane:
    """Threads for one kind of job, with at most ``queue`` jobs waiting for them.

    Each thread runs torch on its share of the cores: jobs running side by side with all
    cores each would oversubscribe the machine, and OpenMP threads waiting on descheduled
    peers turn a 20 ms click into hundreds of ms. (torch's thread count is per thread
    here; the last value set is also what threads started later begin with.) ``nice``
    lowers the threads' CPU priority (Linux, where it is per thread): background work.
    """

    def __init__(
        self, name: str, workers: int, queue: int, torch_threads: int, nice: int = 0
    ) -> None:
        def start_thread() -> None:
            torch.set_num_threads(torch_threads)
            if nice and sys.platform == "linux":
                os.nice(nice)

        self.executor = ThreadPoolExecutor(workers, f"hintcolor-{name}", start_thread)
        self.slots = threading.BoundedSemaphore(workers + queue)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on this lane's threads; HTTP 503 at once when the lane is full."""
        if not self.slots.acquire(blocking=False):
            raise HTTPException(503, BUSY, headers={"Retry-After": "1"})
        try:
            future = self.executor.submit(fn, *args)
        except BaseException:
            self.slots.release()
            raise
        future.add_done_callback(lambda _: self.slots.release())
        return await asyncio.wrap_future(future)


class PhotoStore:
    """Prepared photos by id, the least recently used dropped once there are more than
    ``max_photos`` or they hold more than ``max_bytes``. Used from the event loop only."""

    def __init__(self, max_photos: int, max_bytes: int) -> None:
        self.photos: OrderedDict[str, PreparedPhoto] = OrderedDict()
        self.max_photos, self.max_bytes, self.nbytes = max_photos, max_bytes, 0

    def add(self, photo: PreparedPhoto) -> str:
        if photo.nbytes > self.max_bytes:
            raise HTTPException(
                413,
                f"the photo needs {photo.nbytes / 1e6:.0f} MB of memory on the server; the limit "
                f"for photos is {self.max_bytes / 1e6:g} MB (limits.max_photo_memory_mb)",
            )
        photo_id = uuid.uuid4().hex
        self.photos[photo_id] = photo
        self.nbytes += photo.nbytes
        while len(self.photos) > self.max_photos or self.nbytes > self.max_bytes:
            _, dropped = self.photos.popitem(last=False)
            self.nbytes -= dropped.nbytes
        return photo_id

    def get(self, photo_id: str) -> PreparedPhoto:
        photo = self.photos.get(photo_id)
        if photo is None:
            raise HTTPException(404, "this photo is no longer on the server: upload it again")
        self.photos.move_to_end(photo_id)
        return photo


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


async def read_upload(request: Request, limits: Limits) -> bytes:
    """The bytes of the form's ``file`` part (what the page's upload sends)."""
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
        return await file.read()
    finally:
        await form.close()


def create_app(colorizer: Colorizer, samples_dir: Path | None, limits: Limits) -> FastAPI:
    photos = PhotoStore(limits.max_photos, int(limits.max_photo_memory_mb * 1e6))
    torch_threads = max(1, torch.get_num_threads() // (limits.workers + limits.click_workers))
    heavy = Lane("heavy", limits.workers, limits.queue, torch_threads, limits.workers_nice)
    clicks = Lane("click", limits.click_workers, limits.queue, torch_threads)
    samples = (
        {p.name: p for p in sorted(samples_dir.rglob("*")) if p.suffix.lower() in IMAGE_EXTENSIONS}
        if samples_dir and samples_dir.is_dir()
        else {}
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        for lane in (heavy, clicks):
            lane.executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="hintcolor", docs_url=None, redoc_url=None, lifespan=lifespan)

    # ---- jobs: run on the lanes' threads, touch no shared state --------------------------

    def open_job(data: bytes | Path) -> tuple[PreparedPhoto, dict[str, Any]]:
        start = time.perf_counter()
        rgb = decode_photo(data.read_bytes() if isinstance(data, Path) else data, limits)
        photo = colorizer.prepare(rgb)
        h, w = photo.photo_size
        return photo, {
            "width": w,
            "height": h,
            "gray": png_data_url(photo.gray()),
            "result": png_data_url(colorizer.preview(photo, [])),
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

    def click_job(photo: PreparedPhoto, raw: Any) -> dict[str, Any]:
        start = time.perf_counter()
        hints = hints_of(photo, raw)
        result = png_data_url(colorizer.preview(photo, hints))
        return {"result": result, "hints": len(hints), "ms": (time.perf_counter() - start) * 1000}

    def download_job(photo: PreparedPhoto, raw: Any) -> bytes:
        buffer = io.BytesIO()
        Image.fromarray(colorizer.colorize(photo, hints_of(photo, raw))).save(buffer, "PNG")
        return buffer.getvalue()

    # ---- requests: read and checked on the event loop, cheap by construction ------------

    async def open_photo(data: bytes | Path) -> dict[str, Any]:
        photo, body = await heavy.run(open_job, data)
        return {"id": photos.add(photo), **body}

    async def hints_request(request: Request) -> tuple[PreparedPhoto, list[Any]]:
        """The photo a JSON request names and its hints, still unparsed (parsing is a job)."""
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

    @app.get("/api/samples")
    async def list_samples() -> list[str]:
        return list(samples)

    @app.post("/api/samples/{name}")
    async def open_sample(name: str) -> dict[str, Any]:
        if name not in samples:
            raise HTTPException(404, f"no sample {name!r}")
        return await open_photo(samples[name])

    @app.post("/api/photos")
    async def upload(request: Request) -> dict[str, Any]:
        return await open_photo(await read_upload(request, limits))

    @app.post("/api/colorize")
    async def colorize(request: Request) -> dict[str, Any]:
        return await clicks.run(click_job, *await hints_request(request))

    @app.post("/api/download")
    async def download(request: Request) -> Response:
        png = await heavy.run(download_job, *await hints_request(request))
        headers = {"Content-Disposition": 'attachment; filename="colorized.png"'}
        return Response(png, media_type="image/png", headers=headers)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
