"""What one page request may carry, and reading a request's body within those limits."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from fastapi import HTTPException, Request
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser


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
