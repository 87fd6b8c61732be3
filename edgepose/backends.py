"""Inference engines behind one tiny interface: ``run(tensor) -> head output``.

Everything else (letterbox, decode, NMS, rescale) is shared and lives outside the backend, so a
new engine adds only its load and its inference call.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Protocol

import numpy as np

from .errors import ModelError

# edgepose's device names -> onnxruntime execution providers, in preference order.
ORT_PROVIDERS: dict[str, list[str]] = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
    "openvino": ["OpenVINOExecutionProvider", "CPUExecutionProvider"],
    "coreml": ["CoreMLExecutionProvider", "CPUExecutionProvider"],
}


class Backend(Protocol):
    """What the predictor needs from an engine."""

    metadata: dict[str, str]
    input_shape: tuple[int | None, int | None]  # (h, w); None where the graph is dynamic
    output_channels: int | None  # channels of the head output; None where dynamic
    providers: list[str]

    def run(self, tensor: np.ndarray) -> np.ndarray: ...


log = logging.getLogger("edgepose")


class OnnxRuntimeBackend:
    """An ONNX graph in an onnxruntime session with the requested execution providers."""

    def __init__(self, path: str | os.PathLike, device: str = "cpu", threads: int | None = None) -> None:
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise ModelError(f"model not found: {path}")
        if device not in ORT_PROVIDERS:
            raise ModelError(f"unknown device '{device}' (choose from {', '.join(ORT_PROVIDERS)})")
        wanted = ORT_PROVIDERS[device]
        available = set(ort.get_available_providers())
        providers = [p for p in wanted if p in available]
        missing = [p for p in wanted if p not in available]
        if missing and device != "cpu":
            log.warning(
                f"device '{device}': {', '.join(missing)} not available in this onnxruntime; using {providers[0]}"
            )
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own untyped errors for any bad file
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"{path} is not a loadable ONNX graph: {reason[:200]}") from None
        self.providers = self.session.get_providers()
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        h, w = inp.shape[2:4] if len(inp.shape) == 4 else (None, None)
        self.input_shape = (h if isinstance(h, int) else None, w if isinstance(w, int) else None)
        out = self.session.get_outputs()[0]
        self.output_names = [out.name]
        channels = out.shape[1] if len(out.shape) == 3 else None
        self.output_channels = channels if isinstance(channels, int) else None

    def run(self, tensor: np.ndarray) -> np.ndarray:
        return self.session.run(self.output_names, {self.input_name: tensor})[0]


def open_backend(path: str | os.PathLike, device: str = "cpu", threads: int | None = None) -> Backend:
    """Pick the engine for a model file by its form (``.onnx`` today; OpenVINO IR joins here)."""
    return OnnxRuntimeBackend(path, device=device, threads=threads)
