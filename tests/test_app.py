"""The interactive page: its HTTP API, malformed requests, its limits, heavy work off the event
loop under a real uvicorn server, and a real headless Chromium session."""

from __future__ import annotations

import asyncio
import copy
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from base64 import b64decode
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import uvicorn
from conftest import KODAK, ROOT, angle_between, lab_hue, midtone_photo
from fastapi import HTTPException
from fastapi.testclient import TestClient
from PIL import Image

from hintcolor import inference, lab_tables
from hintcolor.app import photos
from hintcolor.app.lanes import Lane
from hintcolor.app.server import Limits, create_app
from hintcolor.data.images import load_rgb
from hintcolor.inference import Colorizer, working_shape
from hintcolor.user_hints import load_hints, parse_hints

ARTIFACTS = ROOT / "logs" / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SAMPLE = sorted((KODAK / "val").glob("*.jpg"))[0]


def bad_files(tmp: Path) -> dict[str, Path]:
    """A text file named .png, an empty file, and a real 20000x20000 PNG (1-bit, ~50 KB)."""
    text = tmp / "notes.png"
    text.write_text("this is not an image\n" * 20)
    empty = tmp / "empty.png"
    empty.write_bytes(b"")
    huge = tmp / "huge.png"
    Image.new("1", (20000, 20000)).save(huge)
    return {"text": text, "empty": empty, "huge": huge}


JSON = "application/json"


@pytest.fixture(scope="module")
def colorizer(trained_checkpoint) -> Colorizer:
    return Colorizer.from_checkpoint(trained_checkpoint, working_size=128, interactive_size=96)


@pytest.fixture(scope="module")
def client(colorizer) -> TestClient:
    return TestClient(create_app(colorizer, KODAK / "val", Limits()))


def preview_pixels(response) -> np.ndarray:
    """A preview answer (raw RGBA, X-Width x X-Height) as an (h, w, 3) array."""
    assert response.status_code == 200, response.content[:200]
    w, h = int(response.headers["X-Width"]), int(response.headers["X-Height"])
    return np.frombuffer(response.content, np.uint8).reshape(h, w, 4)[..., :3]


def test_api_upload_colorize_download(client) -> None:
    assert len(client.get("/api/samples").json()) == 4
    assert "<canvas" in client.get("/").text and client.get("/static/app.js").status_code == 200
    photo = client.post("/api/photos", files={"file": ("dir/a b.jpg", SAMPLE.read_bytes())}).json()
    assert (photo["width"], photo["height"]) == Image.open(SAMPLE).size
    assert photo["result"].startswith("data:image/png;base64,") and photo["name"] == "a b"
    first = np.asarray(Image.open(io.BytesIO(b64decode(photo["result"].split(",")[1]))))
    hints = [{"x": 100, "y": 100, "color": "#e02020", "size": 12}]
    response = client.post("/api/colorize", json={"id": photo["id"], "hints": hints})
    full = preview_pixels(response)
    assert response.headers["X-Hints"] == "1" and float(response.headers["X-Server-Ms"]) > 0
    assert full.shape == first.shape and not np.array_equal(full, first)
    assert response.headers["X-Fast"] == "0"
    fast = client.post("/api/colorize", json={"id": photo["id"], "hints": hints, "fast": True})
    assert fast.headers["X-Fast"] == "1" and preview_pixels(fast).shape == full.shape
    download = client.post("/api/download", json={"id": photo["id"], "hints": hints})
    assert Image.open(io.BytesIO(download.content)).size == Image.open(SAMPLE).size
    assert download.headers["content-type"] == "image/png"
    assert 'filename="a b_color.png"' in download.headers["content-disposition"]
    jpeg = client.post("/api/download", json={"id": photo["id"], "hints": hints, "format": "jpeg"})
    assert Image.open(io.BytesIO(jpeg.content)).format == "JPEG"
    assert 'filename="a b_color.jpg"' in jpeg.headers["content-disposition"]
    refused = client.post("/api/download", json={"id": photo["id"], "format": "gif"})
    assert refused.status_code == 400 and "png, jpeg" in refused.json()["error"]


def test_bad_uploads_get_clear_messages_and_the_server_keeps_answering(client, tmp_path):
    files = bad_files(tmp_path)
    expected = {"text": "not an image", "empty": "empty", "huge": "megapixels"}
    for name, path in files.items():
        response = client.post("/api/photos", files={"file": (path.name, path.read_bytes())})
        assert 400 <= response.status_code < 500
        assert expected[name] in response.json()["error"]
    jpeg = SAMPLE.read_bytes()
    bad = [  # (request keywords, status, words of the message)
        ({"json": {"file": "a.jpg"}}, 415, "multipart/form-data"),
        ({"files": {"photo": ("a.jpg", jpeg)}}, 400, "no 'file' part"),
        ({"files": [("file", ("a.jpg", jpeg)), ("file", ("b.jpg", jpeg))]}, 400, "not a valid"),
        ({"content": b"--x\r\ngarbage", "headers": {"Content-Type": "multipart/form-data"}},
         400, "not a valid form"),
        ({"content": b"x", "headers": {"Content-Type": "multipart/form-data; boundary=x",
                                       "Content-Length": str(10**9)}}, 413, "larger than 20 MB"),
    ]  # fmt: skip
    for kwargs, status, words in bad:
        response = client.post("/api/photos", **kwargs)
        assert (response.status_code, words) == (status, words) and words in response.json()[
            "error"
        ]
    assert client.post("/api/samples/nope.jpg").status_code == 404
    for method, path, status in (("GET", "/api/colorize", 405), ("GET", "/api/nope", 404)):
        response = client.request(method, path)
        assert response.status_code == status and response.json()["error"]
    assert client.post("/api/samples/" + SAMPLE.name).status_code == 200


BIG = "1" + "0" * 400  # a coordinate float() cannot take


def malformed_requests(photo_id: str) -> list[tuple[bytes, str | None, int, str]]:
    """(body, Content-Type, status, words of the message) of a click or download request."""

    def hints(*items: str) -> bytes:
        return f'{{"id": "{photo_id}", "hints": [{", ".join(items)}]}}'.encode()

    ok = '{"x": 10, "y": 10, "color": "#ff0000"}'
    return [
        (b"{not json", JSON, 400, "not valid JSON"),
        (b"[" * 1000 + b"]" * 1000, JSON, 400, "not valid JSON"),  # RecursionError in json
        (b'{"id": "\xff\xfe"}', JSON, 400, "not valid JSON"),
        (hints(ok), "text/plain", 415, "application/json"),
        (hints(ok), None, 415, "application/json"),
        (hints(ok) + b" " * 300_000, JSON, 413, "limits.max_request_kb"),
        (b"[]", JSON, 400, '"id"'),
        (b'{"hints": []}', JSON, 400, '"id"'),
        (b'{"id": 5, "hints": []}', JSON, 400, '"id"'),
        (f'{{"id": "{photo_id}", "hints": "red"}}'.encode(), JSON, 400, "must be a JSON list"),
        (hints(*[ok] * 501), JSON, 413, "limit is 500 (limits.max_hints)"),
        (hints(f'{{"x": {BIG}, "y": 1, "color": "#ff0000"}}'), JSON, 400, "'x' must be a finite"),
        (hints(f'{{"x": 1, "y": 1, "color": [{BIG}, 0]}}'), JSON, 400, "'a' must be a finite"),
        (hints('{"x": NaN, "y": 1, "color": "#ff0000"}'), JSON, 400, "'x' must be a finite"),
        (hints('{"x": "1", "y": 1, "color": "#ff0000"}'), JSON, 400, "'x' must be a finite"),
        (hints('{"x": 1, "y": 1}'), JSON, 400, "color must be"),
        (hints("5"), JSON, 400, "hint 0: expected an object"),
        (hints(ok, '{"x": 1, "y": 99999, "color": "#ff0000"}'), JSON, 400, "hint 1: (1.0, 99999"),
        (hints(f'{{"x": 1, "y": 1, "color": "#ff0000", "size": {BIG}}}'), JSON, 400,
         "size must be a number of pixels in 1..256"),  # 64 working px of 128 on a 512 px photo
        (b'{"id": "gone", "hints": []}', JSON, 404, "upload it again"),
    ]  # fmt: skip


@pytest.mark.parametrize("path", ["/api/colorize", "/api/download", "/api/hints", "/api/suggest"])
def test_malformed_hint_requests_are_4xx_naming_the_problem(client, path) -> None:
    photo = client.post("/api/samples/" + SAMPLE.name).json()
    point = {"x": 10, "y": 10} if path == "/api/suggest" else {}
    for body, content_type, status, words in malformed_requests(photo["id"]):
        if point and body.startswith(b"{") and b'"hints"' in body:  # a valid point besides
            body = body[:-1] + b', "x": 10, "y": 10}'
        headers = {"Content-Type": content_type} if content_type else {}
        response = client.post(path, content=body, headers=headers)
        got = (response.status_code, response.json().get("error", ""))
        assert got[0] == status and words in got[1], (body[:80], got)
    assert client.post(path, json={"id": photo["id"], "hints": [], **point}).status_code == 200


def test_kept_photos_are_bounded_in_bytes_least_recently_used_dropped(colorizer) -> None:
    data = SAMPLE.read_bytes()
    photo = photos.open_photo(data, colorizer, 10**9, 10**9)
    colorizer.preview(photo, [])  # as the server opens it: its caches are counted too
    one = photo.nbytes
    assert len(data) <= one < 512 * 341 * 3  # the file's bytes, not its decoded pixels
    limits = Limits(max_photo_memory_mb=2.5 * one / 1e6)  # room for two
    client = TestClient(create_app(colorizer, KODAK / "val", limits))
    first, second = (client.post("/api/samples/" + SAMPLE.name).json()["id"] for _ in range(2))
    assert client.post("/api/colorize", json={"id": first}).status_code == 200  # first: recent
    third = client.post("/api/samples/" + SAMPLE.name).json()["id"]
    status = {i: client.post("/api/colorize", json={"id": i}).status_code for i in (first, third)}
    assert status == {first: 200, third: 200}
    assert client.post("/api/colorize", json={"id": second}).status_code == 404
    big = io.BytesIO()
    Image.open(SAMPLE).resize((1200, 900)).save(big, format="PNG")
    refused = client.post("/api/photos", files={"file": ("big.png", big.getvalue())})
    assert refused.status_code == 413 and "limits.max_photo_memory_mb" in refused.json()["error"]


def test_download_in_strips_gives_the_same_bits_as_one_full_size_pass(colorizer, monkeypatch):
    rgb = np.asarray(Image.open(SAMPLE).convert("RGB").resize((640, 427)))
    photo = colorizer.prepare(rgb)
    hints = parse_hints([{"x": 300, "y": 200, "color": "#2040e0", "size": 60}])
    ab = F.interpolate(colorizer.predict_ab(photo, hints), size=photo.photo_size, mode="bilinear")
    whole = lab_tables.to_srgb8(lab_tables.lightness(rgb), ab)
    monkeypatch.setattr(inference, "STRIP_PIXELS", 20_000)  # 16 rows, a short last strip
    assert np.array_equal(colorizer.colorize(photo, hints), whole)


def test_a_photo_opens_from_a_reduced_decode_and_decodes_in_full_only_for_a_download(
    colorizer, monkeypatch, tmp_path
) -> None:
    """A big JPEG's preview comes from its DCT-scaled decode; EXIF rotation is applied to
    both decodes as load_rgb applies it; the full resolution is decoded when downloaded."""
    rotated = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: turn 90 degrees clockwise to show
    Image.open(SAMPLE).resize((2048, 1365)).save(rotated, "JPEG", exif=exif, quality=90)
    data = rotated.getvalue()
    calls = []
    real = photos.load_rgb

    def counted(file, max_side=None):
        calls.append(max_side)
        return real(file, max_side=max_side)

    monkeypatch.setattr(photos, "load_rgb", counted)
    photo = photos.open_photo(data, colorizer, 10**8, 10**8)
    assert calls == [colorizer.working_size]  # reduced only
    assert photo.photo_size == (2048, 1365)  # as shown: portrait
    assert photo.lightness[colorizer.working_size].shape[-2:] == (128, 85)
    full = load_rgb(io.BytesIO(data))
    assert full.shape[:2] == (2048, 1365)
    # the preview's lightness is the full photo's at the working size, whichever decode
    reference = colorizer.prepare(full).lightness[colorizer.working_size]
    assert (photo.lightness[colorizer.working_size] - reference).abs().mean() < 0.01
    assert np.array_equal(photo.full.load(), full) and calls[-1] is None
    client = TestClient(create_app(colorizer, None, Limits()))
    opened = client.post("/api/photos", files={"file": ("r.jpg", data)}).json()
    assert (opened["width"], opened["height"]) == (1365, 2048)
    download = client.post("/api/download", json={"id": opened["id"], "format": "jpeg"})
    assert Image.open(io.BytesIO(download.content)).size == (1365, 2048)
    truncated = client.post("/api/photos", files={"file": ("t.jpg", data[: len(data) // 2])})
    assert truncated.status_code == 400 and "unreadable" in truncated.json()["error"]


def test_suggestions_without_a_colour_head_and_hints_files_checked_by_the_server(client):
    photo = client.post("/api/samples/" + SAMPLE.name).json()
    point = {"id": photo["id"], "hints": [], "x": 250, "y": 170}
    body = client.post("/api/suggest", json=point).json()
    assert body["source"] == "prediction" and 0 < body["lightness"] < 100
    assert 6 <= len(body["suggestions"]) <= 8
    assert all(s["probability"] is None for s in body["suggestions"])
    start = body["suggestions"][body["start"]]
    assert np.hypot(*start["ab"]) >= 20  # a new hint starts clearly coloured
    assert len(client.post("/api/suggest", json={**point, "count": 3}).json()["suggestions"]) <= 3
    for bad, words in (
        ({"x": 600}, "lies outside the 512x341 photo"),
        ({"y": "1"}, "'y' must be a finite number"),
        ({"count": 0}, "count must be a whole number in 1..16"),
        ({"count": 2.5}, "count must be a whole number"),
    ):
        response = client.post("/api/suggest", json={**point, **bad})
        assert response.status_code == 400 and words in response.json()["error"], bad
    # a new hint's click: suggestions and the preview with the hint in one request
    added = client.post("/api/colorize", json={**point, "add": {"x": 250, "y": 170, "size": 8}})
    offer = json.loads(added.headers["X-Suggestions"])
    assert added.headers["X-Hints"] == "1" and offer["suggestions"] == body["suggestions"]
    assert preview_pixels(added).shape == (85, 128, 3)
    for add, words in (("here", "add must be"), ({"x": 9999, "y": 1}, "outside the 512x341")):
        refused = client.post("/api/colorize", json={**point, "add": add})
        assert refused.status_code == 400 and words in refused.json()["error"]
    loaded = client.post("/api/hints", json={"id": photo["id"], "hints": [
        {"x": 10, "y": 20.5, "color": "#FF0000", "size": 3}, {"x": 5, "y": 6, "color": [30, -40]},
    ]}).json()["hints"]  # fmt: skip
    assert loaded[0]["hex"] == "#ff0000" and loaded[0]["a"] > 60 and loaded[0]["size"] == 3
    assert loaded[1] == {"x": 5, "y": 6, "a": 30, "b": -40, "size": 6, "hex": None}


def test_a_full_lane_answers_busy_at_once_and_takes_jobs_again_when_free() -> None:
    release = threading.Event()

    async def scenario() -> list:
        lane = Lane("test", workers=1, queue=1, threads=lambda: 1, nice=3)
        running = asyncio.ensure_future(lane.run(lambda: release.wait(30) and "ran"))
        queued = asyncio.ensure_future(lane.run(lambda: "queued"))
        await asyncio.sleep(0)  # both have taken their slots
        with pytest.raises(HTTPException) as refused:
            await lane.run(lambda: "third")
        assert (refused.value.status_code, refused.value.detail) == (503, "busy, try again")
        assert refused.value.headers["Retry-After"] and not queued.done()
        release.set()
        done = [await running, await queued]  # their slots are free again
        return [*done, await lane.run(lambda: (torch.get_num_threads(), os.nice(0)))]

    nice = min(19, os.nice(0) + 3) if sys.platform == "linux" else os.nice(0)
    assert asyncio.run(scenario()) == ["ran", "queued", (1, nice)]


# ---- a real server ----------------------------------------------------------------------------


@contextmanager
def serve(app) -> Iterator[str]:
    """``app`` under uvicorn on a free port of 127.0.0.1, in a thread of this process."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started and thread.is_alive() and time.time() < deadline:
        time.sleep(0.02)
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def http(url: str, body: dict | None = None) -> tuple[int, bytes]:
    """GET, or POST ``body`` as JSON; (status, body), within 30 s or the test fails."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data, {"Content-Type": JSON})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_page_and_clicks_answer_while_a_download_runs_and_a_full_queue_is_503(colorizer):
    started, release = threading.Event(), threading.Event()

    def held_colorize(photo, hints):  # a download that lasts until the test lets it go
        started.set()
        assert release.wait(60)
        return colorizer.colorize(photo, hints)

    held = copy.copy(colorizer)
    held.colorize = held_colorize
    app = create_app(held, KODAK / "val", Limits(workers=1, click_workers=1, queue=0))
    with serve(app) as url, ThreadPoolExecutor(2) as pool:
        photo = json.loads(http(f"{url}/api/samples/{SAMPLE.name}", {})[1])["id"]
        other = json.loads(http(f"{url}/api/samples/{SAMPLE.name}", {})[1])["id"]
        download = pool.submit(http, f"{url}/api/download", {"id": photo, "hints": []})
        try:
            assert started.wait(30)
            page, samples = http(url + "/"), http(url + "/api/samples")
            click = http(f"{url}/api/colorize", {"id": other, "hints": [
                {"x": 100, "y": 100, "color": "#e02020", "size": 12}]})  # fmt: skip
            busy = http(f"{url}/api/download", {"id": other, "hints": []})
            assert not download.done()  # all of the above answered while it ran
        finally:
            release.set()
        assert page[0] == samples[0] == click[0] == 200 and b"<canvas" in page[1]
        h, w = working_shape(*Image.open(SAMPLE).size[::-1], colorizer.working_size)
        assert len(click[1]) == h * w * 4  # the preview's RGBA
        assert busy[0] == 503 and json.loads(busy[1]) == {"error": "busy, try again"}
        status, png = download.result(timeout=60)
        assert status == 200 and Image.open(io.BytesIO(png)).size == Image.open(SAMPLE).size
        assert http(f"{url}/api/download", {"id": other, "hints": []})[0] == 200  # lane free


def test_a_real_download_leaves_the_event_loop_free(colorizer, tmp_path) -> None:
    """Not held: the real colorize and PNG encode of a 12 MP photo run in threads that leave
    the loop (and the GIL) to the page's other requests."""
    big = tmp_path / "big.jpg"
    Image.open(SAMPLE).resize((4200, 2800), Image.Resampling.BICUBIC).save(big, quality=90)
    started = threading.Event()

    def watched_colorize(photo, hints):
        started.set()
        return colorizer.colorize(photo, hints)

    watched = copy.copy(colorizer)
    watched.colorize = watched_colorize
    with serve(create_app(watched, KODAK / "val", Limits())) as url, ThreadPoolExecutor(1) as pool:
        body, headers = multipart_file("big.jpg", big.read_bytes())
        request = urllib.request.Request(url + "/api/photos", body, headers)
        with urllib.request.urlopen(request, timeout=120) as response:
            photo = json.loads(response.read())["id"]
        small = json.loads(http(f"{url}/api/samples/{SAMPLE.name}", {})[1])["id"]
        download = pool.submit(http, f"{url}/api/download", {"id": photo, "hints": []})
        assert started.wait(60)
        page = http(url + "/")
        click = http(f"{url}/api/colorize", {"id": small, "hints": []})
        assert not download.done()  # answered while the 12 MP colorize + PNG encode ran
        assert page[0] == click[0] == 200
        status, png = download.result(timeout=120)
        assert status == 200 and Image.open(io.BytesIO(png)).size == (4200, 2800)


def multipart_file(name: str, data: bytes) -> tuple[bytes, dict[str, str]]:
    boundary = "hintcolor-test-boundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    body = head + data + f"\r\n--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


# ---- a real browser ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served_app(tmp_path, trained_checkpoint):
    """`python src/app.py` as a user starts it, on a free port of 127.0.0.1.

    HINTCOLOR_APP_CKPT=<checkpoint> serves that model instead of the test's small one (how
    the README's screenshot was taken)."""
    port = free_port()
    ckpt = os.environ.get("HINTCOLOR_APP_CKPT", str(trained_checkpoint))
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "src" / "app.py"), f"ckpt_path={ckpt}",
         f"port={port}", f"hydra.run.dir={tmp_path / 'app'}"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url + "/api/samples", timeout=1)
            break
        except OSError:
            if proc.poll() is not None:
                pytest.fail(f"app exited: {proc.stdout.read()}")
            time.sleep(0.3)
    else:
        proc.kill()
        pytest.fail("app did not start within 60 s")
    yield url
    proc.terminate()
    proc.wait(timeout=10)


READ_PIXEL = """([x, y]) => Array.from(
  document.getElementById('result').getContext('2d').getImageData(x, y, 1, 1).data)"""
SET_HEX = """(el, value) => {
  el.value = value; el.dispatchEvent(new Event('change', {bubbles: true}));
}"""
# the preview shown is the full working-size result of the hints as they are, nothing in flight
SETTLED = (
    "document.getElementById('result').dataset.current === 'true' && "
    "document.getElementById('result').dataset.updating !== 'true'"
)


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run does)")
def test_browser_upload_three_hints_downloads_and_bad_files(served_app, tmp_path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    flags = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=flags, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 800}, accept_downloads=True)
        page.goto(served_app)
        page.wait_for_function("document.getElementById('samples').options.length > 4")

        def version() -> int:
            return int(page.get_attribute("#result", "data-version"))

        def wait_newer(v: int) -> None:
            page.wait_for_function(
                f"Number(document.getElementById('result').dataset.version) > {v}", timeout=30000
            )

        photo = midtone_photo(tmp_path / "photo.png")
        page.set_input_files("#upload", str(photo))
        wait_newer(0)
        assert "automatic colorization" in page.text_content("#status")
        first = page.evaluate("document.getElementById('result').toDataURL()")

        box = page.locator("#input").bounding_box()
        size = page.evaluate("[document.getElementById('input').width, "
                             "document.getElementById('input').height]")  # fmt: skip
        chosen = [((0.25, 0.3), "#e02020"), ((0.5, 0.7), "#20c040"), ((0.8, 0.4), "#2040e0")]
        pixels = []
        for (fx, fy), colour in chosen:
            v = version()
            page.click("#input", position={"x": fx * box["width"], "y": fy * box["height"]})
            wait_newer(v)
            page.wait_for_function(SETTLED)
            v = version()
            page.eval_on_selector("#hex", SET_HEX, colour)
            wait_newer(v)
            pixels.append((int(fx * size[0]), int(fy * size[1])))
        page.wait_for_function(SETTLED)
        assert page.evaluate("document.getElementById('result').toDataURL()") != first
        assert "3 hints" in page.text_content("#hint-count")
        for (px, py), (_, colour) in zip(pixels, chosen, strict=True):
            got = page.evaluate(READ_PIXEL, [px, py])
            want, _ = lab_hue(np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)]))
            hue, chroma = lab_hue(np.array(got[:3]))
            assert chroma > 15 and angle_between(hue, want) < 35, (colour, got)
        page.screenshot(path=str(ARTIFACTS / "app.png"))

        with page.expect_download() as info:
            page.click("#download-hints")
        assert info.value.suggested_filename == "photo.json"
        width, height = Image.open(photo).size
        hints = load_hints(info.value.path(), width, height)
        assert [h.hex for h in hints] == [c for _, c in chosen]
        with page.expect_download() as info:
            page.click("#download")
        assert info.value.suggested_filename == "photo_color.png"
        assert Image.open(info.value.path()).size == (width, height)

        for name, path in bad_files(tmp_path).items():
            page.set_input_files("#upload", str(path))
            page.wait_for_selector("#status.error", timeout=30000)
            message = page.text_content("#status")
            assert {"text": "not an image", "empty": "empty", "huge": "megapixels"}[name] in message
            page.evaluate("document.getElementById('status').classList.remove('error')")
        v = version()
        page.select_option("#samples", SAMPLE.name)  # the server still answers
        wait_newer(v)
        browser.close()
