"""Photo decoding and vetting on real files in the formats users actually have."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hintcolor.data.images import (
    channel_difference,
    find_images,
    is_grayscale,
    load_rgb,
    scan_images,
)


@pytest.fixture
def photo(kodak_files) -> Image.Image:
    return Image.open(kodak_files[0]).convert("RGB")


def test_rgba_palette_cmyk_become_rgb(tmp_path: Path, photo: Image.Image):
    rgba = photo.convert("RGBA")
    alpha = np.full(photo.size[::-1], 255, np.uint8)
    alpha[:10] = 0  # a transparent band becomes white
    rgba.putalpha(Image.fromarray(alpha))
    rgba.save(tmp_path / "a.png")
    photo.convert("CMYK").save(tmp_path / "c.jpg")
    palette = photo.quantize(256)
    palette.save(tmp_path / "p.png")
    ref = np.asarray(photo).astype(int)
    out = load_rgb(tmp_path / "a.png")
    assert out.dtype == np.uint8 and out.shape == ref.shape
    assert (out[:10] == 255).all() and np.abs(out[10:] - ref[10:]).max() == 0
    cmyk = load_rgb(tmp_path / "c.jpg")
    assert cmyk.shape == ref.shape and np.abs(cmyk.astype(int) - ref).mean() < 8
    pal = load_rgb(tmp_path / "p.png")
    assert np.array_equal(pal, np.asarray(palette.convert("RGB")))


def test_16bit_png_is_rescaled_to_8bit(tmp_path: Path, photo: Image.Image):
    gray16 = (np.asarray(photo.convert("L")).astype(np.uint16) * 257).astype(np.uint16)
    Image.fromarray(gray16).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    out = load_rgb(tmp_path / "g16.png")
    assert out.dtype == np.uint8 and out.shape[2] == 3
    assert np.abs(out[..., 0].astype(int) - np.asarray(photo.convert("L"))).max() <= 1


def test_exif_orientation_is_honoured(tmp_path: Path, photo: Image.Image):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    photo.save(tmp_path / "r.jpg", exif=exif, quality=95)
    w, h = photo.size
    assert load_rgb(tmp_path / "r.jpg").shape[:2] == (w, h)


def test_grayscale_rule(photo: Image.Image):
    rgb = np.asarray(photo)
    assert not is_grayscale(rgb) and channel_difference(rgb) > 5
    gray = np.asarray(photo.convert("L").convert("RGB"))
    assert is_grayscale(gray) and channel_difference(gray) == 0


def test_find_images_is_recursive_and_clear_when_empty(tmp_path: Path, photo: Image.Image):
    (tmp_path / "a" / "b").mkdir(parents=True)
    photo.save(tmp_path / "a" / "b" / "x.JPG")
    photo.save(tmp_path / "y.webp")
    (tmp_path / "notes.txt").write_text("not an image")
    assert [p.name for p in find_images(tmp_path)] == ["x.JPG", "y.webp"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"no images under .*empty"):
        find_images(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="missing"):
        find_images(tmp_path / "missing")


def test_scan_counts_and_caches(tmp_path: Path, photo: Image.Image):
    d = tmp_path / "photos"
    d.mkdir()
    photo.save(d / "ok.jpg")
    photo.convert("L").convert("RGB").save(d / "gray.png")
    photo.convert("L").save(d / "gray_l.jpg")
    good = (d / "ok.jpg").read_bytes()
    (d / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (d / "garbage.png").write_bytes(b"\x89PNG not really")
    files = find_images(d)
    report = scan_images(files, cache_dir=tmp_path / "cache")
    assert [p.name for p in report.usable] == ["ok.jpg"]
    assert sorted(p.name for p in report.grayscale) == ["gray.png", "gray_l.jpg"]
    assert sorted(p.name for p in report.unreadable) == ["garbage.png", "truncated.jpg"]
    assert "1 usable images, 2 grayscale skipped, 2 unreadable skipped" in report.summary("x")
    assert list((tmp_path / "cache").glob("scan-*.json"))
    # a file that changes is vetted again (size/mtime in the cache key)
    (d / "truncated.jpg").write_bytes(good)
    again = scan_images(files, cache_dir=tmp_path / "cache")
    assert sorted(p.name for p in again.usable) == ["ok.jpg", "truncated.jpg"]
