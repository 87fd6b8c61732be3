"""Where images come from: a file or a folder, read robustly into BGR uint8."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import overload

import cv2
import numpy as np

from .errors import InputError
from .image_header import PNG_SIGNATURE, image_size, png_problem

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".jp2", ".pgm", ".ppm"})


# Decoded pixels allowed per image (2**27, about 134 MP: a 10000x10000 photo fits). Checked from the
# header before decoding, so a decompression bomb never allocates; EDGEPOSE_MAX_PIXELS changes it.
DEFAULT_MAX_PIXELS = 1 << 27
MAX_BYTES_PER_PIXEL = 8  # 16-bit RGBA uncompressed: no image file needs more bytes than this per pixel


def pixel_limit() -> int:
    """The decoded-pixel limit: ``EDGEPOSE_MAX_PIXELS`` if set, else ``DEFAULT_MAX_PIXELS``."""
    value = os.environ.get("EDGEPOSE_MAX_PIXELS", "")
    try:
        limit = int(float(value)) if value else DEFAULT_MAX_PIXELS
        if limit < 1:
            raise ValueError
        return limit
    except (ValueError, OverflowError):  # inf overflows int()
        raise InputError(f"EDGEPOSE_MAX_PIXELS must be a whole number of pixels >= 1, got {value!r}") from None


def read_image(path: str | os.PathLike, max_pixels: int | None = None) -> np.ndarray:
    """Decode an image file to 3-channel BGR uint8, or raise ``InputError`` saying why not.

    Grayscale, palette, RGBA (alpha dropped), CMYK JPEG and 16-bit images (scaled to 8 bits, not
    clipped) all come out as BGR uint8. Images over ``max_pixels`` (default ``pixel_limit()``) are
    refused from their header, before any pixel is decoded, so memory stays bounded.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"no such file: {path}")
    if not path.is_file():
        raise InputError(f"not a file: {path}")
    limit = pixel_limit() if max_pixels is None else max_pixels
    try:
        if path.stat().st_size > MAX_BYTES_PER_PIXEL * limit + (1 << 20):
            raise InputError(f"file too large for an image of at most {limit} pixels: {path}")
        data = np.fromfile(path, dtype=np.uint8)  # np.fromfile + imdecode copes with non-ASCII paths
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    if data.size == 0:
        raise InputError(f"empty file: {path}")
    view = memoryview(data)
    size = image_size(view)
    if size and size[0] * size[1] > limit:
        raise InputError(
            f"image too large: {size[0]}x{size[1]} is over the limit of {limit} pixels (EDGEPOSE_MAX_PIXELS): {path}"
        )
    if view[: len(PNG_SIGNATURE)] == PNG_SIGNATURE and (problem := png_problem(view)):
        raise InputError(f"corrupt PNG, {problem}: {path}")
    try:
        image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    except cv2.error:
        image = None
    if image is None:
        raise InputError(f"not a readable image: {path}")
    return image


def quiet_decoders() -> None:
    """Silence OpenCV's own log lines (``[ERROR] ... imdecode_``): every unreadable image already ends
    as one edgepose error. The CLI calls this; a library user keeps OpenCV's logging as they set it."""
    logging = getattr(getattr(cv2, "utils", None), "logging", None)
    if logging is not None and hasattr(logging, "setLogLevel"):
        logging.setLogLevel(logging.LOG_LEVEL_SILENT)


class ImageFolder(Sequence[Path]):
    """A folder's image files in sorted order, as a sequence of paths. The names are held in one numpy
    array of fixed-width bytes (about 1 MB for 100,000 files, where Path objects take 25 MB), read
    from the folder in two passes without a list, so a run over a huge folder does not grow with it;
    each Path is made when it is asked for."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        count = width = 0
        for name in self._names():
            count, width = count + 1, max(width, len(name))
        if not count:
            raise InputError(f"no images in folder: {folder}")
        self.names = np.fromiter(self._names(), dtype=f"S{width}", count=count)
        self.names.sort()  # bytes of UTF-8 names sort as the names do

    def _names(self) -> Iterator[bytes]:
        with os.scandir(self.folder) as entries:
            for entry in entries:
                # hidden names (macOS's ._photo.jpg beside photo.jpg) are no photos, as Ultralytics skips them
                if (not entry.name.startswith(".") and os.path.splitext(entry.name)[1].lower() in IMAGE_SUFFIXES
                        and entry.is_file()):  # fmt: skip
                    yield os.fsencode(entry.name)

    def __len__(self) -> int:
        return len(self.names)

    @overload
    def __getitem__(self, index: int) -> Path: ...
    @overload
    def __getitem__(self, index: slice) -> list[Path]: ...
    def __getitem__(self, index: int | slice) -> Path | list[Path]:
        if isinstance(index, slice):
            return [self.folder / os.fsdecode(name) for name in self.names[index]]
        return self.folder / os.fsdecode(self.names[index])


def list_images(source: str | os.PathLike) -> Sequence[Path]:
    """The image files a SOURCE names: the file itself, or a folder's images in sorted order."""
    source = Path(source)
    if source.is_dir():
        return ImageFolder(source)
    if not source.exists():
        raise InputError(f"no such file or folder: {source}")
    return [source]


ASSETS = Path(__file__).parent / "assets"


def sample_images() -> list[Path]:
    """The real photos bundled with the package (Ultralytics' bus.jpg and zidane.jpg)."""
    return sorted(ASSETS.glob("*.jpg"))
