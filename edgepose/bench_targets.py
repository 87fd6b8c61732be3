"""What ``edgepose bench`` runs: its settings (the CLI's options, validated once) and the targets
they expand to (model x backend x device x precision), with why a target cannot run here."""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .backends import BACKENDS, OPENVINO_PRECISIONS, ORT_PROVIDERS, check_model_form, resolve_backend
from .bench_stream import SAMPLE, STREAM_ROUNDS
from .device_info import onnxruntime_distribution
from .errors import InputError, ModelError
from .predictor import check_threshold
from .video_source import VideoSource

SCHEMA = "edgepose.bench/2"  # 2: several models (settings.model a list, targets[].model, models)
STAGES = ("read", "preprocess", "inference", "postprocess", "classifier")
DEFAULT_RUNS = 50
COLD_STARTS = 3  # fresh processes per target; the median one is reported
OPENVINO_FAMILIES = ("CPU", "GPU", "NPU", "AUTO", "MULTI", "HETERO")
Progress = Callable[[Sequence[Any], str], Iterable[Any]]


@dataclass
class BenchSettings:
    """What to measure; the CLI's options one for one (see ``edgepose bench --help``)."""

    model: tuple[str, ...]  # one or more graphs, timed in the same rounds; a single path is taken as one
    classifier: str | None = None
    backend: str = "auto"  # one of BACKENDS, or a comma list of them
    devices: str | None = None  # comma list; 'backend:device' pins one to a backend
    images: str | None = None  # a folder or an image; None: the bundled samples
    imgsz: int | None = None
    warmup: int = 3
    runs: int | None = None  # None: --seconds, or DEFAULT_RUNS
    seconds: float | None = None
    threads: int | None = None
    streams: int = 0  # >= 2: also measure that many requests in flight
    video: str | None = None  # also measure stream FPS on this video ('sample': made from the bundled photos)
    video_rounds: int = STREAM_ROUNDS  # alternating sequential/overlapped passes over the video
    precision: str = "f32"  # OpenVINO CPU inference precision, or a comma list (one target each)
    spin: bool = False  # also time onnxruntime on cpu with its threads busy-waiting (onnxruntime's default)
    conf: float = 0.25
    iou: float = 0.7
    max_det: int = 300
    cold_start: bool = True
    compare_ultralytics: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        models = (self.model,) if isinstance(self.model, (str, os.PathLike)) else self.model
        self.model = tuple(str(m) for m in models)

    def command(self) -> str:
        """The ``edgepose bench`` command line that measures exactly this (output options aside)."""
        parts = ["edgepose", "bench", *[item for model in self.model for item in ("--model", model)]]
        default = BenchSettings(model=self.model)
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "model" or value == getattr(default, f.name):
                continue
            flag = "--" + f.name.replace("_", "-")
            if isinstance(value, bool):  # click's flags: --spin, --cold-start/--no-cold-start
                parts.append(flag if value else flag.replace("--", "--no-", 1))
            elif f.name == "compare_ultralytics":
                parts += [item for weights in value for item in ("--compare-ultralytics", weights)]
            else:
                parts += [flag, str(value)]
        return " ".join(shlex.quote(part) for part in parts)

    @property
    def precisions(self) -> list[str]:
        return [p.strip() for p in self.precision.split(",") if p.strip()] or ["f32"]

    def check(self) -> None:
        """Refuse bad values before anything is loaded (``InputError``: one line, exit 3)."""
        if self.runs is not None and self.seconds is not None:
            raise InputError("give --runs or --seconds, not both")
        if self.runs is not None and self.runs < 1:
            raise InputError(f"runs must be at least 1, got {self.runs}")
        if self.seconds is not None and not self.seconds > 0:
            raise InputError(f"seconds must be positive, got {self.seconds}")
        if self.warmup < 0:
            raise InputError(f"warmup must be 0 or more, got {self.warmup}")
        if self.streams < 0 or self.streams == 1:
            raise InputError(f"streams must be 0 (off) or at least 2, got {self.streams}")
        if self.threads is not None and self.threads < 1:
            raise InputError(f"threads must be at least 1, got {self.threads}")
        for precision in self.precisions:
            if precision not in OPENVINO_PRECISIONS:
                raise InputError(f"unknown precision '{precision}' (choose from {', '.join(OPENVINO_PRECISIONS)})")
        if self.max_det < 1:
            raise InputError(f"max_det must be at least 1, got {self.max_det}")
        check_threshold("conf", self.conf)
        check_threshold("iou", self.iou)
        if not self.model:
            raise InputError("give at least one --model")
        for model in self.model:
            if not Path(model).exists():
                raise ModelError(f"model not found: {model}")
            check_model_form(model)
        twice = [m for i, m in enumerate(self.model) if m in self.model[:i]]
        if twice:
            raise InputError(f"--model {twice[0]} is given twice")
        if self.video_rounds < 1:
            raise InputError(f"video rounds must be at least 1, got {self.video_rounds}")
        if self.video and self.video != SAMPLE:
            if not Path(self.video).is_file():
                raise InputError(f"--video: no such file: {self.video}")
            VideoSource(self.video).release()  # an unreadable video fails now, not after minutes of timing
        for weights in self.compare_ultralytics:
            if not Path(weights).is_file():
                raise InputError(f"--compare-ultralytics: no such file: {weights}")


@dataclass(frozen=True)
class Target:
    """One engine on one device."""

    backend: str
    device: str
    precision: str | None = None  # OpenVINO on a CPU: its inference precision
    spin: bool = False  # onnxruntime: threads busy-wait between runs (onnxruntime's own default)

    @property
    def label(self) -> str:
        suffix = f" {self.precision}" if self.precision and self.precision != "f32" else ""
        return f"{self.backend}:{self.device}{suffix}{' spin' if self.spin else ''}"


def _target(backend: str, device: str) -> Target:
    if backend == "onnxruntime":
        if device.lower() not in ORT_PROVIDERS:
            raise InputError(f"unknown onnxruntime device '{device}' (choose from {', '.join(ORT_PROVIDERS)})")
        return Target(backend, device.lower())
    if device.upper().split(".")[0] not in OPENVINO_FAMILIES:
        raise InputError(f"unknown OpenVINO device '{device}' (choose from {', '.join(OPENVINO_FAMILIES)})")
    return Target(backend, device.upper())


def parse_targets(model: str, backend: str = "auto", devices: str | None = None,
                  precisions: Sequence[str] = ("f32",), spin: bool = False) -> list[Target]:  # fmt: skip
    """``--backend`` x ``--devices`` -> the targets, in the order given.

    With one backend every device name is that backend's; with both, lower case names are
    onnxruntime's (cpu, cuda, tensorrt, openvino, coreml) and upper case ones OpenVINO's (CPU,
    GPU, NPU, AUTO); ``onnxruntime:cuda`` or ``openvino:GPU`` pins a name to a backend. An
    OpenVINO CPU target is repeated for each of ``precisions`` (f32, bf16, f16); with ``spin``,
    onnxruntime's cpu target is followed by the same with spinning threads.
    """
    names = [b.strip() for b in backend.split(",") if b.strip()] or ["auto"]
    for name in names:
        if name not in BACKENDS:
            raise InputError(f"unknown backend '{name}' (choose from {', '.join(BACKENDS)})")
    backends = list(dict.fromkeys(resolve_backend(model, name) for name in names))
    items = [d.strip() for d in (devices or "").split(",") if d.strip()]
    if not items:
        items = ["cpu" if b == "onnxruntime" else "CPU" for b in backends]
        backends = backends if len(backends) == 1 else []  # each default name is its own backend's
    targets = []
    for item in items:
        prefix, _, rest = item.partition(":")
        if rest and prefix in ("onnxruntime", "openvino"):
            targets.append(_target(prefix, rest))
        elif len(backends) == 1 and not (names == ["auto"] and backends[0] == "onnxruntime" and item.isupper()):
            targets.append(_target(backends[0], item))  # an ONNX graph's CPU, GPU...: OpenVINO's, as the help says
        else:
            targets.append(_target("openvino" if item.isupper() else "onnxruntime", item))
    expanded = []
    for t in targets:
        on_cpu = t.backend == "openvino" and t.device.startswith("CPU")
        expanded += [Target(t.backend, t.device, p) for p in precisions] if on_cpu else [t]
        if spin and t.backend == "onnxruntime" and t.device == "cpu":  # the CPU provider's threads
            expanded.append(Target(t.backend, t.device, spin=True))
    return list(dict.fromkeys(expanded))


def model_names(models: Sequence[str]) -> dict[str, str]:
    """How each model is named in target labels: its file or folder name, or the path as given
    where two models share a name (``a/pose.onnx``, ``b/pose.onnx``)."""
    names = [Path(m).name for m in models]
    return {m: name if names.count(name) == 1 else m for m, name in zip(models, names)}


_OV_CORE: Any = None


def skip_reason(target: Target, model: str | os.PathLike) -> str | None:
    """Why this target cannot run here (provider or device missing, or a model form its engine
    cannot read), or None when it can."""
    if target.backend == "onnxruntime" and resolve_backend(model) == "openvino":
        return "onnxruntime cannot read OpenVINO IR (give --backend openvino, or auto)"
    if target.backend == "onnxruntime":
        import onnxruntime as ort

        wanted = ORT_PROVIDERS[target.device][0]
        available = ort.get_available_providers()
        if wanted not in available:
            return f"{wanted} not available in this onnxruntime ({onnxruntime_distribution()}: {', '.join(available)})"
        return None
    global _OV_CORE
    try:
        import openvino as ov
    except ImportError:
        return "openvino is not installed (pip install 'edgepose[openvino]')"
    _OV_CORE = _OV_CORE or ov.Core()
    available = list(_OV_CORE.available_devices)
    if target.device.split(".")[0] in ("AUTO", "MULTI", "HETERO"):
        return None
    if not any(target.device in (d, d.split(".")[0]) for d in available):
        return f"OpenVINO device {target.device} not available (available: {', '.join(available) or 'none'})"
    return None
