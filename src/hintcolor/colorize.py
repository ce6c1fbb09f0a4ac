"""What ``src/colorize.py`` does: colorize one photo or a folder, with or without hints."""

from __future__ import annotations

import logging
from pathlib import Path

from PIL import Image
from rich.progress import Progress

from hintcolor.config import ConfigError
from hintcolor.data.images import find_images, load_rgb
from hintcolor.inference import Colorizer
from hintcolor.user_hints import HintError, UserHint, load_hints

log = logging.getLogger(__name__)


def hints_for(photo: Path, hints: Path | None, single: bool, size: tuple[int, int]):
    """The hints of ``photo``: the JSON file itself (one photo) or ``<hints>/<stem>.json``."""
    if hints is None:
        return []
    height, width = size
    if hints.is_dir():
        path = hints / f"{photo.stem}.json"
        return load_hints(path, width, height) if path.exists() else []
    if not single:
        raise ConfigError(
            "hints_path: for a folder of photos give a folder of <photo name>.json files"
        )
    return load_hints(hints, width, height)


def colorize_files(
    colorizer: Colorizer, source: Path, hints: Path | None, output: Path
) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Colorize ``source`` (a photo or a folder, recursively) into ``output``.

    One photo: ``output`` is the PNG to write, or a folder for ``<stem>.png``. A folder:
    ``output`` is a folder mirroring the source's sub-folders. Unreadable photos and bad hint
    files are skipped and returned with the reason; the others are still written.
    """
    if not source.exists():
        raise ConfigError(f"input: {source} does not exist")
    if hints is not None and not hints.exists():
        raise ConfigError(f"hints_path: {hints} does not exist")
    single = source.is_file()
    photos = [source] if single else find_images(source)
    written: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    with Progress(disable=single) as progress:
        task = progress.add_task("colorizing", total=len(photos))
        for photo in photos:
            if single:
                target = output / f"{photo.stem}.png" if output.suffix == "" else output
            else:
                target = output / photo.relative_to(source).with_suffix(".png")
            try:
                rgb = load_rgb(photo)
                user_hints: list[UserHint] = hints_for(photo, hints, single, rgb.shape[:2])
            except HintError as exc:
                if single:
                    raise ConfigError(str(exc)) from None
                skipped.append((photo, str(exc)))
            except (OSError, ValueError, Image.DecompressionBombError) as exc:
                if single:
                    raise ConfigError(f"{photo}: not a readable image ({exc})") from None
                skipped.append((photo, f"unreadable: {exc}"))
            else:
                result = colorizer.colorize(colorizer.prepare(rgb), user_hints)
                target.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(result).save(target)
                written.append(target)
            progress.advance(task)
    return written, skipped
