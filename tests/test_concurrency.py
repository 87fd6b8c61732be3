"""One loaded predictor shared by 4 threads gives exactly the results of sequential calls (both engines).

onnxruntime sessions are thread-safe; an OpenVINO infer request is not ("Infer Request is busy"),
so the OpenVINO backend gives each calling thread its own request on the shared compiled model.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest

import edgepose

from .conftest import ROOT

YOGA = ROOT / "models" / "yoga-classifier.onnx"


def frames(samples: list[Path]) -> list[np.ndarray]:
    """Eight different real frames: each photo as is, mirrored, cropped and halved."""
    out = []
    for path in samples:
        image = cv2.imread(str(path))
        out += [
            image,
            image[:, ::-1].copy(),
            image[: image.shape[0] * 3 // 4].copy(),
            cv2.resize(image, None, fx=0.5, fy=0.5),
        ]
    return out


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_four_threads_equal_sequential(yolo11_dynamic_onnx: Path, samples: list[Path], backend: str) -> None:
    predictor = edgepose.load(yolo11_dynamic_onnx, backend=backend, classifier=YOGA, imgsz=320)  # 320: quick
    batch = frames(samples)
    sequential = [predictor(frame).to_dict() for frame in batch]
    assert sum(len(r["persons"]) for r in sequential) >= 10  # the frames hold people: a mix-up would show
    with ThreadPoolExecutor(max_workers=4) as pool:
        concurrent = [result.to_dict() for result in pool.map(predictor, batch * 2)]
    assert concurrent == sequential * 2
