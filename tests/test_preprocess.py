"""The predictor's one-pass letterbox must give the graph exactly what the two-step path (and
OpenCV's blobFromImage, which it replaced) gives: the parity with Ultralytics rests on it."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edgepose.preprocess import letterbox, letterbox_tensor, to_tensor
from edgepose.sources import read_image

RNG = np.random.default_rng(0)
ODD = [
    RNG.integers(0, 256, shape, dtype=np.uint8) for shape in [(100, 37, 3), (1, 900, 3), (479, 641, 3), (640, 640, 3)]
]


@pytest.mark.parametrize("shape", [(640, 640), (320, 480)])
@pytest.mark.parametrize("auto", [False, True])
@pytest.mark.parametrize("scaleup", [True, False])
def test_one_pass_letterbox_is_bit_identical(samples: list[Path], shape: tuple[int, int], auto: bool,
                                             scaleup: bool) -> None:  # fmt: skip
    for image in [read_image(p) for p in samples] + ODD:
        padded, box = letterbox(image, shape, auto=auto, scaleup=scaleup)
        tensor, fused_box = letterbox_tensor(image, shape, auto=auto, scaleup=scaleup)
        assert fused_box == box
        assert tensor.dtype == np.float32 and tensor.flags.c_contiguous
        np.testing.assert_array_equal(tensor, to_tensor(padded))
        np.testing.assert_array_equal(tensor, cv2.dnn.blobFromImage(padded, 1 / 255.0, swapRB=True))
