"""The interactive page: its HTTP API, bad uploads, and a real headless Chromium session."""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from conftest import KODAK, ROOT, angle_between, lab_hue, midtone_photo
from fastapi.testclient import TestClient
from PIL import Image

from hintcolor.app.server import Limits, create_app
from hintcolor.inference import Colorizer
from hintcolor.user_hints import load_hints

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


@pytest.fixture(scope="module")
def client(trained_checkpoint) -> TestClient:
    colorizer = Colorizer.from_checkpoint(trained_checkpoint, working_size=128)
    return TestClient(create_app(colorizer, KODAK / "val", Limits()))


def test_api_upload_colorize_download(client) -> None:
    assert len(client.get("/api/samples").json()) == 4
    assert "<canvas" in client.get("/").text and client.get("/static/app.js").status_code == 200
    photo = client.post("/api/photos", files={"file": ("a.jpg", SAMPLE.read_bytes())}).json()
    assert (photo["width"], photo["height"]) == Image.open(SAMPLE).size
    assert photo["result"].startswith("data:image/png;base64,")
    hints = [{"x": 100, "y": 100, "color": "#e02020", "size": 12}]
    body = client.post("/api/colorize", json={"id": photo["id"], "hints": hints}).json()
    assert body["hints"] == 1 and body["ms"] > 0 and body["result"] != photo["result"]
    full = client.post("/api/download", json={"id": photo["id"], "hints": hints})
    assert Image.open(io.BytesIO(full.content)).size == Image.open(SAMPLE).size


def test_bad_requests_get_clear_messages_and_the_server_keeps_answering(client, tmp_path):
    files = bad_files(tmp_path)
    expected = {"text": "not an image", "empty": "empty", "huge": "megapixels"}
    for name, path in files.items():
        response = client.post("/api/photos", files={"file": (path.name, path.read_bytes())})
        assert 400 <= response.status_code < 500
        assert expected[name] in response.json()["error"]
    assert client.post("/api/colorize", content=b"{not json").status_code == 400
    missing = client.post("/api/colorize", json={"id": "nope", "hints": []})
    assert missing.status_code == 404 and "upload it again" in missing.json()["error"]
    photo = client.post("/api/samples/" + SAMPLE.name).json()
    bad_hint = client.post("/api/colorize", json={"id": photo["id"], "hints": [{"x": 1}]})
    assert bad_hint.status_code == 400 and "hint 0" in bad_hint.json()["error"]
    assert client.post("/api/colorize", json={"id": photo["id"], "hints": []}).status_code == 200


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


READ_PIXEL = """([x, y]) => {
  const img = document.getElementById('result');
  const c = document.createElement('canvas');
  c.width = img.naturalWidth; c.height = img.naturalHeight;
  const ctx = c.getContext('2d');
  ctx.drawImage(img, 0, 0);
  return Array.from(ctx.getImageData(x, y, 1, 1).data);
}"""
SET_COLOR = """(el, value) => {
  el.value = value; el.dispatchEvent(new Event('input', {bubbles: true}));
}"""


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
        first = page.get_attribute("#result", "src")

        box = page.locator("#input").bounding_box()
        size = page.evaluate("[document.getElementById('input').width, "
                             "document.getElementById('input').height]")  # fmt: skip
        chosen = [((0.25, 0.3), "#e02020"), ((0.5, 0.7), "#20c040"), ((0.8, 0.4), "#2040e0")]
        pixels = []
        for (fx, fy), colour in chosen:
            v = version()
            page.click("#input", position={"x": fx * box["width"], "y": fy * box["height"]})
            wait_newer(v)
            v = version()
            page.eval_on_selector("#color", SET_COLOR, colour)
            wait_newer(v)
            pixels.append((int(fx * size[0]), int(fy * size[1])))
        assert page.get_attribute("#result", "src") != first
        assert "3 hints" in page.text_content("#hint-count")
        for (px, py), (_, colour) in zip(pixels, chosen, strict=True):
            got = page.evaluate(READ_PIXEL, [px, py])
            want, _ = lab_hue(np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)]))
            hue, chroma = lab_hue(np.array(got[:3]))
            assert chroma > 15 and angle_between(hue, want) < 35, (colour, got)
        page.screenshot(path=str(ARTIFACTS / "app.png"))

        with page.expect_download() as info:
            page.click("#download-hints")
        width, height = Image.open(photo).size
        hints = load_hints(info.value.path(), width, height)
        assert [h.hex for h in hints] == [c for _, c in chosen]
        with page.expect_download() as info:
            page.click("#download")
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
