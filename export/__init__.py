"""Export code (installed as ``edgepose.export``): needs the ``export`` extra (torch, ultralytics, onnx).

Kept apart from the runtime so that a device install never pulls torch; the runtime never imports it.
"""

from .pose import ExportReport, export_pose
from .weights import DEFAULT_WEIGHTS_SHA256, resolve_weights

__all__ = ["DEFAULT_WEIGHTS_SHA256", "ExportReport", "export_pose", "resolve_weights"]
