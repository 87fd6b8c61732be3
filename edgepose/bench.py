"""``edgepose bench``: the numbers a user needs on the device they deploy to, in one run.

Per backend and device: session creation, first result, warm latency percentiles of every stage
of the real pipeline (``PosePredictor.predict`` reports each stage through its ``lap`` hook, so
the code timed is the code users run), the bare forward pass on pre-made tensors as the lower
bound, cold start to first result and peak memory in a fresh runtime-only process, optionally N
requests in flight, and Ultralytics' own predict on the same images for a ratio. Several models
(FP32, FP16, INT8 forms of one network) are timed in the same interleaved rounds, so their
speed-ups come from one run. Devices that cannot run here are listed as skipped with the reason.
Torch-free unless ``compare_ultralytics``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from .backends import BACKENDS, OPENVINO_PRECISIONS, ORT_PROVIDERS, check_model_form, resolve_backend
from .bench_stream import SAMPLE, STREAM_ROUNDS, stream_fps
from .device_info import clock_state, current_rss_mb, onnxruntime_distribution, peak_rss_mb, system_info, usable_cores
from .errors import EdgeposeError, InputError, MissingExtraError, ModelError, first_line
from .predictor import PosePredictor, check_threshold, load
from .sources import list_images, read_image, sample_images
from .stream import VideoSource

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
        elif len(backends) == 1:
            targets.append(_target(backends[0], item))
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


def summarize(samples_ms: Sequence[float]) -> dict[str, float | int | None]:
    """Latency percentiles in ms; ``fps`` = 1000 / mean (what one stream sustains)."""
    a = np.asarray(samples_ms, dtype=np.float64)
    p50, p90, p95, p99 = np.percentile(a, [50, 90, 95, 99])
    mean = float(a.mean())
    return {
        "n": int(a.size),
        **{k: round(float(v), 3) for k, v in [("p50", p50), ("p90", p90), ("p95", p95), ("p99", p99)]},
        "max": round(float(a.max()), 3),
        "mean": round(mean, 3),
        "fps": round(1000.0 / mean, 2) if mean > 0 else None,
    }


def _p50(values: Sequence[float]) -> float | None:
    return round(float(np.median(values)), 3) if len(values) else None


def _overhead(per_image: Sequence[dict[str, Any]]) -> dict[str, float]:
    """End to end against the bare forward pass, from each image's p50 (pooled over images of
    different sizes the p50 would sit between two modes and jump from run to run); ``frame``: from
    the decoded image on (a camera frame), i.e. without reading and decoding the file."""
    timed = [v for v in per_image if v["end_to_end"]]
    e2e, frame, fwd = (sum(float(np.median(v[key])) for v in timed) for key in ("end_to_end", "from_frame", "forward"))
    return {"end_to_end_over_forward_p50": round(e2e / fwd, 4),
            "overhead_p50_ms": round((e2e - fwd) / len(timed), 3),
            "frame_over_forward_p50": round(frame / fwd, 4)}  # fmt: skip


def _ratio(ours: Sequence[dict[str, Any]], theirs: Sequence[dict[str, Any]],
           key: str = "end_to_end_p50_ms") -> float | None:  # fmt: skip
    """Sum over the images both timed of each one's p50 (``key``: end to end or forward), ours over theirs."""
    reference = {i["image"]: i.get(key) for i in theirs}
    pairs = [(i.get(key), reference.get(i["image"])) for i in ours]
    pairs = [(a, b) for a, b in pairs if a is not None and b is not None]
    return round(sum(a for a, _ in pairs) / sum(b for _, b in pairs), 4) if pairs else None


class _Laps:
    """The ``lap`` hook of ``predict``: stage durations in ms since ``start``."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.marks: list[tuple[str, float]] = []

    def __call__(self, stage: str) -> None:
        self.marks.append((stage, time.perf_counter()))

    def stages(self) -> dict[str, float]:
        out, last = {}, self.start
        for stage, t in self.marks:
            out[stage] = (t - last) * 1000
            last = t
        out["end_to_end"] = (last - self.start) * 1000
        return out


def _timed_predict(predictor: PosePredictor, path: Path) -> tuple[dict[str, float], int]:
    laps = _Laps()
    result = predictor.predict(path, lap=laps)
    return laps.stages(), len(result.persons)


def _forward_ms(predictor: PosePredictor, tensor: np.ndarray) -> float:
    start = time.perf_counter()
    predictor.backend.run(tensor)
    return (time.perf_counter() - start) * 1000


def _runs_for(settings: BenchSettings, per_run_ms: float) -> int:
    """``--runs``, or as many runs as fit in ``--seconds`` at the warm-up's pace."""
    if settings.seconds is None:
        return settings.runs or DEFAULT_RUNS
    return max(1, math.ceil(settings.seconds * 1000 / max(per_run_ms, 1e-3)))


def _load_kwargs(target: Target, settings: BenchSettings, **overrides: Any) -> dict[str, Any]:
    kwargs = {"backend": target.backend, "device": target.device, "threads": settings.threads, "imgsz": settings.imgsz,
              "classifier": settings.classifier, "conf": settings.conf, "iou": settings.iou,
              "max_det": settings.max_det}  # fmt: skip
    if target.backend == "openvino":
        kwargs["precision"] = target.precision or "f32"
    else:
        kwargs["spin"] = target.spin
    return {**kwargs, **overrides}


_COLD_START = """
import json, sys, time
start = time.time()
import edgepose
imported = time.time()
args = json.loads(sys.argv[1])
predictor = edgepose.load(args["model"], **args["load"])
loaded = time.time()
persons = len(predictor(args["images"][0]).persons)
first = time.time()
for path in args["images"][1:]:
    predictor(path)
from edgepose.device_info import peak_rss_mb
heavy = sorted({"torch", "ultralytics", "torchvision"} & set(sys.modules))
print(json.dumps({"start": start, "imported": imported, "loaded": loaded, "first": first, "persons": persons,
                  "peak_rss_mb": peak_rss_mb(), "heavy_modules": heavy}))
"""


def _spawn(args: dict[str, Any]) -> dict[str, Any]:
    spawned = time.time()
    try:
        proc = subprocess.run([sys.executable, "-c", _COLD_START, json.dumps(args)], capture_output=True, text=True,
                              timeout=900, stdin=subprocess.DEVNULL)  # fmt: skip
    except subprocess.TimeoutExpired:
        return {"status": "failed", "reason": "timed out after 900 s"}
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines()
        return {"status": "failed", "reason": lines[-1][:200] if lines else f"exit code {proc.returncode}"}
    t = json.loads(proc.stdout.strip().splitlines()[-1])
    return {
        "status": "ok",
        "first_result_s": round(t["first"] - spawned, 3),
        "interpreter_s": round(t["start"] - spawned, 3),
        "import_s": round(t["imported"] - t["start"], 3),
        "load_s": round(t["loaded"] - t["imported"], 3),
        "first_predict_s": round(t["first"] - t["loaded"], 3),
        "peak_rss_mb": t["peak_rss_mb"],
        "heavy_modules": t["heavy_modules"],
    }


def cold_start(model: str, target: Target, settings: BenchSettings, paths: Sequence[Path],
               spawns: int = COLD_STARTS) -> dict:  # fmt: skip
    """Fresh Python processes that import edgepose, load the model and predict: the time from spawning
    one to its first result and where it went (the median spawn of ``spawns``, all of them listed),
    and the largest peak RSS of a process that then predicted every image once."""
    args = {"model": str(model), "load": _load_kwargs(target, settings), "images": [str(p) for p in paths]}
    runs = []
    for _ in range(spawns):
        run = _spawn(args)
        if run["status"] != "ok":
            return run
        runs.append(run)
    runs.sort(key=lambda r: r["first_result_s"])
    return {**runs[len(runs) // 2], "spawns": [r["first_result_s"] for r in runs],
            "peak_rss_mb": max(r["peak_rss_mb"] for r in runs)}  # fmt: skip


def _engine_facts(predictor: PosePredictor) -> dict[str, Any]:
    backend = predictor.backend
    facts: dict[str, Any] = {"providers": list(backend.providers), "input_shape": list(predictor.input_shape),
                             "rect": predictor.rect}  # fmt: skip
    if backend.name == "openvino":
        compiled = backend.compiled  # type: ignore[attr-defined]
        facts["threads_used"] = int(compiled.get_property("INFERENCE_NUM_THREADS"))
        facts["precision"] = backend.engine["precision"]["compiled"]  # what runs; the target names the request
        facts["precision_requested"] = backend.engine["precision"]["requested"]
    else:
        options = backend.session.get_session_options()  # type: ignore[attr-defined]
        facts["threads_used"] = options.intra_op_num_threads or "onnxruntime default (one per physical core)"
        facts["spin"] = options.get_session_config_entry("session.intra_op.allow_spinning") == "1"
    return facts


def _throughput(model: str, target: Target, settings: BenchSettings, paths: Sequence[Path], runs: int,
                single_fps: float | None) -> dict[str, Any]:  # fmt: skip
    """``streams`` frames in flight through the whole pipeline: FPS and per-frame latency under load.

    OpenVINO: one model compiled with the THROUGHPUT hint and ``streams`` async infer requests fed
    round robin, each frame finished by ``PosePredictor.to_result``. onnxruntime: ``streams`` threads,
    each with its own predictor of usable cores / streams intra-op threads (or ``--threads``)."""
    n, streams = len(paths), settings.streams
    latencies: list[float] = []
    if target.backend == "openvino":
        predictor = load(model, **_load_kwargs(target, settings, hint="throughput"))
        compiled = predictor.backend.compiled  # type: ignore[attr-defined]
        requests = [compiled.create_infer_request() for _ in range(streams)]
        pending: list[tuple | None] = [None] * streams

        def finish(slot: int) -> None:
            """Wait for the frame in flight on this request and finish it on this thread."""
            job, pending[slot] = pending[slot], None
            if job is None:
                return
            requests[slot].wait()
            start, box, image, name, record = job
            predictor.to_result(requests[slot].get_output_tensor(0).data, box, image, name)
            if record:
                latencies.append((time.perf_counter() - start) * 1000)

        def submit(count: int, record: bool) -> float:
            # Round robin over the requests, no callbacks: a Python callback on OpenVINO's threads
            # can end up releasing the compiled model there, which deadlocks its executor.
            began = time.perf_counter()
            for i in range(count):
                slot = i % streams
                finish(slot)
                start = time.perf_counter()
                image = read_image(paths[i % n])
                tensor, box = predictor.preprocess(image)
                requests[slot].start_async({0: tensor})
                pending[slot] = (start, box, image, str(paths[i % n]), record)
            for slot in range(streams):
                finish(slot)
            return time.perf_counter() - began

        submit(streams * 2, record=False)
        wall = submit(runs, record=True)
        mode = (f"{streams} OpenVINO infer requests in flight, THROUGHPUT hint "
                f"({compiled.get_property('NUM_STREAMS')} streams)")  # fmt: skip
    else:
        import queue as queues

        threads = settings.threads or max(1, usable_cores() // streams)
        predictors = [load(model, **_load_kwargs(target, settings, threads=threads)) for _ in range(streams)]
        for predictor in predictors:  # warm every stream on every image shape
            for path in paths:
                predictor.predict(path)
        jobs: queues.SimpleQueue[Path] = queues.SimpleQueue()
        for i in range(runs):
            jobs.put(paths[i % n])
        errors = []

        def worker(predictor: PosePredictor) -> None:
            try:
                while True:
                    try:
                        path = jobs.get_nowait()
                    except queues.Empty:
                        return
                    start = time.perf_counter()
                    predictor.predict(path)
                    latencies.append((time.perf_counter() - start) * 1000)
            except Exception as exc:  # raised again on the main thread
                errors.append(exc)

        workers = [threading.Thread(target=worker, args=(p,)) for p in predictors]
        began = time.perf_counter()
        for thread in workers:
            thread.start()
        for thread in workers:
            thread.join()
        wall = time.perf_counter() - began
        if errors:
            raise errors[0]
        mode = f"{streams} threads, one predictor each, {threads} intra-op thread(s) per predictor"
    fps = runs / wall
    return {
        "streams": streams,
        "status": "ok",
        "mode": mode,
        "frames": runs,
        "seconds": round(wall, 3),
        "fps": round(fps, 2),
        "latency": summarize(latencies),
        "single_stream_fps": single_fps,
        "speedup": round(fps / single_fps, 3) if single_fps else None,
    }


# Every target's timed runs are spread over rounds taken in turn with the others, a few runs per
# turn: load from other processes comes in bursts of a second or two, and short turns spread a
# burst over every target (two copies of one graph, on either engine, measured 0.98-1.03 apart this way).
RUNS_PER_TURN = 4
MIN_ROUNDS = 5


def _failure(exc: Exception) -> str:
    text = first_line(exc)
    return text if isinstance(exc, EdgeposeError) or text == type(exc).__name__ else f"{type(exc).__name__}: {text}"


class TargetBench:
    """One model on one backend and device: prepared once (cold start, session, first result, warm-up),
    then timed a few runs at a time in turn with the other targets, so that a machine whose load drifts
    (a shared box, a Pi warming up) weighs on every target alike and the ratios stay honest.
    ``label``: the target's name in the report (the model's name first when several are compared)."""

    def __init__(self, model: str, target: Target, label: str, settings: BenchSettings, paths: Sequence[Path]) -> None:
        self.model, self.target, self.label = model, target, label
        self.settings, self.paths = settings, list(paths)
        self.status, self.reason, self.error = "ok", "", None
        self.samples: dict[str, list[float]] = {}
        self.forward: list[float] = []
        self.per_image = [{"end_to_end": [], "from_frame": [], "forward": [], "persons": 0} for _ in self.paths]
        self.runs = self.done = 0
        self.predictor: PosePredictor | None = None

    def prepare(self) -> None:
        reason = skip_reason(self.target, self.model)
        if reason:
            self.status, self.reason = "skipped", reason
            return
        settings, target = self.settings, self.target
        self.cold = cold_start(self.model, target, settings, self.paths) if settings.cold_start else None
        started = time.perf_counter()
        self.predictor = predictor = load(self.model, **_load_kwargs(target, settings))
        self.session_s = time.perf_counter() - started
        wanted = ORT_PROVIDERS[target.device][0] if target.backend == "onnxruntime" else None
        if wanted and predictor.providers[0] != wanted:
            self.status = "skipped"
            self.reason = (f"{wanted} is installed but did not start (no usable GPU or its libraries?); "
                           f"onnxruntime fell back to {predictor.providers[0]}")  # fmt: skip
            self.predictor = None
            return
        self.first, _ = _timed_predict(predictor, self.paths[0])
        self.tensors = [predictor.preprocess(read_image(p))[0] for p in self.paths]
        per_run = [self._iteration(i, record=False) for i in range(settings.warmup or (1 if settings.seconds else 0))]
        self.runs = _runs_for(settings, float(np.median(per_run)) if per_run else 0.0)

    def _iteration(self, i: int, record: bool = True) -> float:
        """The pipeline and the bare forward pass on one image, in alternating order so neither
        always runs on the other's warm caches; returns both times together (ms)."""
        assert self.predictor is not None
        k = i % len(self.paths)
        if i % 2:
            fwd = _forward_ms(self.predictor, self.tensors[k])
            stages, persons = _timed_predict(self.predictor, self.paths[k])
        else:
            stages, persons = _timed_predict(self.predictor, self.paths[k])
            fwd = _forward_ms(self.predictor, self.tensors[k])
        if record:
            for stage, ms in stages.items():
                self.samples.setdefault(stage, []).append(ms)
            self.forward.append(fwd)
            self.per_image[k]["end_to_end"].append(stages["end_to_end"])
            self.per_image[k]["from_frame"].append(stages["end_to_end"] - stages["read"])
            self.per_image[k]["forward"].append(fwd)
            self.per_image[k]["persons"] = persons
        return fwd + stages["end_to_end"]

    def step(self) -> None:
        self._iteration(self.done)
        self.done += 1

    def settle(self) -> None:
        """One untimed run before a turn (see ``take_turns``)."""
        self._iteration(self.done, record=False)

    def report(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"target": self.label, "model": self.model, "backend": self.target.backend,
                                 "device": self.target.device}  # fmt: skip
        if self.status != "ok":
            return {**entry, "status": self.status, "reason": self.reason}
        assert self.predictor is not None
        stats = {stage: summarize(self.samples[stage]) for stage in (*STAGES, "end_to_end") if stage in self.samples}
        fwd = summarize(self.forward)
        return {
            **entry,
            "status": "ok",
            **_engine_facts(self.predictor),
            "threads_requested": self.settings.threads,
            "session_s": round(self.session_s, 3),
            "first_result_ms": round(self.first["end_to_end"], 3),
            "first_inference_ms": round(self.first["inference"], 3),
            "cold_start": self.cold,
            "runs": self.done,
            "stages": stats,
            "forward": fwd,
            **_overhead(self.per_image),
            "images": [
                {
                    "image": path.name,
                    "input_shape": list(tensor.shape[2:]),
                    "persons": v["persons"],
                    "end_to_end_p50_ms": _p50(v["end_to_end"]),
                    "forward_p50_ms": _p50(v["forward"]),
                }
                for path, tensor, v in zip(self.paths, self.tensors, self.per_image)
            ],
        }


def _check_ultralytics() -> None:
    import importlib.util

    for module in ("torch", "ultralytics"):
        if importlib.util.find_spec(module) is None:
            raise MissingExtraError("export", module)


class UltralyticsBench:
    """Ultralytics' own predict on the same image files with the same thresholds and size, on CPU,
    timed in the same rounds as the edgepose targets; its ``speed`` dict gives its stage split."""

    def __init__(self, weights: str, settings: BenchSettings, paths: Sequence[Path], imgsz: int) -> None:
        self.weights, self.settings, self.paths, self.imgsz = str(weights), settings, list(paths), imgsz
        self.status, self.reason, self.error = "ok", "", None
        self.samples: dict[str, list[float]] = {}
        self.persons: dict[str, int] = {}
        self.per_image: dict[str, list[float]] = {path.name: [] for path in self.paths}
        self.runs = self.done = 0
        self.args = {"imgsz": imgsz, "conf": settings.conf, "iou": settings.iou, "max_det": settings.max_det,
                     "device": "cpu", "verbose": False}  # fmt: skip

    def prepare(self) -> None:
        from .export.reference import ultralytics_model

        started = time.perf_counter()
        self.model = ultralytics_model(self.weights)
        self.model.predict(str(self.paths[0]), **self.args)
        self.first_s = time.perf_counter() - started
        per_run = [self._once(i, record=False) for i in range(self.settings.warmup)]
        self.runs = _runs_for(self.settings, float(np.median(per_run)) if per_run else 1000.0)

    def _once(self, i: int, record: bool = True) -> float:
        path = self.paths[i % len(self.paths)]
        start = time.perf_counter()
        result = self.model.predict(str(path), **self.args)[0]
        end_to_end = (time.perf_counter() - start) * 1000
        if record:
            stages = {k: float(v) for k, v in result.speed.items()}
            stages["other"] = end_to_end - sum(stages.values())
            stages["end_to_end"] = end_to_end
            for stage, ms in stages.items():
                self.samples.setdefault(stage, []).append(ms)
            self.persons[path.name] = len(result)
            self.per_image[path.name].append(end_to_end)
        return end_to_end

    def step(self) -> None:
        self._once(self.done)
        self.done += 1

    def settle(self) -> None:
        """One untimed run before a turn (see ``take_turns``)."""
        self._once(self.done, record=False)

    def report(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"weights": self.weights, "format": Path(self.weights).suffix.lstrip("."),
                                 "imgsz": self.imgsz, "status": self.status}  # fmt: skip
        if self.status != "ok":
            return {**entry, "reason": self.reason}
        import torch
        import ultralytics

        return {
            **entry,
            "versions": {"ultralytics": ultralytics.__version__, "torch": torch.__version__},
            "torch_threads": torch.get_num_threads(),
            "load_and_first_result_s": round(self.first_s, 3),
            "runs": self.done,
            "stages": {stage: summarize(values) for stage, values in self.samples.items()},
            "persons": self.persons,
            "images": [{"image": name, "end_to_end_p50_ms": _p50(values)} for name, values in self.per_image.items()],
        }


def _phase(entry: dict[str, Any], measure: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """An extra measurement of one target; when its engine fails, the report says so and the run goes on."""
    try:
        return measure(*args)
    except InputError:
        raise
    except Exception as exc:  # onnxruntime and OpenVINO raise their own untyped errors
        return {**entry, "status": "failed", "reason": _failure(exc)}


def _guarded(bench: TargetBench | UltralyticsBench, action: Callable[[], None]) -> None:
    """Run one action of a bench; a device or engine that fails marks that bench failed, not the run.
    A bad setting (``InputError``) is the user's to fix and ends the run."""
    try:
        action()
    except InputError:
        raise
    except Exception as exc:  # onnxruntime and OpenVINO raise their own untyped errors
        bench.status, bench.reason, bench.error = "failed", _failure(exc), exc


def schedule(benches: Sequence[Any], rounds: int | None = None) -> list[Any]:
    """Every bench's ``runs`` spread over ``rounds`` rounds (default: about ``RUNS_PER_TURN`` runs
    of the longest bench per round), each bench taking its share in turn."""
    most = max((bench.runs for bench in benches), default=0)
    rounds = rounds or max(MIN_ROUNDS, math.ceil(most / RUNS_PER_TURN))
    order = []
    for r in range(rounds):
        for bench in benches:
            order += [bench] * (math.ceil(bench.runs * (r + 1) / rounds) - math.ceil(bench.runs * r / rounds))
    return order


def take_turns(order: Iterable[Any]) -> None:
    """Time the schedule. Each turn starts with one untimed run (``settle``): the target whose turn
    just ended may still have threads spinning (a spinning onnxruntime session, OpenVINO) and its
    data in the caches. Without it, the first run of a turn after such a target took 10-20 ms
    longer here, which put onnxruntime's e2e / forward at 1.19-1.34 instead of 1.12."""
    previous = None
    for bench in order:
        if bench.status == "ok":
            if bench is not previous:
                _guarded(bench, bench.settle)
            _guarded(bench, bench.step)
        previous = bench


@contextlib.contextmanager
def _quiet_ultralytics(active: bool) -> Iterator[None]:
    """Ultralytics logs 'Loading x.onnx for ONNX Runtime inference...' on stdout: noise in a report."""
    if not active:
        yield
        return
    import logging

    from ultralytics.utils import LOGGER

    level = LOGGER.level
    LOGGER.setLevel(logging.WARNING)
    try:
        yield
    finally:
        LOGGER.setLevel(level)


def _images(settings: BenchSettings) -> list[Path]:
    paths = list_images(settings.images) if settings.images else sample_images()
    for path in paths:
        read_image(path)  # a bad file fails the run now, not after minutes of measuring
    return paths


def _plain(items: Sequence[Any], label: str) -> Iterator[Any]:
    yield from items


def model_speedups(benches: Sequence[TargetBench], reports: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each model after the first against the first model given that ran on the same backend, device
    and precision (so an INT8 IR meets the FP32 IR, an INT8 ONNX the FP32 ONNX): reference p50 over
    this model's p50, each image's p50 summed as in ``_ratio``; > 1 means this model is faster."""
    ran = [(b, r) for b, r in zip(benches, reports) if r["status"] == "ok"]
    out = []
    for bench, report in ran:
        reference = next((r for b, r in ran if b.target == bench.target), None)
        if reference is None or reference is report:
            continue
        out.append({
            "model": bench.model, "reference": reference["model"], "target": bench.target.label,
            "end_to_end_p50_speedup": _ratio(reference["images"], report["images"]),
            "forward_p50_speedup": _ratio(reference["images"], report["images"], "forward_p50_ms"),
        })  # fmt: skip
    return out


def run_bench(settings: BenchSettings, progress: Progress | None = None) -> dict[str, Any]:
    """Measure every model on every target (and Ultralytics if asked), all in the same interleaved
    rounds, and return the report (schema: docs/benchmark.md)."""
    settings.check()
    progress = progress or _plain
    models = settings.model
    names = model_names(models)
    targets = [(model, target) for model in models
               for target in parse_targets(model, settings.backend, settings.devices, settings.precisions,
                                           settings.spin)]  # fmt: skip
    if settings.spin and not any(target.spin for _, target in targets):
        raise InputError("--spin times onnxruntime on cpu, and this run has no such target")
    if settings.compare_ultralytics:
        _check_ultralytics()
    paths = _images(settings)
    before = clock_state()
    benches = [TargetBench(model, target, target.label if len(models) == 1 else f"{names[model]} {target.label}",
                           settings, paths) for model, target in targets]  # fmt: skip
    for bench in progress(benches, "preparing"):  # cold starts, sessions, first results, warm-up
        _guarded(bench, bench.prepare)
    ready = [b for b in benches if b.status == "ok"]
    failed = [b for b in benches if b.status == "failed"]
    if failed and not ready:
        raise failed[0].error  # nothing could run: the model itself is at fault
    imgsz = settings.imgsz or (max(ready[0].predictor.input_shape) if ready and ready[0].predictor else 640)
    with _quiet_ultralytics(bool(settings.compare_ultralytics)):
        ultra = [UltralyticsBench(w, settings, paths, imgsz) for w in settings.compare_ultralytics]
        for bench in ultra:
            _guarded(bench, bench.prepare)
        take_turns(progress(schedule([b for b in [*benches, *ultra] if b.status == "ok"]), "timing"))
        ultra_reports = [bench.report() for bench in ultra]
    reports = [bench.report() for bench in benches]
    for bench, report in zip(benches, reports):
        bench.predictor = None  # the throughput and stream phases load their own
        if report["status"] != "ok":
            continue
        if settings.streams:
            report["throughput"] = _phase({"streams": settings.streams}, _throughput, bench.model, bench.target,
                                          settings, paths, bench.done, report["stages"]["end_to_end"]["fps"])  # fmt: skip
        if settings.video:
            report["stream"] = _phase({"video": settings.video}, stream_fps, bench.model, settings.video,
                                      _load_kwargs(bench.target, settings), settings.video_rounds)  # fmt: skip
    after = clock_state()
    ratios = [
        {"edgepose": r["target"], "ultralytics": u["weights"], "end_to_end_p50": _ratio(r["images"], u["images"])}
        for r in reports if r["status"] == "ok" for u in ultra_reports if u["status"] == "ok"
    ]  # fmt: skip
    settings_out = asdict(settings)
    settings_out["model"] = list(models)
    settings_out["compare_ultralytics"] = list(settings.compare_ultralytics)
    settings_out["images"] = [str(p) for p in paths]
    return {
        "schema": SCHEMA,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": settings.command(),
        "settings": settings_out,
        "system": system_info(),
        "clock": {"before": before, "after": after},
        "targets": reports,
        "models": model_speedups(benches, reports),
        "ultralytics": ultra_reports,
        "ratios": ratios,
        "bench_process": {"peak_rss_mb": peak_rss_mb(), "rss_mb": current_rss_mb()},
    }
