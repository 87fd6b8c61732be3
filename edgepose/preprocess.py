"""Letterbox and tensor layout, exactly as Ultralytics' ``LetterBox`` does them, so that an exported
graph sees the same pixels its PyTorch source saw. The ``Letterbox`` record travels with each image
so postprocessing can undo the same transform."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

PAD_VALUE = 114


@dataclass(frozen=True)
class Letterbox:
    """How an original image was mapped into the network input: ``input = orig * gain + pad``."""

    gain_x: float
    gain_y: float
    pad_x: int
    pad_y: int
    input_shape: tuple[int, int]  # (height, width) fed to the network
    orig_shape: tuple[int, int]  # (height, width) of the original image

    def to_original(self, xy: np.ndarray) -> np.ndarray:
        """Map ``[..., 2k]`` interleaved x, y input coordinates back to the original image, in place."""
        xy[..., 0::2] = (xy[..., 0::2] - self.pad_x) / self.gain_x
        xy[..., 1::2] = (xy[..., 1::2] - self.pad_y) / self.gain_y
        return xy


def letterbox(
    image: np.ndarray,
    new_shape: tuple[int, int],
    stride: int = 32,
    auto: bool = False,
    scaleup: bool = True,
) -> tuple[np.ndarray, Letterbox]:
    """Resize keeping aspect ratio and pad with 114 to ``new_shape`` (h, w).

    ``auto=True`` pads only to the next multiple of ``stride`` (minimal rectangle, for dynamic graphs).
    Rounding follows Ultralytics' LetterBox so the graph input matches theirs pixel for pixel.
    """
    h0, w0 = image.shape[:2]
    r = min(new_shape[0] / h0, new_shape[1] / w0)
    if not scaleup:
        r = min(r, 1.0)
    new_w, new_h = max(round(w0 * r), 1), max(round(h0 * r), 1)
    dw, dh = new_shape[1] - new_w, new_shape[0] - new_h
    if auto:
        dw, dh = dw % stride, dh % stride
    dw, dh = dw / 2, dh / 2
    if (w0, h0) != (new_w, new_h):
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    top, bottom = round(dh - 0.1), round(dh + 0.1)
    left, right = round(dw - 0.1), round(dw + 0.1)
    image = cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(PAD_VALUE,) * 3)
    box = Letterbox(new_w / w0, new_h / h0, left, top, image.shape[:2], (h0, w0))
    return image, box


def to_tensor(image: np.ndarray) -> np.ndarray:
    """BGR uint8 HWC -> RGB float32 NCHW in [0, 1], contiguous, batch of one."""
    blob = cv2.dnn.blobFromImage(image, scalefactor=1 / 255.0, swapRB=True)
    return np.ascontiguousarray(blob, dtype=np.float32)
