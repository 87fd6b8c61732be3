"""Checksums of exported models: export writes ``<file>.sha256`` beside every graph it writes, and the
runtime can refuse a model that no longer matches (``verify=True``, ``--verify``).

Why: a kiosk loads whatever sits at its model path for weeks; a file changed on disk (tampering, a
bad copy, a half-finished sync) must be refused with a clear error, not run. Sidecars are in
``sha256sum`` format, so ``sha256sum -c yolo11n-pose.onnx.sha256`` checks them too.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .errors import ModelError
from .metadata import sha256_file
from .outputs import write_bytes_atomic

SUFFIX = ".sha256"
_LINE = re.compile(r"^([0-9a-fA-F]{64}) [ *]?(.+)$")


def sidecar(path: str | os.PathLike) -> Path:
    """Where the checksum of ``path`` lives: ``<file>.sha256`` beside it."""
    path = Path(path)
    return path.with_name(path.name + SUFFIX)


def write_checksum(path: str | os.PathLike) -> Path:
    """Write ``<file>.sha256`` (``sha256sum`` format) for a file just written; atomic, like every output."""
    path = Path(path)
    return write_bytes_atomic(sidecar(path), f"{sha256_file(path)}  {path.name}\n".encode())


def model_files(path: str | os.PathLike) -> list[Path]:
    """The files a model is made of: the ``.onnx``, or an OpenVINO IR's ``.xml`` and ``.bin``."""
    from .backends import ir_files  # lazily: backends loads this module when it verifies a model

    path = Path(path)
    if path.suffix == ".xml" or path.is_dir():
        return list(ir_files(path))
    return [path]


def verify_model(path: str | os.PathLike) -> None:
    """Check every file of a model against its sidecar; raise ``ModelError`` on any doubt."""
    for file in model_files(path):
        if not file.is_file():
            raise ModelError(f"model not found: {file}")
        check = sidecar(file)
        if not check.is_file():
            raise ModelError(f"no checksum sidecar {check.name} for {file} (export writes one; --verify needs it)")
        match = _LINE.match(check.read_text(errors="replace").strip())
        if not match:
            raise ModelError(f"{check} is not a sha256sum line ('<64 hex digits>  <file name>')")
        expected, actual = match[1].lower(), sha256_file(file)
        if actual != expected:
            raise ModelError(
                f"{file}: sha256 mismatch (expected {expected[:12]}..., got {actual[:12]}...): modified since export?"
            )
