"""Letterbox and tensor layout, exactly as Ultralytics' ``LetterBox`` does them, so that an exported
graph sees the same pixels its PyTorch source saw. The ``Letterbox`` record travels with each image
so postprocessing can undo the same transform."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

PAD_VALUE = 114
# Ultralytics' interpolation, kept for parity with the PyTorch source. The aarch64 OpenCV wheel rounds it
# differently (its ARM paths): +-1 grey level in ~15 % of a letterboxed tensor's values; INTER_LINEAR_EXACT
# gives identical pixels on both but departs from Ultralytics on x86. benchmarks/cross_platform.py measures
# both (pose mAP, x86-vs-arm64 keypoint drift); docs/deploy.md has the figures and the decision.
RESIZE = cv2.INTER_LINEAR


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


def _geometry(h0: int, w0: int, new_shape: tuple[int, int], stride: int, auto: bool,
              scaleup: bool) -> tuple[int, int, int, int, int, int]:  # fmt: skip
    """Resized width and height, then the top, bottom, left, right padding, rounded as Ultralytics' LetterBox."""
    r = min(new_shape[0] / h0, new_shape[1] / w0)
    if not scaleup:
        r = min(r, 1.0)
    new_w, new_h = max(round(w0 * r), 1), max(round(h0 * r), 1)
    dw, dh = new_shape[1] - new_w, new_shape[0] - new_h
    if auto:
        dw, dh = dw % stride, dh % stride
    dw, dh = dw / 2, dh / 2
    return new_w, new_h, round(dh - 0.1), round(dh + 0.1), round(dw - 0.1), round(dw + 0.1)


def _resized(image: np.ndarray, new_shape: tuple[int, int], stride: int, auto: bool,
             scaleup: bool) -> tuple[np.ndarray, tuple[int, int, int, int, int, int]]:  # fmt: skip
    """The image resized for the letterbox (itself when the size already fits) and its ``_geometry``."""
    h0, w0 = image.shape[:2]
    geometry = _geometry(h0, w0, new_shape, stride, auto, scaleup)
    new_w, new_h = geometry[:2]
    if (w0, h0) != (new_w, new_h):
        image = cv2.resize(image, (new_w, new_h), interpolation=RESIZE)
    return image, geometry


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
    image, (new_w, new_h, top, bottom, left, right) = _resized(image, new_shape, stride, auto, scaleup)
    image = cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(PAD_VALUE,) * 3)
    box = Letterbox(new_w / w0, new_h / h0, left, top, image.shape[:2], (h0, w0))
    return image, box


def letterbox_tensor(
    image: np.ndarray,
    new_shape: tuple[int, int],
    stride: int = 32,
    auto: bool = False,
    scaleup: bool = True,
) -> tuple[np.ndarray, Letterbox]:
    """``to_tensor(letterbox(...))`` bit for bit, in fewer passes: the resized image is scaled
    straight into the tensor and only the border is filled, with no padded uint8 copy between
    (what the predictor runs on every frame; ``edgepose bench`` times it as 'preprocess')."""
    h0, w0 = image.shape[:2]
    image, (new_w, new_h, top, bottom, left, right) = _resized(image, new_shape, stride, auto, scaleup)
    height, width = top + new_h + bottom, left + new_w + right
    out = np.empty((1, 3, height, width), np.float32)
    pad = np.float32(PAD_VALUE) * SCALE
    out[0, :, :top] = pad
    out[0, :, top + new_h :] = pad
    out[0, :, top : top + new_h, :left] = pad
    out[0, :, top : top + new_h, left + new_w :] = pad
    _scale_planes(image, out[0, :, top : top + new_h, left : left + new_w])
    return out, Letterbox(new_w / w0, new_h / h0, left, top, (height, width), (h0, w0))


def to_tensor(image: np.ndarray) -> np.ndarray:
    """BGR uint8 HWC -> RGB float32 NCHW in [0, 1], contiguous, batch of one.

    The same values as ``cv2.dnn.blobFromImage(image, 1/255, swapRB=True)`` bit for bit, but
    blobFromImage took 5-9 ms at 640x640 here (its allocation page-faults on every call); splitting
    the planes with cv2 and scaling each contiguous plane into a fresh array takes about 0.3 ms
    at 640x480 (a strided numpy transpose: 0.5 ms). ``edgepose bench`` showed both."""
    out = np.empty((1, 3, *image.shape[:2]), np.float32)
    _scale_planes(image, out[0])
    return out


SCALE = np.float32(1 / 255.0)


def _scale_planes(image: np.ndarray, out: np.ndarray) -> None:
    """BGR uint8 (h, w, 3) -> RGB float32 planes (3, h, w) in [0, 1], written into ``out``."""
    for channel, plane in enumerate(reversed(cv2.split(image))):
        np.multiply(plane, SCALE, out=out[channel])
