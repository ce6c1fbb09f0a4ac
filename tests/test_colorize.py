"""Using a trained model: user hints, colorize.py at full resolution, ONNX export."""

from __future__ import annotations

import colorsys
import itertools
import json

import numpy as np
import pytest
import torch
from conftest import KODAK, angle_between, lab_hue, midtone_photo, run_cli
from PIL import Image

from hintcolor.data.color import AB_SCALE, rgb_uint8_to_normalized_lab
from hintcolor.inference import Colorizer, to_tensor
from hintcolor.metrics import psnr_per_image
from hintcolor.user_hints import (
    HintError,
    UserHint,
    dump_hints,
    hex_to_ab,
    parse_hints,
    render_user_hints,
)


def hue_saturation(rgb: np.ndarray) -> tuple[float, float]:
    h, s, _ = colorsys.rgb_to_hsv(*(rgb.astype(float) / 255))
    return h * 360, s


# ---- hints JSON -------------------------------------------------------------------------------


def test_hints_json_round_trips_and_colours_convert() -> None:
    data = [
        {"x": 10, "y": 20.5, "color": "#FF0000", "size": 6},
        {"x": 0, "y": 0, "color": [30.0, -12.5]},
    ]
    hints = parse_hints(data, width=100, height=50)
    assert hints[0].hex == "#ff0000" and hints[1].size == 6
    a, b = hex_to_ab("#ff0000")
    assert a == pytest.approx(80.1, abs=0.5) and b == pytest.approx(67.2, abs=0.5)
    assert (hints[0].a, hints[0].b) == (a, b)
    assert parse_hints(json.loads(dump_hints(hints))) == hints
    assert parse_hints({"hints": data}) == hints


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"x": 1}, "must be a JSON list"),
        ([{"y": 1, "color": "#000000"}], "hint 0: 'x' must be a finite number"),
        ([{"x": 1, "y": float("nan"), "color": "#000000"}], "'y' must be a finite number"),
        ([{"x": 1, "y": 1, "color": "red"}], "hint 0: colour 'red' is not #rrggbb"),
        ([{"x": 1, "y": 1, "color": [1, 2, 3]}], "color must be '#rrggbb' or [a, b]"),
        ([{"x": 1, "y": 1, "color": [500, 0]}], "must lie in -128..128"),
        ([{"x": 1, "y": 1, "color": "#000000", "size": 0}], "size must be a number"),
        (
            [{"x": 1, "y": 1, "color": "#000000"}, {"x": 100, "y": 1, "color": "#000000"}],
            "hint 1: (100.0, 1.0) lies outside the 100x50 photo",
        ),
    ],
)
def test_bad_hints_get_a_clear_error(data, message) -> None:
    with pytest.raises(HintError, match=None) as info:
        parse_hints(data, width=100, height=50)
    assert message in str(info.value)


def test_hint_squares_scale_to_the_working_size() -> None:
    hints = [UserHint(x=50, y=20, a=55.0, b=-11.0, size=10)]
    ab, mask = render_user_hints(hints, photo_size=(100, 200), work_size=(50, 100))
    assert mask.sum() == 25  # a 10-pixel square is 5x5 at half size
    ys, xs = torch.nonzero(mask[0, 0], as_tuple=True)
    assert (ys.float().mean(), xs.float().mean()) == (
        pytest.approx(10, abs=1),
        pytest.approx(25, abs=1),
    )
    assert ab[0, 0, 10, 25] == pytest.approx(55.0 / AB_SCALE)


# ---- colorizing -------------------------------------------------------------------------------


def test_a_red_hint_makes_a_gray_region_red(trained_checkpoint) -> None:
    colorizer = Colorizer.from_checkpoint(trained_checkpoint, working_size=128)
    gray = np.full((180, 300, 3), 128, dtype=np.uint8)
    photo = colorizer.prepare(gray)
    before = colorizer.colorize(photo, [])
    red = parse_hints([{"x": 150, "y": 90, "color": "#e02020", "size": 40}])
    after = colorizer.colorize(photo, red)
    assert after.shape == gray.shape
    hue, saturation = hue_saturation(after[90, 150])
    assert saturation > 0.3 and (hue < 20 or hue > 340), (hue, saturation, after[90, 150])
    assert hue_saturation(before[90, 150])[1] < saturation


def test_more_hints_never_make_psnr_worse_on_average(trained_checkpoint) -> None:
    colorizer = Colorizer.from_checkpoint(trained_checkpoint, working_size=128)
    rng = np.random.default_rng(0)
    photos = [np.asarray(Image.open(p).convert("RGB")) for p in sorted((KODAK / "val").glob("*"))]
    scores = {k: [] for k in (0, 5, 20, 80)}
    for rgb in photos:
        _, ab = rgb_uint8_to_normalized_lab(to_tensor(rgb))
        h, w = rgb.shape[:2]
        points = list(zip(rng.integers(8, w - 8, 80), rng.integers(8, h - 8, 80), strict=True))
        photo = colorizer.prepare(rgb)
        truth = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255
        for k in scores:
            hints = [
                UserHint(float(x), float(y), *(ab[0, :, y, x] * AB_SCALE).tolist(), size=12)
                for x, y in points[:k]
            ]
            out = torch.from_numpy(colorizer.colorize(photo, hints)).permute(2, 0, 1)[None] / 255
            scores[k].append(float(psnr_per_image(out, truth)))
    means = [float(np.mean(v)) for v in scores.values()]
    assert all(b >= a for a, b in itertools.pairwise(means)), means
    assert means[-1] > means[0] + 1.0, means


def test_colorize_cli_full_resolution_exif_hints_and_bad_files(tmp_path, trained_checkpoint):
    photo = midtone_photo(tmp_path / "wide.png", box=(0, 0, 301, 173))
    source = Image.open(photo)
    rotated = tmp_path / "folder" / "sub" / "rotated.jpg"
    rotated.parent.mkdir(parents=True)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise for display
    source.save(rotated, exif=exif)
    (tmp_path / "folder" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    hints = tmp_path / "hints.json"
    hints.write_text(json.dumps([{"x": 150, "y": 80, "color": "#2050e0", "size": 20}]))

    def colorize(*args: str, run: str):
        ckpt = f"ckpt_path={trained_checkpoint}"
        return run_cli("colorize.py", ckpt, *args, f"hydra.run.dir={tmp_path / run}", cwd=tmp_path)

    out = tmp_path / "wide_color.png"
    proc = colorize(f"input={photo}", f"hints_path={hints}", f"output={out}", run="run1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = np.asarray(Image.open(out))
    assert result.shape == (173, 301, 3)
    hue, chroma = lab_hue(result[80, 150])
    want, _ = lab_hue(np.array([0x20, 0x50, 0xE0]))
    assert angle_between(hue, want) < 30 and chroma > 20, (hue, want, chroma)

    proc = colorize(f"input={tmp_path / 'folder'}", f"output={tmp_path / 'out'}", run="run2")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert Image.open(tmp_path / "out" / "sub" / "rotated.png").size == (173, 301)  # EXIF applied
    assert "skipped 1 file(s)" in proc.stdout and "broken.jpg" in proc.stdout

    bad = tmp_path / "bad.json"
    bad.write_text('[{"x": 5000, "y": 1, "color": "#000000"}]')
    proc = colorize(f"input={photo}", f"hints_path={bad}", run="run3")
    assert proc.returncode != 0 and "lies outside the 301x173 photo" in proc.stderr
    assert "Traceback" not in proc.stderr


# ---- export -----------------------------------------------------------------------------------


def test_onnx_export_matches_pytorch(tmp_path, trained_checkpoint) -> None:
    ort = pytest.importorskip("onnxruntime")
    from hintcolor.checkpoints import load_backbone

    path = tmp_path / "model.onnx"
    proc = run_cli(
        "export.py",
        f"ckpt_path={trained_checkpoint}",
        "format=onnx",
        f"output={path}",
        "example_size=64",
        f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    backbone, _ = load_backbone(trained_checkpoint)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rgb = np.asarray(Image.open(sorted((KODAK / "val").glob("*"))[1]).convert("RGB"))
    for h, w in ((96, 160), (131, 77), (256, 256)):
        l_norm, _ = rgb_uint8_to_normalized_lab(to_tensor(np.ascontiguousarray(rgb[:h, :w])))
        hints = parse_hints([{"x": w // 2, "y": h // 3, "color": "#c08020", "size": 8}])
        hint_ab, mask = render_user_hints(hints, (h, w), (h, w))
        x = torch.cat([l_norm, hint_ab, mask], dim=1)
        with torch.inference_mode():
            expected = backbone(x).numpy()
        (got,) = session.run(["ab"], {"input": x.numpy()})
        assert got.shape == (1, 2, h, w)
        assert np.abs(got - expected).max() < 1e-3
