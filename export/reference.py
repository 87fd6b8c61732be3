"""Ultralytics' own PyTorch predict/val as the reference that edgepose is measured against.

On torch's CPU wheel (``pip install torch==2.13.0`` here) the PyPI torchvision wheel cannot load its
C++ ops (it is built against CUDA torch), so ``import torchvision`` fails inside Ultralytics'
predict and val. ``repair_torchvision`` then registers ``torchvision::nms`` with Ultralytics' own
pure-torch kernel (``TorchNMS.nms``, written to match torchvision exactly) so that the reference
runs unchanged otherwise. Where torchvision imports, nothing is touched.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from edgepose.postprocess import Detections
from edgepose.results import Person, Result

_LIBRARY: Any = None  # the torch.library that owns the repaired ops; must stay alive


def repair_torchvision() -> bool:
    """Make ``import torchvision`` work on CPU-only torch; True if a repair was needed."""
    global _LIBRARY
    try:
        import torchvision  # noqa: F401

        return False
    except RuntimeError:
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
    import torch
    from ultralytics.utils.nms import TorchNMS

    if _LIBRARY is None:
        _LIBRARY = torch.library.Library("torchvision", "DEF")
        _LIBRARY.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _LIBRARY.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _LIBRARY.impl("nms", TorchNMS.nms, "CPU")
    import torchvision.extension

    torchvision.extension._has_ops = lambda: True  # ops.nms asserts this before calling the kernel
    return True


def ultralytics_model(weights: str) -> Any:
    """An Ultralytics ``YOLO`` for a checkpoint or exported graph, ready to predict and val here."""
    repair_torchvision()
    from ultralytics import YOLO

    return YOLO(weights, task="pose")


class UltralyticsPredictor:
    """Ultralytics' own predict behind edgepose's predictor interface, so ``compare`` and ``val``
    can put a PyTorch checkpoint (or any graph Ultralytics loads) beside an edgepose graph.
    ``rect=False`` letterboxes to the square ``imgsz`` as a static edgepose graph does."""

    def __init__(self, weights: str, conf: float = 0.25, iou: float = 0.7, imgsz: int = 640, max_det: int = 300,
                 rect: bool = False) -> None:  # fmt: skip
        from edgepose.keypoints import COCO_KEYPOINTS

        self.model = ultralytics_model(weights)
        self.conf, self.iou, self.imgsz, self.max_det, self.rect = conf, iou, imgsz, max_det, rect
        self.keypoint_names = tuple(COCO_KEYPOINTS)

    @property
    def names(self) -> dict[int, str]:
        return dict(self.model.names)

    def detect(self, image: np.ndarray, conf: float | None = None, clip: bool = True) -> Detections:
        result = self.model.predict(image, conf=self.conf if conf is None else conf, iou=self.iou,
                                    imgsz=self.imgsz, max_det=self.max_det, rect=self.rect, verbose=False)[0]  # fmt: skip
        boxes = result.boxes
        return Detections(boxes.xyxy.numpy().astype(np.float32), boxes.conf.numpy().astype(np.float32),
                          boxes.cls.numpy().astype(np.float32), result.keypoints.data.numpy().astype(np.float32))  # fmt: skip

    def predict(self, image: np.ndarray, name: str = "") -> Result:
        det = self.detect(image)
        persons = [Person(det.boxes[i], float(det.scores[i]), det.keypoints[i], self.keypoint_names)
                   for i in range(len(det))]  # fmt: skip
        return Result(name, int(image.shape[1]), int(image.shape[0]), persons)
