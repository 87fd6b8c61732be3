"""edgepose: run Ultralytics pose models exported to ONNX without torch or ultralytics."""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import EdgeposeError, ExportError, InputError, MissingExtraError, ModelError, PartialFailure
from .keypoints import COCO_KEYPOINTS, COCO_SKELETON, Keypoint
from .memory import reuse_freed_memory
from .predictor import PosePredictor, load
from .results import Person, Result
from .stream import Stream, open_stream
from .track import TrackOptions

__all__ = [
    "COCO_KEYPOINTS", "COCO_SKELETON", "EdgeposeError", "ExportError", "InputError", "Keypoint",
    "MissingExtraError", "ModelError", "PartialFailure", "Person", "PosePredictor", "Result", "Stream",
    "TrackOptions", "load", "open_stream", "reuse_freed_memory", "__version__",
]  # fmt: skip
