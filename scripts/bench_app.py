"""Does the page stay responsive while it works? Latency of `GET /` and of a click, idle and
while a full-resolution download of a 24-megapixel photo runs, against the real server.

    python scripts/bench_app.py [--ckpt best.ckpt] [--size 6000x4000] [--repeats 20]

Starts `python src/app.py` (conf/app.yaml as `make app` uses it) on a free port of
127.0.0.1, uploads a Kodak photo upscaled to --size, opens an embedded sample for the
clicks, then times requests from this process. Without --ckpt a tiny model is trained first in
a temporary folder (as the tests' `trained_checkpoint` fixture does, a few minutes on 2 cores):
the network's size, not its quality, is what costs time. The bar: both answer within 200 ms
while the download runs.
"""

from __future__ import annotations

import argparse
import io
import json
import os
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("HINTCOLOR_ROOT", str(ROOT))
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("WANDB_MODE", "offline")

import torch  # noqa: E402
from PIL import Image  # noqa: E402

KODAK = ROOT / "data" / "kodak24"
BAR_MS = 200.0
# the tests' trained_checkpoint fixture: a default model, a fraction of a minute of training
TINY_RUN = [
    "callbacks.progress_bar=null",
    "callbacks.validation_images=null",
    "logger=csv",
    "data.image_size=64",
    "data.num_workers=0",
    "trainer.max_epochs=2",
    "+trainer.limit_train_batches=20",
    "+trainer.limit_val_batches=2",
]


def train_tiny(run_dir: Path) -> Path:
    from hydra import compose, initialize_config_dir

    from hintcolor.training import train

    paths = [f"paths.output_dir={run_dir}", f"paths.log_dir={run_dir}"]
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        train(compose("train", overrides=[*paths, *TINY_RUN]))
    return run_dir / "checkpoints" / "best.ckpt"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(ckpt: Path, workdir: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    log = (workdir / "app.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "src" / "app.py"), f"ckpt_path={ckpt}", f"port={port}",
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


def big_photo(size: tuple[int, int]) -> bytes:
    """A Kodak photo upscaled to ``size``, as a camera's JPEG."""
    img = Image.open(sorted((KODAK / "val").glob("*.jpg"))[0]).convert("RGB")
    buffer = io.BytesIO()
    img.resize(size, Image.Resampling.BICUBIC).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def probes(url: str, photo: dict) -> dict[str, tuple]:
    """The two requests measured: the page itself, and a click with 10 hints."""
    w, h = photo["width"], photo["height"]
    hints = [{"x": (i * 97) % w, "y": (i * 61) % h, "color": "#a06030"} for i in range(10)]
    click = json.dumps({"id": photo["id"], "hints": hints}).encode()
    return {"GET /": (url + "/", None), "click": (url + "/api/colorize", click)}


def measure(targets: dict[str, tuple], until: threading.Event | None, repeats: int):
    """Latencies (ms) of each target, in turns: ``repeats`` turns, or until ``until`` is set."""
    times: dict[str, list[float]] = {name: [] for name in targets}
    while (until is None and len(times["click"]) < repeats) or (until and not until.is_set()):
        for name, (url, data) in targets.items():
            status, body, seconds = request(url, data)
            if status != 200:
                raise SystemExit(f"{name}: HTTP {status} {body[:200]!r}")
            times[name].append(seconds * 1000)
    return times


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--ckpt", type=Path, help="a trained checkpoint (default: train a tiny one)"
    )
    parser.add_argument("--size", default="6000x4000", help="the big photo, WxH")
    parser.add_argument("--repeats", type=int, default=20, help="idle requests of each kind")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.lower().split("x"))
    with tempfile.TemporaryDirectory(prefix="bench-app-") as tmp:
        workdir = Path(tmp)
        ckpt = args.ckpt or train_tiny(workdir / "train")
        proc, url = start_server(ckpt, workdir)
        try:
            run(url, proc.pid, size, args.repeats)
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def run(url: str, pid: int, size: tuple[int, int], repeats: int) -> None:
    load = os.getloadavg()[0]
    data = big_photo(size)
    big, upload_s = upload(url, "big.jpg", data)
    sample = sorted((KODAK / "val").glob("*.jpg"))[0].name
    status, reply, _ = request(f"{url}/api/samples/{sample}", b"")
    if status != 200:
        raise SystemExit(f"opening a sample failed: {status} {reply[:200]!r}")
    targets = probes(url, json.loads(reply))
    measure(targets, None, 3)  # warm-up: the network's first passes
    idle = measure(targets, None, repeats)

    done, result = threading.Event(), {}

    def download() -> None:
        body = json.dumps({"id": big["id"], "hints": []}).encode()
        result["status"], result["png"], result["s"] = request(url + "/api/download", body)
        done.set()

    thread = threading.Thread(target=download)
    thread.start()
    busy = measure(targets, done, repeats)
    thread.join()
    if result["status"] != 200:
        raise SystemExit(f"download failed: {result['status']} {result['png'][:200]!r}")

    print(
        f"CPU capability {torch.backends.cpu.get_cpu_capability()}, {os.cpu_count()} cores, "
        f"load average {load:.1f} at the start (other work on the machine counts)"
    )
    print(
        f"photo {size[0]}x{size[1]} ({len(data) / 1e6:.1f} MB JPEG): upload {upload_s:.1f} s, "
        f"full-resolution download {result['s']:.1f} s ({len(result['png']) / 1e6:.1f} MB "
        f"PNG); server peak RSS {peak_rss_mb(pid):.0f} MB"
    )
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
    verdict = "met" if worst <= BAR_MS else "NOT met"
    print(f"\nbar: both within {BAR_MS:.0f} ms during the download: {verdict}")


if __name__ == "__main__":
    main()
