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
