"""The page's state and work: its photos, its thread lanes and the jobs they run.

A :class:`Page` holds what the routes (:mod:`.server`) share: the photos opened in this
session, the two thread lanes (:mod:`.lanes`) and the jobs that run on them, which touch no
shared state. The request helpers here read and check a request on the event loop, cheap by
construction; everything heavy is a job.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import torch
from fastapi import HTTPException, Request
from fastapi.responses import Response

from hintcolor.app.cores import CpuWatch
from hintcolor.app.encode import encode_download, png_data_url, rgba_bytes
from hintcolor.app.lanes import Lane
from hintcolor.app.limits import Limits, limited_body, media_type
from hintcolor.app.photos import PhotoStore, open_photo
from hintcolor.data.images import IMAGE_EXTENSIONS
from hintcolor.inference import Colorizer, PreparedPhoto, Suggestions
from hintcolor.user_hints import HintError, UserHint, parse_hints


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


class Page:
    """One server's photos, lanes and jobs around a :class:`~hintcolor.inference.Colorizer`."""

    def __init__(self, colorizer: Colorizer, samples_dir: Path | None, limits: Limits) -> None:
        self.colorizer, self.limits = colorizer, limits
        self.photos = PhotoStore(limits.max_photos, int(limits.max_photo_memory_mb * 1e6))
        self.names: dict[str, str] = {}  # photo id -> its name (downloads are named after it)
        # Opening and downloading run torch on the cores no other process is using (.cores),
        # niced so that a click's thread comes first. A click runs on one core: its preview is
        # ~2,000 small operations, and from a lane's thread two cores made it slower even when
        # both were idle (76 ms against 45 for the shipped model at 128 px, in the server here)
        self.watch = CpuWatch(torch.get_num_threads())
        self.heavy = Lane(
            "heavy", limits.workers, limits.queue, self.watch.threads, limits.workers_nice
        )
        self.clicks = Lane("click", limits.click_workers, limits.queue, lambda: 1)
        self.samples: dict[str, Path] = {}
        if samples_dir and samples_dir.is_dir():
            found = sorted(samples_dir.rglob("*"))
            self.samples = {p.name: p for p in found if p.suffix.lower() in IMAGE_EXTENSIONS}

    def close(self) -> None:
        for lane in (self.heavy, self.clicks):
            lane.shutdown()
        self.watch.stop()

    # ---- jobs: run on the lanes' threads, touch no shared state --------------------------

    def open_job(self, data: bytes | Path) -> tuple[PreparedPhoto, dict[str, Any]]:
        start = time.perf_counter()
        if isinstance(data, Path):
            data = data.read_bytes()
        max_bytes = int(self.limits.max_upload_mb * 1e6)
        photo = open_photo(data, self.colorizer, max_bytes, self.limits.max_pixels)
        h, w = photo.photo_size
        return photo, {
            "width": w,
            "height": h,
            "gray": png_data_url(photo.gray(self.colorizer.working_size)),
            "result": png_data_url(self.colorizer.preview(photo, [])),
            # fast previews (the network at a smaller size) while hints move, or not
            "interactive": self.interactive,
            "ms": (time.perf_counter() - start) * 1000,
        }

    @property
    def interactive(self) -> bool:
        return self.colorizer.interactive_size != self.colorizer.working_size

    def hints_of(self, photo: PreparedPhoto, raw: Any) -> list[UserHint]:
        h, w = photo.photo_size
        # the size bound in working-size pixels, so a hint costs the same on any photo
        max_size = math.ceil(self.limits.max_hint_size * max(h, w) / self.colorizer.working_size)
        try:
            return parse_hints(raw, w, h, max_hints=self.limits.max_hints, max_size=max_size)
        except HintError as exc:
            raise HTTPException(400, str(exc)) from None

    def preview_job(self, photo: PreparedPhoto, raw: Any, fast: bool, add: Any) -> Response:
        start = time.perf_counter()
        hints = self.hints_of(photo, raw)
        extra = {}
        if add is not None:
            # a new hint's click in one request: its suggested colours (given the other
            # hints) and the preview with it in the start colour, one round trip less
            new = self.hints_of(photo, [{**add, "color": [0, 0]}])[0]
            found = self.colorizer.suggest(photo, hints, new.x, new.y)
            a, b = (round(v, 2) for v in found.colors[found.start].ab)
            hints = [*hints, UserHint(new.x, new.y, a, b, new.size)]
            extra["X-Suggestions"] = json.dumps(suggestions_json(found))
        rgb = self.colorizer.preview(photo, hints, fast)
        headers = {
            "X-Width": str(rgb.shape[1]),
            "X-Height": str(rgb.shape[0]),
            "X-Hints": str(len(hints)),
            "X-Fast": "1" if fast and self.interactive else "0",
            "X-Server-Ms": f"{(time.perf_counter() - start) * 1000:.1f}",
            "X-Threads": str(torch.get_num_threads()),  # cores it ran on (.cores)
            **extra,
        }
        return Response(rgba_bytes(rgb), media_type="application/octet-stream", headers=headers)

    def suggest_job(
        self, photo: PreparedPhoto, raw: Any, x: float, y: float, count: int
    ) -> dict[str, Any]:
        start = time.perf_counter()
        found = self.colorizer.suggest(photo, self.hints_of(photo, raw), x, y, count)
        return {**suggestions_json(found), "ms": (time.perf_counter() - start) * 1000}

    def hints_job(self, photo: PreparedPhoto, raw: Any) -> dict[str, Any]:
        return {
            "hints": [
                {"x": h.x, "y": h.y, "a": h.a, "b": h.b, "size": h.size, "hex": h.hex}
                for h in self.hints_of(photo, raw)
            ]
        }

    def download_job(self, photo: PreparedPhoto, raw: Any, fmt: str) -> bytes:
        rgb = self.colorizer.colorize(photo, self.hints_of(photo, raw))
        # a PNG deflates on as many threads as the lane gave torch for this job (.cores)
        return encode_download(rgb, fmt, threads=torch.get_num_threads())

    # ---- requests: read and checked on the event loop, cheap by construction ------------

    async def open_request(self, data: bytes | Path, name: str) -> dict[str, Any]:
        photo, body = await self.heavy.run(self.open_job, data)
        photo_id = self.photos.add(photo)
        self.names[photo_id] = name
        for gone in self.names.keys() - self.photos.photos.keys():
            del self.names[gone]
        return {"id": photo_id, "name": name, **body}

    async def json_request(self, request: Request) -> dict[str, Any]:
        """The request's JSON object, naming a photo with ``"id"``."""
        if media_type(request) != "application/json":
            raise HTTPException(415, "send the request as JSON (Content-Type: application/json)")
        limit_kb = self.limits.max_request_kb
        message = f"the request is larger than {limit_kb:g} KB (limits.max_request_kb)"
        chunks = limited_body(request, int(limit_kb * 1000), message)
        body = b"".join([chunk async for chunk in chunks])
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):  # RecursionError: nested deeper than Python goes
            raise HTTPException(400, "the request is not valid JSON") from None
        if not isinstance(data, dict) or not isinstance(data.get("id"), str):
            raise HTTPException(400, 'expected {"id": "<photo id>", "hints": [...]}')
        return data

    def photo_and_hints(self, data: dict[str, Any]) -> tuple[PreparedPhoto, list[Any]]:
        """The photo ``data`` names and its hints, still unparsed (parsing is a job)."""
        raw = data.get("hints", [])
        if not isinstance(raw, list):
            raise HTTPException(400, "hints must be a JSON list of {x, y, color, size} objects")
        if len(raw) > self.limits.max_hints:
            raise HTTPException(
                413,
                f"{len(raw)} hints in one request; the limit is {self.limits.max_hints} "
                "(limits.max_hints)",
            )
        return self.photos.get(data["id"]), raw
