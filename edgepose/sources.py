"""Where images come from: a file or a folder, read robustly into BGR uint8."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from .errors import InputError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".jp2", ".pgm", ".ppm"})


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Decode an image file to 3-channel BGR uint8, or raise ``InputError`` saying why not."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"no such file: {path}")
    if not path.is_file():
        raise InputError(f"not a file: {path}")
    data = np.fromfile(path, dtype=np.uint8)  # np.fromfile + imdecode copes with non-ASCII paths
    if data.size == 0:
        raise InputError(f"empty file: {path}")
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if image is None:
        raise InputError(f"not a readable image: {path}")
    return image


def list_images(source: str | os.PathLike) -> list[Path]:
    """The image files a SOURCE names: the file itself, or a folder's images in sorted order."""
    source = Path(source)
    if source.is_dir():
        files = sorted(p for p in source.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise InputError(f"no images in folder: {source}")
        return files
    if not source.exists():
        raise InputError(f"no such file or folder: {source}")
    return [source]


ASSETS = Path(__file__).parent / "assets"


def sample_images() -> list[Path]:
    """The real photos bundled with the package (Ultralytics' bus.jpg and zidane.jpg)."""
    return sorted(ASSETS.glob("*.jpg"))
