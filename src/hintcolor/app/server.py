"""The interactive page's server: FastAPI around a :class:`~hintcolor.inference.Colorizer`.

FastAPI + a plain canvas page rather than Gradio: the click -> preview loop is one small JSON
request (no websocket queue or UI framework in the way of the 150 ms budget), the page is
three static files served from here (nothing from a CDN, so it works offline), and the
dependency footprint stays small. Photos live in memory (the last ``max_photos``), each as
its lightness at full and working size, so a click costs one network pass at the working size.
"""

from __future__ import annotations

import base64
import io
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from threading import Lock
from typing import Any

import numpy as np
from fastapi import FastAPI, HTTPException, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from PIL import Image, UnidentifiedImageError

from hintcolor.data.images import IMAGE_EXTENSIONS, load_rgb
from hintcolor.inference import Colorizer, PreparedPhoto
from hintcolor.user_hints import HintError, UserHint, parse_hints

STATIC = Path(__file__).parent / "static"


@dataclass
class Limits:
    max_upload_mb: float = 20.0
    max_pixels: int = 40_000_000
    max_photos: int = 32


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


def create_app(colorizer: Colorizer, samples_dir: Path | None, limits: Limits) -> FastAPI:
    app = FastAPI(title="hintcolor", docs_url=None, redoc_url=None)
    photos: OrderedDict[str, PreparedPhoto] = OrderedDict()
    lock = Lock()
    samples = (
        {p.name: p for p in sorted(samples_dir.rglob("*")) if p.suffix.lower() in IMAGE_EXTENSIONS}
        if samples_dir and samples_dir.is_dir()
        else {}
    )

    def remember(rgb: np.ndarray) -> dict[str, Any]:
        start = time.perf_counter()
        photo = colorizer.prepare(rgb)
        result = colorizer.preview(photo, [])
        with lock:
            photo_id = uuid.uuid4().hex
            photos[photo_id] = photo
            while len(photos) > limits.max_photos:
                photos.popitem(last=False)
        h, w = photo.photo_size
        return {
            "id": photo_id,
            "width": w,
            "height": h,
            "gray": png_data_url(photo.gray()),
            "result": png_data_url(result),
            "ms": (time.perf_counter() - start) * 1000,
        }

    def lookup(photo_id: Any) -> PreparedPhoto:
        with lock:
            photo = photos.get(str(photo_id))
        if photo is None:
            raise HTTPException(404, "this photo is no longer on the server: upload it again")
        return photo

    async def hints_request(request: Request) -> tuple[PreparedPhoto, list[UserHint]]:
        try:
            body = await request.json()
        except ValueError:
            raise HTTPException(400, "the request is not JSON") from None
        if not isinstance(body, dict):
            raise HTTPException(400, "expected {id, hints}")
        photo = lookup(body.get("id"))
        try:
            hints = parse_hints(body.get("hints", []), photo.photo_size[1], photo.photo_size[0])
        except HintError as exc:
            raise HTTPException(400, str(exc)) from None
        return photo, hints

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def any_error(request: Request, exc: Exception) -> JSONResponse:
        # whatever went wrong with one request, the server goes on answering the next
        return JSONResponse({"error": f"server error: {type(exc).__name__}"}, status_code=500)

    @app.get("/")
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/api/samples")
    def list_samples() -> list[str]:
        return list(samples)

    @app.post("/api/samples/{name}")
    def open_sample(name: str) -> dict[str, Any]:
        if name not in samples:
            raise HTTPException(404, f"no sample {name!r}")
        return remember(decode_photo(samples[name].read_bytes(), limits))

    @app.post("/api/photos")
    async def upload(file: UploadFile) -> dict[str, Any]:
        data = await file.read(int(limits.max_upload_mb * 1e6) + 1)
        return remember(decode_photo(data, limits))

    @app.post("/api/colorize")
    async def colorize(request: Request) -> dict[str, Any]:
        photo, hints = await hints_request(request)
        start = time.perf_counter()
        result = png_data_url(colorizer.preview(photo, hints))
        return {"result": result, "hints": len(hints), "ms": (time.perf_counter() - start) * 1000}

    @app.post("/api/download")
    async def download(request: Request) -> Response:
        photo, hints = await hints_request(request)
        buffer = io.BytesIO()
        Image.fromarray(colorizer.colorize(photo, hints)).save(buffer, format="PNG")
        headers = {"Content-Disposition": 'attachment; filename="colorized.png"'}
        return Response(buffer.getvalue(), media_type="image/png", headers=headers)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
