"""Photo finding and decoding on real files in the formats users actually have (vetting:
tests/test_vetting.py)."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hintcolor.data.dataset import PhotoDataset
from hintcolor.data.images import (
    PhotoTooLarge,
    describe_others,
    find_images,
    list_images,
    load_rgb,
)
from hintcolor.data.vetting import scan_images


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


def test_pixel_limit_is_checked_from_the_header(tmp_path: Path, photo: Image.Image):
    photo.save(tmp_path / "p.jpg")  # 512 x 341 = 174,592 pixels
    with pytest.raises(PhotoTooLarge, match=r"512x341 pixels, over data.max_pixels=150000"):
        load_rgb(tmp_path / "p.jpg", max_pixels=150_000)
    assert load_rgb(tmp_path / "p.jpg", max_pixels=200_000).shape == (341, 512, 3)


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
