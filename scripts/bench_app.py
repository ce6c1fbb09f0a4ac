"""Is the page fast? Clicks in a real browser, a 24-megapixel photo, and the server while a
download runs, against the real server with the shipped model.

    python scripts/bench_app.py [--ckpt best.ckpt] [--size 6000x4000] [--clicks 30]

Starts `python src/app.py` (conf/app.yaml as `make app` uses it; the shipped model unless
--ckpt) on a free port of 127.0.0.1 and measures:

1. Clicks in headless Chromium (Debian's /usr/bin/chromium, as the browser tests drive it): a
   Kodak photo at 768x512 uploaded, then --clicks clicks on its grayscale, each once the page
   has settled (the previous click's full working-size preview shown, nothing in flight): ms
   from the click's input event to the updated preview drawn (bars: median <= 60, p95 <= 150),
   and to the settled full working-size preview; the server's share of each (its own timing
   of the suggestion and of the preview).
2. A 24-megapixel JPEG (a Kodak photo upscaled): upload -> preview shown in the browser (bar:
   <= 3 s), and the full-resolution download as PNG and as JPEG (bar: <= 5 s), with where a
   download's time goes (measured again in this process: decode, lightness, network,
   upsampling, Lab -> RGB, encoding).
3. `GET /` and a click (HTTP) idle and while that download runs (bar: both within 200 ms).

Other work on the machine slows every number: the report gives the load average.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("HINTCOLOR_ROOT", str(ROOT))
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import torch  # noqa: E402
from PIL import Image  # noqa: E402
from reports import publish  # noqa: E402

KODAK = ROOT / "data" / "kodak24"
SAMPLE = sorted((KODAK / "val").glob("*.jpg"))[0]
CLICK_BARS_MS = (60.0, 150.0)  # median, p95
UPLOAD_BAR_S, DOWNLOAD_BAR_S, BUSY_BAR_MS = 3.0, 5.0, 200.0
# film grain on the big photo: a camera's 24-megapixel JPEG at quality 90 is ~8-12 MB
GRAIN = 6.0
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(ckpt: Path | None, workdir: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    log = (workdir / "app.log").open("w")
    model = [f"ckpt_path={ckpt}"] if ckpt else []  # none: the shipped model
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "src" / "app.py"), *model, f"port={port}",
         f"hydra.run.dir={workdir / 'app'}"],
        cwd=workdir, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url + "/api/samples", timeout=2)
            return proc, url
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.3)
    proc.kill()
    raise SystemExit(f"the server did not start: {(workdir / 'app.log').read_text()[-2000:]}")


def request(url: str, data: bytes | None = None, content_type: str = "application/json"):
    """(status, body, seconds) of one GET, or POST of ``data``."""
    req = urllib.request.Request(url, data, {"Content-Type": content_type} if data else {})
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=300) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, body = error.code, error.read()
    return status, body, time.perf_counter() - start


def upload(url: str, name: str, data: bytes) -> tuple[dict, float]:
    boundary = "bench-app-boundary"
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"'
    body = f"{head}\r\n\r\n".encode() + data + f"\r\n--{boundary}--\r\n".encode()
    status, reply, seconds = request(
        url + "/api/photos", body, f"multipart/form-data; boundary={boundary}"
    )
    if status != 200:
        raise SystemExit(f"upload failed: {status} {reply[:200]!r}")
    return json.loads(reply), seconds


def kodak_jpeg(size: tuple[int, int], path: Path | None = None, grain: float = 0.0) -> bytes:
    """A Kodak photo resized to ``size``, as a camera's JPEG (written to ``path`` if given).
    ``grain``: the standard deviation of added noise (8-bit levels): an upscaled photo is
    smoother than a camera's, so its JPEG and PNG would be smaller and faster than real ones."""
    import numpy as np

    buffer = io.BytesIO()
    img = Image.open(SAMPLE).convert("RGB").resize(size, Image.Resampling.BICUBIC)
    if grain:
        noise = np.random.default_rng(0).normal(0, grain, (size[1], size[0], 1))
        img = Image.fromarray(np.clip(np.asarray(img) + noise, 0, 255).astype(np.uint8))
    img.save(buffer, format="JPEG", quality=90)
    if path:
        path.write_bytes(buffer.getvalue())
    return buffer.getvalue()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


# ---- the browser ----------------------------------------------------------------------------

# Installed in the page: each click's input-event time, the first preview drawn after it and the
# settled full working-size one, with the server's own timings (the page's data attributes).
WATCH = """() => {
  window.clickLog = [];
  const input = document.getElementById('input'), result = document.getElementById('result');
  input.addEventListener('pointerdown', (e) => {
    window.clickLog.push({start: e.timeStamp, version: result.dataset.version, first: null,
      settled: null});
  }, {capture: true});
  new MutationObserver(() => {
    const click = window.clickLog[window.clickLog.length - 1];
    if (!click) return;
    const now = performance.now();
    if (click.first === null && result.dataset.version !== click.version) {
      click.first = now;
      click.firstServerMs = Number(result.dataset.serverMs);
      click.threads = Number(result.dataset.threads);
      click.quality = result.dataset.quality;
      requestAnimationFrame(() => { click.painted = performance.now(); });
    }
    if (click.settled === null && result.dataset.current === 'true') {
      click.settled = now;
      click.fullServerMs = Number(result.dataset.serverMs);
    }
  }).observe(result, {attributes: true, attributeFilter: ['data-version', 'data-current']});
}"""
SETTLED = (
    "document.getElementById('result').dataset.current === 'true' && "
    "document.getElementById('result').dataset.updating !== 'true'"
)


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        raise SystemExit("Debian's chromium is not installed (apt-get install chromium)")
    return found


def open_in_browser(page, url: str, photo: Path, timeout_ms: int = 120_000) -> float:
    """Upload ``photo`` on the page; seconds from the file input's change to its preview."""
    page.goto(url)
    page.wait_for_function("document.getElementById('samples').options.length > 1")
    page.evaluate(
        """() => document.getElementById('upload').addEventListener('change', () => {
          window.uploadStart = performance.now(); }, {capture: true})"""
    )
    version = int(page.get_attribute("#result", "data-version"))
    page.set_input_files("#upload", str(photo))
    page.wait_for_function(
        f"Number(document.getElementById('result').dataset.version) > {version}",
        timeout=timeout_ms,
    )
    return page.evaluate("performance.now() - window.uploadStart") / 1000


def page_clicks(url: str, photo: Path, clicks: int, pause_s: float = 0.2) -> dict[str, Any]:
    """``clicks`` clicks on ``photo``'s grayscale in headless Chromium, each on a settled page;
    per click: ms to the first updated preview (drawn, and painted: the next frame), to the
    settled full working-size preview, and the server's ms for each."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        open_in_browser(page, url, photo)
        page.wait_for_function(SETTLED)
        page.evaluate(WATCH)
        box = page.locator("#input").bounding_box()
        # a grid of points across the photo, a new hint each (none on an earlier one)
        points = [((i % 6 + 0.5) / 6, (i // 6 % 5 + 0.5) / 5) for i in range(clicks)]
        for fx, fy in points:
            done = len(page.evaluate("window.clickLog"))
            page.mouse.click(box["x"] + fx * box["width"], box["y"] + fy * box["height"])
            page.wait_for_function(
                f"window.clickLog.length > {done} && window.clickLog[{done}].settled !== null "
                f"&& window.clickLog[{done}].painted !== undefined && ({SETTLED})",
                timeout=60_000,
            )
            time.sleep(pause_s)  # a person's pace: the next click comes on a settled page
        log = page.evaluate("window.clickLog")
        server = page.evaluate("[photo.width, photo.height]")
        browser.close()
    first = [c["first"] - c["start"] for c in log]
    painted = [c["painted"] - c["start"] for c in log]
    settled = [c["settled"] - c["start"] for c in log]
    return {
        "clicks": len(log),
        "photo": server,
        "first_quality": sorted({c["quality"] for c in log}),
        "preview_ms": summary(first),
        "painted_ms": summary(painted),
        "settled_ms": summary(settled),
        "server_preview_ms": summary([c["firstServerMs"] for c in log]),
        "server_full_ms": summary([c["fullServerMs"] for c in log]),
        "threads": {n: sum(c["threads"] == n for c in log) for n in {c["threads"] for c in log}},
    }


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "p95": percentile(values, 95), "max": max(values)}


def server_info(url: str) -> dict[str, Any]:
    """How the server runs its model (precision, sizes, CPU capability), and whether this
    CPU has bf16 at all."""
    from hintcolor.utils.hardware import cpu_has_native_bf16

    status, body, _ = request(url + "/api/info")
    if status != 200:
        raise SystemExit(f"/api/info: HTTP {status}")
    return {**json.loads(body), "bf16_available": cpu_has_native_bf16()}


def measure_page(ckpt: Path | None = None, clicks: int = 30) -> dict[str, Any]:
    """The browser click measurement against a fresh server (what `make bench` reports)."""
    with tempfile.TemporaryDirectory(prefix="bench-page-") as tmp:
        workdir = Path(tmp)
        photo = workdir / "photo.jpg"
        kodak_jpeg((768, 512), photo)
        proc, url = start_server(ckpt, workdir)
        try:
            load = os.getloadavg()[0]
            result = {**page_clicks(url, photo, clicks), **server_info(url)}
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    return {**result, "load_average": load}


def click_lines(r: dict[str, Any]) -> list[str]:
    """The click measurement as a Markdown table (bench_app and bench print it)."""
    median_bar, p95_bar = CLICK_BARS_MS
    met = r["painted_ms"]["median"] <= median_bar and r["painted_ms"]["p95"] <= p95_bar
    rows = [
        ("click -> preview drawn", r["preview_ms"]),
        ("click -> preview painted (next frame)", r["painted_ms"]),
        ("click -> settled full working-size preview", r["settled_ms"]),
        ("server: the click's preview (fast: network at the interactive size)",
         r["server_preview_ms"]),
        ("server: the settled preview (network at the working size)", r["server_full_ms"]),
    ]  # fmt: skip
    bf16 = "available" if r["bf16_available"] else "not available"
    return [
        f"{r['clicks']} clicks on a {r['photo'][0]}x{r['photo'][1]} photo in headless Chromium, "
        f"each on a settled page; CPU capability {r['cpu_capability']}, {r['cores']} cores "
        f"(bf16 {bf16}); the network in {r['precision']} at {r['interactive_size']} px while "
        f"hints move, {r['working_size']} px settled; "
        f"load average {r['load_average']:.1f} at the start:",
        "",
        "| ms | median | p95 | max |",
        "| --- | --- | --- | --- |",
        *(f"| {name} | {v['median']:.0f} | {v['p95']:.0f} | {v['max']:.0f} |" for name, v in rows),
        "",
        "threads the clicks' previews ran on: "
        + ", ".join(f"{n}: {k} clicks" for n, k in sorted(r["threads"].items())),
        f"bar: click -> painted preview median <= {median_bar:.0f} ms and p95 <= "
        f"{p95_bar:.0f} ms: {'met' if met else 'NOT met'}",
    ]


# ---- a 24-megapixel photo --------------------------------------------------------------------


def download_breakdown(ckpt: Path | None, data: bytes) -> dict[str, float]:
    """Seconds per stage of a full-resolution download of ``data``, in this process, as the
    server's download does it: decode, lightness, network, upsampling, Lab ->
    RGB, and both encodings."""
    from hintcolor.app.cores import CpuWatch
    from hintcolor.app.encode import encode_download
    from hintcolor.app.photos import open_photo
    from hintcolor.checkpoints import checkpoint_to_use
    from hintcolor.inference import Colorizer

    path, _ = checkpoint_to_use(ckpt, ROOT / "models" / "hintcolor-v1" / "model.ckpt")
    colorizer = Colorizer.from_checkpoint(path)
    watch = CpuWatch(torch.get_num_threads())  # the threads the server's download would use
    time.sleep(3 * watch.period)
    torch.set_num_threads(watch.threads())
    watch.stop()
    photo = open_photo(data, colorizer, 10**9, 10**9)
    colorizer.predict_ab(photo, [])  # warm-up; a download after a preview finds it cached
    photo.last_prediction = None
    timings: dict[str, float] = {}
    rgb = colorizer.colorize(photo, [], timings)
    for fmt in ("png", "jpeg"):
        start = time.perf_counter()
        size = len(encode_download(rgb, fmt, threads=torch.get_num_threads()))
        timings[f"encode_{fmt}"] = time.perf_counter() - start
        timings[f"{fmt}_mb"] = size / 1e6
    timings["threads"] = torch.get_num_threads()
    return timings


def busy_probes(url: str, photo: dict) -> dict[str, tuple]:
    """The two requests measured while a download runs: the page itself, and a click with 10
    hints (a fast preview, as the page sends while hints move); each click moves a hint, so
    none is answered from the last prediction."""
    w, h = photo["width"], photo["height"]

    def click(turn: int) -> bytes:
        hints = [{"x": (i * 97 + turn) % w, "y": (i * 61) % h, "color": "#a06030"}
                 for i in range(10)]  # fmt: skip
        return json.dumps({"id": photo["id"], "hints": hints, "fast": True}).encode()

    return {"GET /": (url + "/", lambda turn: None), "click": (url + "/api/colorize", click)}


def measure(targets: dict[str, tuple], until: threading.Event | None, repeats: int):
    """Latencies (ms) of each target, in turns: ``repeats`` turns, or until ``until`` is set."""
    times: dict[str, list[float]] = {name: [] for name in targets}
    while (until is None and len(times["click"]) < repeats) or (until and not until.is_set()):
        for name, (url, body) in targets.items():
            status, reply, seconds = request(url, body(len(times[name])))
            if status != 200:
                raise SystemExit(f"{name}: HTTP {status} {reply[:200]!r}")
            times[name].append(seconds * 1000)
    return times


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def big_photo_report(url: str, pid: int, workdir: Path, size: tuple[int, int], repeats: int):
    from playwright.sync_api import sync_playwright

    big = workdir / "big.jpg"
    data = kodak_jpeg(size, big, grain=GRAIN)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        shown_s = open_in_browser(page, url, big)
        browser.close()
    photo, upload_s = upload(url, "big.jpg", data)
    downloads = {}
    for fmt in ("png", "jpeg"):
        body = json.dumps({"id": photo["id"], "hints": [], "format": fmt}).encode()
        status, image, seconds = request(url + "/api/download", body)
        if status != 200:
            raise SystemExit(f"download failed: {status} {image[:200]!r}")
        downloads[fmt] = (seconds, len(image) / 1e6)

    status, reply, _ = request(f"{url}/api/samples/{SAMPLE.name}", b"")
    if status != 200:
        raise SystemExit(f"opening a sample failed: {status} {reply[:200]!r}")
    targets = busy_probes(url, json.loads(reply))
    measure(targets, None, 3)  # warm-up
    idle = measure(targets, None, repeats)
    done, result = threading.Event(), {}

    def download() -> None:
        body = json.dumps({"id": photo["id"], "hints": []}).encode()
        result["status"], result["png"], result["s"] = request(url + "/api/download", body)
        done.set()

    thread = threading.Thread(target=download)
    thread.start()
    busy = measure(targets, done, repeats)
    thread.join()
    if result["status"] != 200:
        raise SystemExit(f"download failed: {result['status']} {result['png'][:200]!r}")

    print(
        f"\nphoto {size[0]}x{size[1]} ({len(data) / 1e6:.1f} MB JPEG): upload -> preview shown "
        f"in the browser {shown_s:.2f} s (bar: <= {UPLOAD_BAR_S:g} s: "
        f"{'met' if shown_s <= UPLOAD_BAR_S else 'NOT met'}; HTTP upload alone {upload_s:.2f} s)"
    )
    for fmt, (seconds, mb) in downloads.items():
        verdict = "met" if seconds <= DOWNLOAD_BAR_S else "NOT met"
        print(
            f"full-resolution download, {fmt.upper()}: {seconds:.2f} s ({mb:.1f} MB; bar <= "
            f"{DOWNLOAD_BAR_S:g} s: {verdict})"
        )
    print(f"server peak RSS {peak_rss_mb(pid):.0f} MB")
    print("\n| request | idle median | idle max | during download median | during download max "
          "| n during download |\n|---|---|---|---|---|---|")  # fmt: skip
    worst = 0.0
    for name in targets:
        a, b = idle[name], busy[name]
        worst = max(worst, max(b))
        print(
            f"| {name} | {statistics.median(a):.0f} ms | {max(a):.0f} ms | "
            f"{statistics.median(b):.0f} ms | {max(b):.0f} ms | {len(b)} |"
        )
    verdict = "met" if worst <= BUSY_BAR_MS else "NOT met"
    print(f"\nbar: both within {BUSY_BAR_MS:.0f} ms during the download: {verdict}")
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", type=Path, help="a trained checkpoint (default: shipped)")
    parser.add_argument("--size", default="6000x4000", help="the big photo, WxH")
    parser.add_argument("--clicks", type=int, default=30, help="clicks in the browser")
    parser.add_argument("--repeats", type=int, default=20, help="idle requests of each kind")
    parser.add_argument("--out", type=Path, default=ROOT / "logs" / "bench")
    parser.add_argument(
        "--readme", type=Path, help="regenerate this page's bench-app block (docs/benchmarks.md)"
    )
    args = parser.parse_args()
    print("measuring the page (about 2 minutes) ...", file=sys.stderr)
    report = io.StringIO()
    with contextlib.redirect_stdout(report):
        data = measure_everything(args)
    publish(report.getvalue().strip(), data, args.out, "app", args.readme, "bench-app")


def measure_everything(args: argparse.Namespace) -> dict[str, Any]:
    """Every measurement of the page; the report is printed, the numbers returned."""
    size = tuple(int(v) for v in args.size.lower().split("x"))
    with tempfile.TemporaryDirectory(prefix="bench-app-") as tmp:
        workdir = Path(tmp)
        photo = workdir / "photo.jpg"
        kodak_jpeg((768, 512), photo)
        proc, url = start_server(args.ckpt, workdir)
        try:
            load = os.getloadavg()[0]
            clicks = {**page_clicks(url, photo, args.clicks), **server_info(url)}
            clicks["load_average"] = load
            print("\n".join(click_lines(clicks)))
            data = big_photo_report(url, proc.pid, workdir, size, args.repeats)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    stages = download_breakdown(args.ckpt, data)
    order = [
        "decode",
        "lightness",
        "network",
        "upsample",
        "lab_to_rgb",
        "encode_png",
        "encode_jpeg",
    ]
    print(
        f"\nwhere a full-resolution download's time goes (this process, {stages['threads']} "
        "threads as the server would choose), s: "
        + ", ".join(f"{k} {stages[k]:.2f}" for k in order)
        + f"; PNG {stages['png_mb']:.1f} MB, JPEG {stages['jpeg_mb']:.1f} MB"
    )
    return {"clicks": clicks, "download_stages_s": stages}


if __name__ == "__main__":
    main()
