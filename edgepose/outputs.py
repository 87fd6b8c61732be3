"""Writing results so that nothing half-written is ever left behind: temp name, then rename."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
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


def check_writable(path: Path) -> None:
    """Refuse, before a long run, a result file that could not be written at its end: a folder's
    name, or a place under a file or in a folder this process may not write. Nothing is made here."""
    refuse_folder(path)
    if path.exists() and os.access(path, os.W_OK):  # a file to replace, or a device (/dev/stdout) written in place
        return
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(f"cannot write {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"cannot write {path}: {parent} is not writable")


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to a temp file beside ``path`` and rename it into place (a device: in place)."""
    path = Path(path)
    refuse_folder(path)
    if is_device(path):
        with open(path, "wb") as handle:
            handle.write(data)
        return path
    fd, tmp = _temp_beside(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; results are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


@contextmanager
def writing(target: Path) -> Iterator[None]:
    """OSErrors of making ``target`` or its folders: the user's path (no permission, a parent that is
    a file), not a bug, so one InputError line."""
    try:
        yield
    except (FileExistsError, NotADirectoryError):
        blocker = next((p for p in (target, *target.parents) if p.exists() and not p.is_dir()), target)
        raise InputError(f"cannot write {target}: {blocker} is a file, not a folder") from None
    except OSError as exc:
        raise InputError(f"cannot write {target}: {exc.strerror or exc}") from None


def make_parent(path: Path) -> None:
    """Make the folder a file will be written into (and its parents)."""
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)


def _temp_beside(path: Path) -> tuple[int, str]:
    """A temp file in ``path``'s folder, made first if need be."""
    make_parent(path)
    with writing(path):
        return tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)


@contextmanager
def output_folder(path: str | os.PathLike) -> Iterator[Path]:
    """Make ``path`` (and missing parents) for a run that writes into it as it goes, proving first that
    a file can be written there; when the run fails, the folders this call made are removed again
    where still empty: a failed run leaves nothing behind, not even an empty folder."""
    path = Path(path)
    made: list[Path] = []  # only what this call created (not a folder another process made meanwhile)
    try:
        with writing(path):
            for folder in reversed((path, *path.parents)):  # top down
                try:
                    os.mkdir(folder)
                    made.append(folder)
                except FileExistsError:
                    if not folder.is_dir():
                        raise
            with tempfile.TemporaryFile(dir=path):  # can a file be made there: fail before any work
                pass
        yield path
    except BaseException:
        for folder in reversed(made):  # deepest first
            try:
                folder.rmdir()
            except OSError:  # not empty (or gone): keep it and what is above it
                break
        raise


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
