"""Writing results so that nothing half-written is ever left behind: temp name, then rename."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .errors import InputError


def is_device(path: Path) -> bool:
    """An existing target that is not a regular file (``/dev/null``, ``/dev/stdout``, a FIFO): written
    in place, since renaming a temp file over it would replace the device node itself."""
    return path.exists() and not path.is_file() and not path.is_dir()


def refuse_folder(path: Path) -> None:
    """A result file named like an existing folder: say so before anything is written."""
    if path.is_dir():
        raise InputError(f"cannot write {path}: it is a folder")


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to a temp file beside ``path`` and rename it into place (a device: in place)."""
    path = Path(path)
    refuse_folder(path)
    if is_device(path):
        with open(path, "wb") as handle:
            handle.write(data)
        return path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    except FileExistsError:
        raise InputError(f"cannot write {path}: {path.parent} is a file, not a folder") from None
    except OSError as exc:  # no permission, a parent that is a file further up: the user's path, not a bug
        raise InputError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; results are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return write_bytes_atomic(path, (json.dumps(obj, indent=2) + "\n").encode())


def write_image(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Encode by the file's suffix (``.jpg`` when it has none cv2 knows) and write atomically."""
    path = Path(path)
    try:
        ok, encoded = cv2.imencode(path.suffix or ".jpg", image)
    except cv2.error:
        ok = False
    if not ok:
        raise InputError(f"cannot encode an image as '{path.suffix}': {path}")
    return write_bytes_atomic(path, encoded.tobytes())
