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

import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from .backends import ORT_PROVIDERS
from .bench_stream import stream_fps
from .bench_targets import SCHEMA, STAGES, BenchSettings, Progress, Target, model_names, parse_targets, skip_reason
from .bench_timing import (
    TimedRuns,
    cold_start,
    engine_facts,
    forward_ms,
    load_kwargs,
    overhead,
    p50_of,
    ratio,
    summarize,
    throughput,
    timed_predict,
)
from .bench_ultralytics import UltralyticsBench, check_ultralytics, quiet_ultralytics
from .device_info import clock_state, current_rss_mb, peak_rss_mb, system_info
from .errors import EdgeposeError, InputError, first_line
from .predictor import PosePredictor, load
from .sources import list_images, read_image, sample_images

RUNS_PER_TURN = 4
MIN_ROUNDS = 5


def _failure(exc: Exception) -> str:
    text = first_line(exc)
    return text if isinstance(exc, EdgeposeError) or text == type(exc).__name__ else f"{type(exc).__name__}: {text}"


class TargetBench(TimedRuns):
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
        # persons: None until the image is timed (--runs under the number of images leaves some untimed)
        self.per_image = [{"end_to_end": [], "from_frame": [], "forward": [], "persons": None} for _ in self.paths]
        self.tensors: dict[int, np.ndarray] = {}  # the bare forward pass's inputs, made as images come up
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
        self.predictor = predictor = load(self.model, **load_kwargs(target, settings))
        self.session_s = time.perf_counter() - started
        wanted = ORT_PROVIDERS[target.device][0] if target.backend == "onnxruntime" else None
        if wanted and predictor.providers[0] != wanted:
            self.status = "skipped"
            self.reason = (f"{wanted} is installed but did not start (no usable GPU or its libraries?); "
                           f"onnxruntime fell back to {predictor.providers[0]}")  # fmt: skip
            self.predictor = None
            return
        self.first, _ = timed_predict(predictor, self.paths[0])
        self.warm_up()

    def run_once(self, i: int, record: bool = True) -> float:
        """The pipeline and the bare forward pass on one image, in alternating order so neither
        always runs on the other's warm caches; returns both times together (ms)."""
        assert self.predictor is not None
        k = i % len(self.paths)
        if k not in self.tensors:
            self.tensors[k] = self.predictor.preprocess(read_image(self.paths[k]))[0]
        if (k + i // len(self.paths)) % 2:  # each image gets both orders in turn, however many images
            fwd = forward_ms(self.predictor, self.tensors[k])
            stages, persons = timed_predict(self.predictor, self.paths[k])
        else:
            stages, persons = timed_predict(self.predictor, self.paths[k])
            fwd = forward_ms(self.predictor, self.tensors[k])
        if record:
            for stage, ms in stages.items():
                self.samples.setdefault(stage, []).append(ms)
            self.forward.append(fwd)
            self.per_image[k]["end_to_end"].append(stages["end_to_end"])
            self.per_image[k]["from_frame"].append(stages["end_to_end"] - stages["read"])
            self.per_image[k]["forward"].append(fwd)
            self.per_image[k]["persons"] = persons
        return fwd + stages["end_to_end"]

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
            **engine_facts(self.predictor),
            "threads_requested": self.settings.threads,
            "session_s": round(self.session_s, 3),
            "first_result_ms": round(self.first["end_to_end"], 3),
            "first_inference_ms": round(self.first["inference"], 3),
            "cold_start": self.cold,
            "runs": self.done,
            "stages": stats,
            "forward": fwd,
            **overhead(self.per_image),
            "images": [
                {
                    "image": path.name,
                    "input_shape": list(self.tensors[k].shape[2:]) if k in self.tensors else None,
                    "persons": v["persons"],
                    "end_to_end_p50_ms": p50_of(v["end_to_end"]),
                    "forward_p50_ms": p50_of(v["forward"]),
                }
                for k, (path, v) in enumerate(zip(self.paths, self.per_image))
            ],
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


def _report_of(bench: TargetBench | UltralyticsBench) -> dict[str, Any]:
    """A bench's report; one that cannot be written up (an engine fact its device lacks) is listed as failed."""
    made: list[dict[str, Any]] = []
    _guarded(bench, lambda: made.append(bench.report()))
    return made[0] if made else bench.report()


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
            if bench.status == "ok":  # a settle that failed marks the bench failed: no sample after it
                _guarded(bench, bench.step)
        previous = bench


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
            "end_to_end_p50_speedup": ratio(reference["images"], report["images"]),
            "forward_p50_speedup": ratio(reference["images"], report["images"], "forward_p50_ms"),
        })  # fmt: skip
    return out


def run_bench(settings: BenchSettings, progress: Progress | None = None) -> dict[str, Any]:
    """Measure every model on every target (and Ultralytics if asked), all in the same interleaved
    rounds, and return the report (schema: docs/reference/schemas.md)."""
    settings.check()
    progress = progress or _plain
    models = settings.model
    names = model_names(models)
    targets = [(model, target) for model in models
               for target in parse_targets(model, settings.backend, settings.devices, settings.precisions,
                                           settings.spin)]  # fmt: skip
    if settings.spin and not any(target.spin for _, target in targets):
        raise InputError("--spin times onnxruntime on cpu, and this run has no such target")
    if settings.precisions != ["f32"] and not any(t.backend == "openvino" and t.device.startswith("CPU")
                                                 for _, t in targets):  # fmt: skip
        raise InputError("--precision times OpenVINO on the CPU at each precision, and this run has no such target")
    if settings.compare_ultralytics:
        check_ultralytics()
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
    with quiet_ultralytics(bool(settings.compare_ultralytics)):
        ultra = [UltralyticsBench(w, settings, paths, imgsz) for w in settings.compare_ultralytics]
        for bench in ultra:
            _guarded(bench, bench.prepare)
        take_turns(progress(schedule([b for b in [*benches, *ultra] if b.status == "ok"]), "timing"))
        ultra_reports = [_report_of(bench) for bench in ultra]
    reports = [_report_of(bench) for bench in benches]
    for bench, report in zip(benches, reports):
        bench.predictor = None  # the throughput and stream phases load their own
        if report["status"] != "ok":
            continue
        if settings.streams:
            report["throughput"] = _phase({"streams": settings.streams}, throughput, bench.model, bench.target,
                                          settings, paths, bench.done, report["stages"]["end_to_end"]["fps"])  # fmt: skip
        if settings.video:
            report["stream"] = _phase({"video": settings.video}, stream_fps, bench.model, settings.video,
                                      load_kwargs(bench.target, settings), settings.video_rounds)  # fmt: skip
    after = clock_state()
    ratios = [
        {"edgepose": r["target"], "ultralytics": u["weights"], "end_to_end_p50": ratio(r["images"], u["images"])}
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
