"""Photo decoding and vetting on real files in the formats users actually have."""

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from hintcolor.data import images
from hintcolor.data.dataset import PhotoDataset
from hintcolor.data.images import (
    DEFAULT_MAX_PIXELS,
    channel_difference,
    describe_others,
    find_images,
    is_grayscale,
    list_images,
    load_rgb,
    log_report,
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


def test_file_name_not_utf8_is_read_and_shown(tmp_path: Path, photo: Image.Image, caplog):
    """A name in another system's encoding (bytes 0xff) is read, cached and logged."""
    bad = Path(os.fsdecode(os.fsencode(tmp_path) + b"/bad\xff.jpg"))
    photo.save(bad)
    (tmp_path / "broken\udcfe.png").write_bytes(b"\x89PNG not really")
    files = find_images(tmp_path)
    assert bad in files
    report = scan_images(files, cache_dir=tmp_path / "cache")
    assert report.usable == [bad] and len(report.unreadable) == 1
    assert scan_images(files, cache_dir=tmp_path / "cache").usable == [bad]  # from the cache
    assert load_rgb(bad).shape == np.asarray(photo).shape
    with caplog.at_level("INFO"):
        log_report(report, "train")
    assert "broken\\xfe.png" in caplog.text
    caplog.text.encode("utf-8")  # a log file handler (strict UTF-8) can write it


def _palette_png(path: Path, width: int, height: int) -> Path:
    """A colour photo-sized PNG that takes ~100 KB on disk, whatever its pixel count."""
    img = Image.new("P", (width, height))
    img.putpalette([200, 30, 30, 30, 200, 30] + [0, 0, 0] * 254)
    ImageDraw.Draw(img).rectangle([0, 0, width // 2, height], fill=1)
    img.save(path)
    return path


def test_photo_over_max_pixels_is_skipped_without_decoding(tmp_path, monkeypatch, caplog):
    big = _palette_png(tmp_path / "big.png", 8000, 7000)  # 56 MP, over the 50 MP default
    assert big.stat().st_size < 2_000_000
    decoded = []
    monkeypatch.setattr(images, "load_rgb", lambda *a, **k: decoded.append(a) or load_rgb(*a, **k))
    report = scan_images([big], cache_dir=tmp_path / "cache")
    assert report.too_large == {big: "8000x7000"} and not report.usable
    assert decoded == []  # the limit is checked from the header: no full decode
    assert "1 over data.max_pixels skipped" in report.summary("train")
    with caplog.at_level("WARNING"):
        log_report(report, "train")
    assert f"data.max_pixels={DEFAULT_MAX_PIXELS} (50 MP)" in caplog.text
    assert "Raise the limit with data.max_pixels=" in caplog.text and "big.png" in caplog.text


def test_raising_max_pixels_vets_the_photo_again(tmp_path: Path, photo: Image.Image):
    photo.save(tmp_path / "p.jpg")  # 512 x 341 = 174,592 pixels
    files = [tmp_path / "p.jpg"]
    cache = tmp_path / "cache"
    assert list(scan_images(files, cache, max_pixels=150_000).too_large) == files
    assert scan_images(files, cache, max_pixels=200_000).usable == files
    assert list(scan_images(files, cache, max_pixels=150_000).too_large) == files


def test_large_jpeg_is_decoded_at_reduced_size(tmp_path: Path, photo: Image.Image):
    big = photo.resize((4096, 2731))
    big.save(tmp_path / "big.jpg", quality=90)
    reduced = load_rgb(tmp_path / "big.jpg", min_side=512)
    assert reduced.shape == (683, 1024, 3)  # 1/4 scale: 1/8 would leave 341 < 512 rows
    full = np.asarray(big.resize((1024, 683), Image.Resampling.BOX)).astype(int)
    assert np.abs(reduced.astype(int) - full).mean() < 4
    assert load_rgb(tmp_path / "big.jpg").shape == (2731, 4096, 3)  # default: full size
    ds = PhotoDataset([tmp_path / "big.jpg"], min_side=512)
    assert ds[0][0].shape == (3, 683, 1024)


def test_gif_first_frame_is_used_and_other_files_are_counted(tmp_path, photo: Image.Image):
    frames = [photo.quantize(64), photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT).quantize(64)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    photo.convert("L").save(tmp_path / "gray.gif")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "IMG_1.HEIC").write_bytes(b"not read here")
    (tmp_path / "IMG_2.heic").write_bytes(b"not read here")
    files, others = list_images(tmp_path)
    assert [p.name for p in files] == ["anim.gif", "gray.gif"]
    assert others == {".heic": 2, ".txt": 1}
    assert describe_others(others) == "3 other file(s) (.heic: 2, .txt: 1)"
    first = load_rgb(tmp_path / "anim.gif")
    assert np.array_equal(first, np.asarray(frames[0].convert("RGB")))
    report = scan_images(files)
    assert [p.name for p in report.usable] == ["anim.gif"]
    assert [p.name for p in report.grayscale] == ["gray.gif"]
    only_heic = tmp_path / "phone"
    only_heic.mkdir()
    (only_heic / "a.heic").write_bytes(b"x")
    with pytest.raises(FileNotFoundError, match=r"found only 1 other file\(s\) \(\.heic: 1\)"):
        find_images(only_heic)
