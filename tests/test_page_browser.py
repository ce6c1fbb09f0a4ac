"""The page in a real headless Chromium (Debian's, no browser download): suggested colours,
editing hints (select, move, delete, undo/redo, the keyboard), hints files, the layout at
1280x800 and at 200 % zoom, and the page staying usable while a download runs.

The server runs in this process with a tiny random network (what is tested is the page, not
the model's quality), so the whole module takes seconds. HINTCOLOR_APP_CKPT=<checkpoint>
serves a trained model instead and HINTCOLOR_SCREENSHOTS=<folder> saves the README's
screenshots there (docs/page.png, docs/page_portrait.png):

    HINTCOLOR_APP_CKPT=models/hintcolor-v1/model.ckpt HINTCOLOR_SCREENSHOTS=docs \\
        pytest tests/test_page_browser.py -k layout
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import KODAK
from PIL import Image
from test_app import CHROMIUM, SETTLED, serve
from test_page_speed import tiny_network

from hintcolor.app.server import Limits, create_app
from hintcolor.inference import Colorizer
from hintcolor.user_hints import load_hints

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run does)"
)
SAMPLE = sorted((KODAK / "val").glob("*.jpg"))[0]  # kodim03
WIDTH, HEIGHT = Image.open(SAMPLE).size
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
# every control a person uses, and the two images
CONTROLS = "button:not([hidden]), select, input:not([type=file]), canvas, #status"


class GatedColorizer(Colorizer):
    """A colorizer whose full-resolution download waits for :attr:`gate` when one is set."""

    gate: threading.Event | None = None
    started = threading.Event()

    def colorize(self, photo, hints):
        self.started.set()
        if self.gate is not None:
            assert self.gate.wait(60), "the test never released the download"
        return super().colorize(photo, hints)


@pytest.fixture(scope="module")
def app() -> Iterator[tuple[str, GatedColorizer]]:
    ckpt = os.environ.get("HINTCOLOR_APP_CKPT")
    if ckpt:
        backbone = GatedColorizer.from_checkpoint(ckpt).backbone
        colorizer = GatedColorizer(backbone, working_size=256, interactive_size=96)
    else:
        colorizer = GatedColorizer(
            tiny_network(), working_size=128, interactive_size=96, precision="32-true"
        )
    with serve(create_app(colorizer, KODAK / "val", Limits())) as url:
        yield url, colorizer


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def open_page(browser, app):
    """open_page(photo=None, viewport=(1280, 800)): a page on the app with a photo open
    (a sample, or an uploaded file); fails the test on any script error."""
    pages, errors = [], []

    def start(photo: Path | None = None, viewport: tuple[int, int] = (1280, 800)):
        page = browser.new_page(
            viewport={"width": viewport[0], "height": viewport[1]}, accept_downloads=True
        )
        pages.append(page)
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(app[0])
        page.wait_for_function("document.getElementById('samples').options.length > 4")
        if photo is None:
            page.select_option("#samples", SAMPLE.name)
        else:
            page.set_input_files("#upload", str(photo))
        page.wait_for_function("Number(document.getElementById('result').dataset.version) > 0")
        return page

    yield start
    for page in pages:
        page.close()
    assert not errors, errors


def version(page) -> int:
    return int(page.get_attribute("#result", "data-version"))


def click_photo(page, fx: float, fy: float) -> None:
    """Click the grayscale at the fraction (fx, fy) of its size; wait for the settled preview."""
    v = version(page)
    box = page.locator("#input").bounding_box()
    page.mouse.click(box["x"] + fx * box["width"], box["y"] + fy * box["height"])
    page.wait_for_function(f"Number(document.getElementById('result').dataset.version) > {v}")
    page.wait_for_function(SETTLED)


def settled_after(page, action) -> None:
    v = version(page)
    action()
    page.wait_for_function(f"Number(document.getElementById('result').dataset.version) > {v}")
    page.wait_for_function(SETTLED)


def hints(page) -> list[dict]:
    return page.evaluate("hints.map((h) => ({...h}))")


def result_ab(page, x: float, y: float) -> tuple[float, float]:
    """(a*, b*) of the preview at photo point (x, y), by the page's own Lab conversion."""
    return page.evaluate(
        """([x, y]) => {
          const s = photo.width / result.width;
          const d = resultCtx.getImageData(Math.floor(x / s), Math.floor(y / s), 1, 1).data;
          return rgbToLab(d[0] / 255, d[1] / 255, d[2] / 255).slice(1);
        }""",
        [x, y],
    )


def hue_difference(ab: tuple[float, float], other: tuple[float, float]) -> float:
    return abs(math.degrees(math.remainder(math.atan2(ab[1], ab[0]) - math.atan2(*other[::-1]),
                                           math.tau)))  # fmt: skip


def test_a_click_shows_suggestions_starts_at_one_and_another_is_applied(open_page) -> None:
    page = open_page()
    click_photo(page, 0.4, 0.5)
    swatches = page.locator("#suggestions .swatch")
    assert 6 <= swatches.count() <= 9
    assert "no colour head" in page.text_content("#suggest-source")
    [hint] = hints(page)
    offer = page.evaluate("suggested")
    start = offer["suggestions"][offer["start"]]["ab"]
    assert [hint["a"], hint["b"]] == pytest.approx(start)  # the hint starts at the suggestion
    assert math.hypot(hint["a"], hint["b"]) >= 20  # clearly coloured, not the gray mean
    assert page.locator("#suggestions .swatch.current").count() == 1
    assert hue_difference(result_ab(page, hint["x"], hint["y"]), start) < 10

    chosen = offer["suggestions"][-1]["ab"]
    settled_after(page, lambda: swatches.last.click())
    [hint] = hints(page)
    assert [hint["a"], hint["b"]] == pytest.approx(chosen)
    assert hue_difference(result_ab(page, hint["x"], hint["y"]), chosen) < 10
    assert page.locator("#recent .swatch").count() == 2  # the start colour, then this one
    assert page.locator("#suggestions .swatch").last.evaluate("b => b.matches('.current')")


def test_select_move_delete_and_undo_redo_with_keys_and_buttons(open_page) -> None:
    page = open_page()
    click_photo(page, 0.3, 0.3)
    click_photo(page, 0.7, 0.6)
    first = hints(page)[0]
    assert page.get_attribute("#input", "data-selected") == "1"
    box = page.locator("#input").bounding_box()
    at = (box["x"] + 0.3 * box["width"], box["y"] + 0.3 * box["height"])
    page.mouse.click(*at)  # on the first hint: selects it, adds nothing
    page.wait_for_function("document.getElementById('input').dataset.selected === '0'")
    assert len(hints(page)) == 2

    to = (box["x"] + 0.5 * box["width"], box["y"] + 0.2 * box["height"])
    v = version(page)
    page.mouse.move(*at)
    page.mouse.down()
    page.mouse.move(*to, steps=8)
    page.mouse.up()
    page.wait_for_function(f"Number(document.getElementById('result').dataset.version) > {v}")
    page.wait_for_function(SETTLED)
    moved = hints(page)[0]
    assert len(hints(page)) == 2 and (moved["a"], moved["b"]) == (first["a"], first["b"])
    assert moved["x"] == pytest.approx(WIDTH * 0.5, abs=4)
    assert moved["y"] == pytest.approx(HEIGHT * 0.2, abs=4)

    page.keyboard.press("Delete")
    assert len(hints(page)) == 1 and page.get_attribute("#input", "data-selected") == "-1"
    page.keyboard.press("Control+z")  # the deletion
    assert [h["x"] for h in hints(page)] == [moved["x"], hints(page)[1]["x"]]
    page.keyboard.press("Control+z")  # the move
    assert hints(page)[0]["x"] == first["x"] and hints(page)[0]["y"] == first["y"]
    page.keyboard.press("Control+Shift+z")
    assert hints(page)[0]["x"] == moved["x"]
    page.keyboard.press("Control+Shift+Z")
    assert len(hints(page)) == 1
    page.click("#undo")
    assert len(hints(page)) == 2
    page.click("#redo")
    assert len(hints(page)) == 1
    page.wait_for_function(SETTLED)
    page.keyboard.press("Escape")
    assert page.get_attribute("#input", "data-selected") == "-1"


def test_keyboard_only_upload_button_cursor_and_enter(open_page) -> None:
    page = open_page()
    page.evaluate("document.activeElement.blur()")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "upload-button"
    for _ in range(10):  # on to the grayscale
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "input":
            break
    assert page.evaluate("document.activeElement.id") == "input"
    outline = page.eval_on_selector("#input", "e => getComputedStyle(e).outlineStyle")
    assert outline not in ("none", "")  # visible focus
    width = page.evaluate("input.width")
    for key in ["ArrowRight"] * 3 + ["Shift+ArrowRight", "ArrowDown"]:
        page.keyboard.press(key)
    settled_after(page, lambda: page.keyboard.press("Enter"))
    [hint] = hints(page)
    s = WIDTH / width
    cursor = page.evaluate("cursor")
    assert hint["x"] == pytest.approx((cursor["x"] + 0.5) * s)
    assert hint["y"] == pytest.approx((cursor["y"] + 0.5) * s)
    assert cursor["x"] == width // 2 + 13
    page.keyboard.press("Enter")  # on the hint now: selects it rather than adding one
    assert len(hints(page)) == 1
    page.keyboard.press("Delete")
    assert hints(page) == []


def test_loading_a_hints_file_and_malformed_ones(open_page, tmp_path) -> None:
    page = open_page()
    good = tmp_path / "good.json"
    listed = [{"x": 100, "y": 80, "color": "#d03020", "size": 6},
              {"x": 300.5, "y": 200, "color": [20, -40]}]  # fmt: skip
    good.write_text(json.dumps({"hints": listed}))
    settled_after(page, lambda: page.set_input_files("#hints-file", str(good)))
    assert [(h["x"], h["hex"]) for h in hints(page)] == [(100, "#d03020"), (300.5, None)]
    assert "Loaded 2 hints from good.json" in page.text_content("#status")
    assert hue_difference(result_ab(page, 300.5, 200), (20, -40)) < 10

    with page.expect_download() as info:
        page.click("#download-hints")
    assert info.value.suggested_filename == "kodim03.json"
    saved = load_hints(info.value.path(), WIDTH, HEIGHT)
    assert [(h.x, h.y, h.hex) for h in saved] == [(100, 80, "#d03020"), (300.5, 200, None)]
    assert (saved[1].a, saved[1].b) == (20, -40)

    bad = {
        "broken.json": ("{not json", "not valid JSON"),
        "outside.json": ('[{"x": 99999, "y": 1, "color": "#ff0000"}]', "hint 0: (99999.0, 1.0)"),
        "dict.json": ('{"foo": 1}', "must be a JSON list"),
        "colour.json": ('[{"x": 1, "y": 1, "color": "red"}]', "is not #rrggbb"),
    }
    for name, (text, words) in bad.items():
        (tmp_path / name).write_text(text)
        page.set_input_files("#hints-file", str(tmp_path / name))
        page.wait_for_selector("#status.error")
        assert name in page.text_content("#status") and words in page.text_content("#status")
        assert len(hints(page)) == 2  # unchanged
        page.evaluate("status.classList.remove('error')")
    click_photo(page, 0.5, 0.5)  # the page still works
    assert len(hints(page)) == 3


# (point on kodim03 as fractions of its size, (a*, b*) picked for it)
PAINTED = [((0.28, 0.45), (55, 45)), ((0.5, 0.5), (-5, 70)), ((0.64, 0.55), (-45, 30)),
           ((0.8, 0.58), (15, -55)), ((0.85, 0.1), (-5, -35))]  # fmt: skip


def pick(page, a: float, b: float) -> None:
    """Click the picker's plane at (a*, b*) (moved into the gamut by the page)."""
    box = page.locator("#picker").bounding_box()
    page.mouse.click(
        box["x"] + (a + 110) / 220 * box["width"], box["y"] + (110 - b) / 220 * box["height"]
    )


def portrait(tmp_path: Path) -> Path:
    path = tmp_path / "portrait.jpg"
    Image.open(SAMPLE).transpose(Image.Transpose.ROTATE_90).save(path, quality=92)
    return path


def boxes(page) -> list[tuple[str, dict]]:
    return page.evaluate(
        """(selector) => [...document.querySelectorAll(selector)]
          .filter((e) => e.offsetParent !== null)
          .map((e) => [e.id || e.className || e.tagName, e.getBoundingClientRect().toJSON()])""",
        CONTROLS,
    )


def overlap(a: dict, b: dict) -> float:
    w = min(a["right"], b["right"]) - max(a["left"], b["left"])
    h = min(a["bottom"], b["bottom"]) - max(a["top"], b["top"])
    return max(w, 0) * max(h, 0)


@pytest.mark.parametrize("shape", ["landscape", "portrait"])
def test_layout_at_1280x800_everything_visible_without_scrolling(open_page, tmp_path, shape):
    page = open_page(None if shape == "landscape" else portrait(tmp_path))
    for (fx, fy), ab in PAINTED:  # hints on the caps and the sky, coloured in the picker
        click_photo(page, *((fx, fy) if shape == "landscape" else (fy, 1 - fx)))
        settled_after(page, lambda ab=ab: pick(page, *ab))
    controls = boxes(page)
    assert len(controls) > 20
    for name, box in controls:
        inside = box["left"] >= 0 and box["top"] >= 0 and box["right"] <= 1280
        assert inside and box["bottom"] <= 800, (name, box)
    size = page.evaluate(
        "[document.documentElement.scrollWidth, document.documentElement.scrollHeight]"
    )
    assert size == [1280, 800]  # nothing to scroll to
    regions = page.evaluate(
        """() => ['input', 'result', 'panel'].map(
          (id) => document.getElementById(id).getBoundingClientRect().toJSON())"""
    )
    assert max(regions[0]["width"], regions[0]["height"]) > 450  # the images use the room
    assert overlap(regions[0], regions[1]) == overlap(regions[1], regions[2]) == 0
    folder = os.environ.get("HINTCOLOR_SCREENSHOTS")
    if folder:
        name = "page.png" if shape == "landscape" else "page_portrait.png"
        page.screenshot(path=str(Path(folder) / name))


def test_200_percent_zoom_nothing_overlaps_every_control_reachable(open_page) -> None:
    page = open_page(viewport=(640, 400))  # 1280x800 at 200 %
    click_photo(page, 0.5, 0.5)
    controls = boxes(page)
    for i, (name, box) in enumerate(controls):
        for other, second in controls[i + 1 :]:
            assert overlap(box, second) < 1, (name, other)
    for selector in ("#upload-button", "#samples", "#hex", "#picker", "#undo", "#download",
                     "#format", "#load-hints", "#size"):  # fmt: skip
        page.locator(selector).scroll_into_view_if_needed()
        box = page.locator(selector).bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 640, selector
        assert box["y"] >= 0 and box["y"] + box["height"] <= 400, selector


def test_the_page_stays_usable_while_a_download_runs(open_page, app) -> None:
    page = open_page()
    colorizer = app[1]
    colorizer.gate, colorizer.started = threading.Event(), threading.Event()
    try:
        with page.expect_download(timeout=60_000) as info:
            page.click("#download")
            assert colorizer.started.wait(30)
            button = page.locator("#download")
            assert button.is_disabled() and button.get_attribute("aria-busy") == "true"
            assert "Preparing" in button.text_content()
            click_photo(page, 0.5, 0.5)  # answered while the download is held
            assert len(hints(page)) == 1 and button.is_disabled()
            colorizer.gate.set()
    finally:
        colorizer.gate.set()
        colorizer.gate = None
    assert info.value.suggested_filename == "kodim03_color.png"
    assert Image.open(info.value.path()).size == (WIDTH, HEIGHT)
    page.wait_for_function("!document.getElementById('download').disabled")


def test_dragging_in_the_picker_keeps_one_request_in_flight_and_ends_full_size(
    open_page,
) -> None:
    page = open_page()
    page.evaluate(
        """() => {
          window.inFlight = 0; window.maxInFlight = 0; window.previews = 0;
          const real = window.fetch;
          window.fetch = async (url, options) => {
            if (!String(url).endsWith('/api/colorize')) return real(url, options);
            window.inFlight += 1; window.previews += 1;
            window.maxInFlight = Math.max(window.maxInFlight, window.inFlight);
            try { return await real(url, options); } finally { window.inFlight -= 1; }
          };
        }"""
    )
    click_photo(page, 0.5, 0.5)
    before = page.evaluate("window.previews")
    box = page.locator("#picker").bounding_box()
    page.mouse.move(box["x"] + 0.5 * box["width"], box["y"] + 0.5 * box["height"])
    page.mouse.down()
    for t in np.linspace(0, 1, 30):
        angle = 2 * math.pi * t
        x = box["x"] + box["width"] * (0.5 + 0.3 * math.cos(angle))
        page.mouse.move(x, box["y"] + box["height"] * (0.5 - 0.3 * math.sin(angle)))
    page.mouse.up()
    page.wait_for_function(SETTLED)
    assert page.evaluate("window.maxInFlight") == 1
    assert page.evaluate("window.previews") - before <= 31  # never more than the edits
    [hint] = hints(page)
    light = page.evaluate("lightnessAt(hints[0].x, hints[0].y)")
    rgb = page.evaluate(f"labToRgb({light}, {hint['a']}, {hint['b']})")
    assert all(-1e-3 <= c <= 1 + 1e-3 for c in rgb)  # the picker keeps it in the gamut
    assert page.get_attribute("#result", "data-quality") == "full"
    assert hue_difference(result_ab(page, hint["x"], hint["y"]), (hint["a"], hint["b"])) < 10
    assert page.locator("#recent .swatch").count() == 2


@pytest.fixture(scope="module")
def head_url() -> Iterator[str]:
    """The app with a tiny random network that has a colour-distribution head."""
    from conftest import color_head

    network = color_head(tiny_network(), width=8)
    colorizer = Colorizer(network, working_size=128, interactive_size=96, precision="32-true")
    with serve(create_app(colorizer, KODAK / "val", Limits())) as url:
        yield url


def test_suggestions_from_a_colour_head_are_shown_with_their_probabilities(browser, head_url):
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    try:
        page.goto(head_url)
        page.wait_for_function("document.getElementById('samples').options.length > 4")
        page.select_option("#samples", SAMPLE.name)
        page.wait_for_function("Number(document.getElementById('result').dataset.version) > 0")
        click_photo(page, 0.4, 0.5)
        assert "likeliest colours" in page.text_content("#suggest-source")
        offer = page.evaluate("suggested")
        assert offer["source"] == "distribution" and 1 <= len(offer["suggestions"]) <= 8
        [hint] = hints(page)
        start = offer["suggestions"][offer["start"]]["ab"]
        assert [hint["a"], hint["b"]] == pytest.approx(start)
        titles = page.eval_on_selector_all("#suggestions .swatch", "bs => bs.map((b) => b.title)")
        assert len(titles) == len(offer["suggestions"]) and all(" %" in t for t in titles)
        other = offer["suggestions"][-1]["ab"]
        settled_after(page, lambda: page.locator("#suggestions .swatch").last.click())
        assert [hints(page)[0]["a"], hints(page)[0]["b"]] == pytest.approx(other)
    finally:
        page.close()
