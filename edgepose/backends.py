"""Inference engines behind one tiny interface: ``run(tensor) -> head output``.

Everything else (letterbox, decode, NMS, rescale) is shared and lives outside the backend, so a
new engine adds only its load and its inference call. onnxruntime runs ``.onnx`` graphs;
OpenVINO (optional install) runs IR (``.xml`` + ``.bin``, or a folder holding one) and ``.onnx``.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .errors import InputError, MissingExtraError, ModelError, first_line

# edgepose's device names -> onnxruntime execution providers, in preference order.
ORT_PROVIDERS: dict[str, list[str]] = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
    "openvino": ["OpenVINOExecutionProvider", "CPUExecutionProvider"],
    "coreml": ["CoreMLExecutionProvider", "CPUExecutionProvider"],
}


BACKENDS = ("auto", "onnxruntime", "openvino")
MODEL_SUFFIXES = (".onnx", ".xml")
OPENVINO_HINTS = ("latency", "throughput")
# OpenVINO's INFERENCE_PRECISION_HINT. OpenVINO itself picks bf16 on CPUs that have it (faster, but
# about 1 px of keypoint drift at 640); edgepose defaults to f32 so a graph runs as it was measured.
OPENVINO_PRECISIONS = ("f32", "bf16", "f16")


class Backend(Protocol):
    """What the predictor needs from an engine."""

    name: str
    metadata: dict[str, str]
    input_shape: tuple[int | None, int | None]  # (h, w); None where the graph is dynamic
    input_batch: int | None  # images a call takes where the graph fixes it (Ultralytics' export(batch=N))
    output_shape: tuple[int | None, ...]  # the head output's dims; None where dynamic
    providers: list[str]
    engine: dict[str, Any]  # what runs (``describe_engine``): provider, device, requested vs compiled precision

    def run(self, tensor: np.ndarray) -> np.ndarray: ...


log = logging.getLogger("edgepose")


def _fixed(dim: object) -> int | None:
    return dim if isinstance(dim, int) and dim > 0 else None


class OnnxRuntimeBackend:
    """An ONNX graph in an onnxruntime session with the requested execution providers."""

    name = "onnxruntime"

    def __init__(self, path: str | os.PathLike, device: str = "cpu", threads: int | None = None,
                 spin: bool = False, precision: str = "f32", trt_cache: str | os.PathLike | None = None) -> None:  # fmt: skip
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise ModelError(f"model not found: {path}")
        if device not in ORT_PROVIDERS:
            raise InputError(f"unknown device '{device}' (choose from {', '.join(ORT_PROVIDERS)})")
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
        # No busy-waiting unless ``spin``: onnxruntime's threads otherwise spin for work between
        # operators and after each run, taking the cores from decoding and letterboxing the next frame
        # and from whatever else the device runs (camera, UI), and burning power a Pi turns into heat.
        # benchmarks/spin_load.py, beside 1-2 processes each keeping a core busy: e2e 65-71 ms without
        # spinning vs 104-114 ms with it (stopping it when each run returns does not help). On an
        # otherwise idle device spinning wins a little: ``spin=True`` gives back onnxruntime's default.
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        if threads:
            options.intra_op_num_threads = threads
        built = dict(provider_options(device, precision, trt_cache))
        try:
            self.session = ort.InferenceSession(str(path), sess_options=options, providers=providers,
                                                provider_options=[built.get(p, {}) for p in providers])  # fmt: skip
        except Exception as exc:  # onnxruntime raises its own untyped errors for any bad file
            raise ModelError(f"{path} is not a loadable ONNX graph: {first_line(exc)}") from None
        self.providers = self.session.get_providers()
        self.provider_options = {p: built[p] for p in self.providers if p in built}  # what onnxruntime was handed
        # onnxruntime runs each op at the graph's own types (an FP16 or INT8 graph stays so), except where
        # TensorRT is asked for FP16 kernels: only that provider offers a precision of its own
        trt = self.providers[0] == "TensorrtExecutionProvider"
        compiled = "f16" if trt and precision == "f16" else "as the graph"
        if precision != "f32" and compiled != precision:
            log.warning(f"precision {precision} requested, but onnxruntime's {self.providers[0]} runs the graph's "
                        "own types (precision is OpenVINO's CPU setting, and f16 TensorRT's)")  # fmt: skip
        self.engine = {"backend": self.name, "device": device, "provider": self.providers[0],
                       "provider_options": self.provider_options,
                       "precision": {"requested": precision, "compiled": compiled}}  # fmt: skip
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        h, w = inp.shape[2:4] if len(inp.shape) == 4 else (None, None)
        self.input_shape = (_fixed(h), _fixed(w))
        self.input_batch = _fixed(inp.shape[0]) if inp.shape else None
        out = self.session.get_outputs()[0]
        self.output_names = [out.name]
        self.output_shape = tuple(_fixed(d) for d in out.shape)

    def run(self, tensor: np.ndarray) -> np.ndarray:
        return self.session.run(self.output_names, {self.input_name: tensor})[0]


def default_trt_cache() -> Path:
    """Where TensorRT's engines are kept between runs unless told: building one takes minutes on a Jetson."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edgepose" / "tensorrt"


def provider_options(device: str, precision: str = "f32",
                     trt_cache: str | os.PathLike | None = None) -> list[tuple[str, dict[str, str]]]:  # fmt: skip
    """(provider, the options onnxruntime is handed for it) for ``device``'s providers that take any.
    TensorRT: engine and timing caches on, in ``trt_cache`` (``default_trt_cache()``), so only the first
    run of a graph builds its engine; FP16 kernels when ``precision`` is f16. CUDA: device 0, and
    cuDNN's exhaustive convolution search (once per session, then the fastest kernels)."""
    out: list[tuple[str, dict[str, str]]] = []
    for provider in ORT_PROVIDERS[device]:
        if provider == "TensorrtExecutionProvider":
            cache = str(Path(trt_cache) if trt_cache else default_trt_cache())
            out.append((provider, {"device_id": "0", "trt_engine_cache_enable": "True",
                                   "trt_engine_cache_path": cache, "trt_timing_cache_enable": "True",
                                   "trt_timing_cache_path": cache,
                                   "trt_fp16_enable": str(precision == "f16")}))  # fmt: skip
        elif provider == "CUDAExecutionProvider":
            out.append((provider, {"device_id": "0", "cudnn_conv_algo_search": "EXHAUSTIVE"}))
    return out


def ir_files(path: Path) -> tuple[Path, Path]:
    """The ``.xml`` and ``.bin`` of an OpenVINO IR given as either file or as the folder holding it."""
    if path.is_dir():
        xmls = sorted(path.glob("*.xml"))
        if len(xmls) != 1:
            raise ModelError(f"{path}: expected one OpenVINO .xml in the folder, found {len(xmls)}")
        path = xmls[0]
    return path, path.with_suffix(".bin")


class OpenVinoBackend:
    """An ONNX graph or IR compiled by OpenVINO for a device in OpenVINO's names (CPU, GPU, NPU, AUTO).

    ``hint`` maps to OpenVINO's PERFORMANCE_HINT: ``latency`` for one frame at a time,
    ``throughput`` for several requests in flight (``requests`` is OpenVINO's choice for it);
    ``precision`` to INFERENCE_PRECISION_HINT (see OPENVINO_PRECISIONS).
    """

    name = "openvino"

    def __init__(self, path: str | os.PathLike, device: str = "CPU", threads: int | None = None,
                 hint: str = "latency", precision: str = "f32") -> None:  # fmt: skip
        try:
            import openvino as ov
        except ImportError:
            raise MissingExtraError("openvino", "openvino") from None
        path = Path(path)
        if not path.exists():
            raise ModelError(f"model not found: {path}")
        if hint not in OPENVINO_HINTS:
            raise InputError(f"unknown performance hint '{hint}' (choose from {', '.join(OPENVINO_HINTS)})")
        if precision not in OPENVINO_PRECISIONS:
            raise InputError(f"unknown precision '{precision}' (choose from {', '.join(OPENVINO_PRECISIONS)})")
        self.core = ov.Core()
        device = device.upper()
        known = [*self.core.available_devices, "AUTO", "MULTI", "HETERO"]
        if device.split(":")[0] not in {d.split(".")[0] for d in known}:
            raise InputError(f"OpenVINO device '{device}' not available here (available: {', '.join(known)})")
        if path.suffix == ".onnx":
            xml, weights = path, None
        else:
            xml, weights = ir_files(path)
            if not weights.is_file():
                raise ModelError(f"{xml}: its weights file {weights.name} is missing")
        try:
            model = self.core.read_model(str(xml)) if weights is None else self.core.read_model(str(xml), str(weights))
        except Exception as exc:  # OpenVINO raises RuntimeError with multi-line C++ text for any bad file
            raise ModelError(f"{path} is not a loadable OpenVINO/ONNX model: {first_line(exc)}") from None
        self.metadata = {**_rt_section(model, "framework"), **_rt_section(model, "edgepose")}
        config: dict[str, object] = {"PERFORMANCE_HINT": hint.upper()}
        if device.startswith("CPU"):  # GPU/NPU plugins choose their own precision
            config["INFERENCE_PRECISION_HINT"] = precision
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        try:
            self.compiled = self.core.compile_model(model, device, config)
        except Exception as exc:
            raise ModelError(f"OpenVINO could not compile {path.name} for {device}: {first_line(exc)}") from None
        self.request = self.compiled.create_infer_request()
        self._local = threading.local()  # an infer request is not thread-safe: one per calling thread
        self._local.request = self.request
        self.providers = [f"OpenVINO:{device}"]
        shape = model.inputs[0].get_partial_shape()
        dims = [d.get_length() if d.is_static else None for d in shape]
        self.input_shape = (dims[2], dims[3]) if len(dims) == 4 else (None, None)
        self.input_batch = dims[0] if dims else None
        out = model.outputs[0].get_partial_shape()
        self.output_shape = tuple(d.get_length() if d.is_static else None for d in out)
        self.engine = self._compiled_engine(device, precision)

    def _compiled_engine(self, device: str, precision: str) -> dict[str, Any]:
        """What OpenVINO compiled, read back from the compiled model: a CPU plugin runs the requested
        inference precision only where the CPU has it (f16 on this x86 host compiles as bf16; bf16 on
        a Pi 5's Cortex-A76 as f16), so the request alone would mislead."""
        requested = precision if device.startswith("CPU") else None
        try:
            compiled = self.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        except Exception:  # a plugin without the property (NPU, some AUTO setups): nothing to read back
            compiled = None
        try:
            devices = list(self.compiled.get_property("EXECUTION_DEVICES"))
        except Exception:
            devices = [device]
        if requested and compiled and compiled != requested:
            caps = ", ".join(self.core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
            log.warning(f"precision {requested} requested, but OpenVINO {device} runs {compiled} on this CPU "
                        f"(its capabilities: {caps})")  # fmt: skip
        return {"backend": self.name, "device": device, "execution_devices": devices,
                "precision": {"requested": requested, "compiled": compiled}}  # fmt: skip

    def run(self, tensor: np.ndarray) -> np.ndarray:
        request = getattr(self._local, "request", None)
        if request is None:  # first call from this thread: its own request on the shared compiled model
            request = self._local.request = self.compiled.create_infer_request()
        return request.infer({0: tensor}, share_inputs=True)[0].copy()


def precision_note(compiled: str | None, requested: str | None) -> str:
    """', precision bf16 (f16 requested)': what compiled, with the request where it differs (or '')."""
    if not compiled:
        return ""
    return f", precision {compiled}" + (f" ({requested} requested)" if requested and requested != compiled else "")


def describe_engine(engine: dict[str, Any]) -> str:
    """One line for stderr: 'onnxruntime CPUExecutionProvider' or 'OpenVINO CPU, precision bf16 (f16 requested)'."""
    precision = engine["precision"]
    if engine["backend"] == "onnxruntime":  # its precision is worth a word only where one was asked for or given
        asked = precision["requested"] != "f32" or precision["compiled"] != "as the graph"
        note = precision_note(precision["compiled"], precision["requested"]) if asked else ""
        return f"onnxruntime {engine['provider']}{note}"
    return f"OpenVINO {','.join(engine['execution_devices'])}{precision_note(precision['compiled'], precision['requested'])}"


def _rt_section(model: object, section: str) -> dict[str, str]:
    """One section of a model's rt_info as strings (ONNX metadata_props arrive under 'framework')."""
    if not model.has_rt_info([section]):  # type: ignore[attr-defined]
        return {}
    values = model.get_rt_info([section]).astype(dict)  # type: ignore[attr-defined]
    return {key: value.astype(str) for key, value in values.items()}


def resolve_backend(path: str | os.PathLike, backend: str = "auto") -> str:
    """``auto``: IR (an .xml, or a folder) runs on OpenVINO, an .onnx file on onnxruntime."""
    if backend not in BACKENDS:
        raise InputError(f"unknown backend '{backend}' (choose from {', '.join(BACKENDS)})")
    if backend != "auto":
        return backend
    path = Path(path)
    return "openvino" if path.suffix == ".xml" or path.is_dir() else "onnxruntime"


def check_model_form(path: str | os.PathLike) -> Path:
    """Only ONNX graphs and OpenVINO IR are ever loaded (both are parsed, never unpickled): refuse
    anything else by name before an engine sees it, a PyTorch checkpoint with a pointer to export."""
    path = Path(path)
    if path.is_dir() or path.suffix.lower() in MODEL_SUFFIXES:
        return path
    hint = " (a PyTorch checkpoint: run 'edgepose export --weights' on it)" if path.suffix in (".pt", ".pth") else ""
    raise ModelError(f"{path}: edgepose loads only .onnx graphs or OpenVINO IR (.xml + .bin, or their folder){hint}")


def open_backend(path: str | os.PathLike, backend: str = "auto", device: str | None = None,
                 threads: int | None = None, hint: str = "latency", precision: str = "f32",
                 spin: bool = False, verify: bool = False, trt_cache: str | os.PathLike | None = None) -> Backend:  # fmt: skip
    """Open a model file with the engine that runs it; ``device`` is in that engine's names
    (onnxruntime: cpu, cuda, tensorrt, openvino, coreml; OpenVINO: CPU, GPU, NPU, AUTO).
    ``spin``: onnxruntime's threads busy-wait between runs (its own default; edgepose's is off).
    ``precision``: OpenVINO's CPU inference precision, or (f16) TensorRT's FP16 kernels; ``trt_cache``:
    where TensorRT keeps its engines (``provider_options``).
    ``verify``: first check the file(s) against the ``.sha256`` sidecars export wrote."""
    check_model_form(path)
    if verify:
        from .integrity import verify_model

        verify_model(path)
    if resolve_backend(path, backend) == "openvino":
        if spin:
            raise InputError("spin is an onnxruntime setting; OpenVINO has no such option")
        return OpenVinoBackend(path, device=device or "CPU", threads=threads, hint=hint, precision=precision)
    return OnnxRuntimeBackend(path, device=(device or "cpu").lower(), threads=threads, spin=spin, precision=precision,
                              trt_cache=trt_cache)  # fmt: skip
