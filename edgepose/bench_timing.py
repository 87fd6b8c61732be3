"""How ``edgepose bench`` measures one target: percentiles, stage laps around the real predictor,
the bare forward pass, cold start in a fresh runtime-only process, the engine's own facts, and N
requests in flight."""

from __future__ import annotations

import collections
import json
import math
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .bench_targets import COLD_STARTS, DEFAULT_RUNS, BenchSettings, Target
from .device_info import usable_cores
from .predictor import PosePredictor, load
from .sources import read_image
from .stream import InferencePool


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


def p50_of(values: Sequence[float]) -> float | None:
    return round(float(np.median(values)), 3) if len(values) else None


def overhead(per_image: Sequence[dict[str, Any]]) -> dict[str, float]:
    """End to end against the bare forward pass, from each image's p50 (pooled over images of
    different sizes the p50 would sit between two modes and jump from run to run); ``frame``: from
    the decoded image on (a camera frame), i.e. without reading and decoding the file."""
    timed = [v for v in per_image if v["end_to_end"]]
    e2e, frame, fwd = (sum(float(np.median(v[key])) for v in timed) for key in ("end_to_end", "from_frame", "forward"))
    return {"end_to_end_over_forward_p50": round(e2e / fwd, 4),
            "overhead_p50_ms": round((e2e - fwd) / len(timed), 3),
            "frame_over_forward_p50": round(frame / fwd, 4)}  # fmt: skip


def ratio(ours: Sequence[dict[str, Any]], theirs: Sequence[dict[str, Any]],
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


def timed_predict(predictor: PosePredictor, path: Path) -> tuple[dict[str, float], int]:
    laps = _Laps()
    result = predictor.predict(path, lap=laps)
    return laps.stages(), len(result.persons)


def forward_ms(predictor: PosePredictor, tensor: np.ndarray) -> float:
    start = time.perf_counter()
    predictor.backend.run(tensor)
    return (time.perf_counter() - start) * 1000


def runs_for(settings: BenchSettings, per_run_ms: float) -> int:
    """``--runs``, or as many runs as fit in ``--seconds`` at the warm-up's pace."""
    if settings.seconds is None:
        return settings.runs or DEFAULT_RUNS
    return max(1, math.ceil(settings.seconds * 1000 / max(per_run_ms, 1e-3)))


class TimedRuns:
    """What ``bench.take_turns`` drives, edgepose's targets and Ultralytics alike: ``run_once(i,
    record)`` runs (and with ``record`` keeps) the i-th timed run and returns its ms."""

    settings: BenchSettings
    runs: int
    done: int

    def run_once(self, i: int, record: bool = True) -> float:
        raise NotImplementedError

    def warm_up(self) -> None:
        """The warm-up runs (one at least with --seconds: it paces them), then how many timed runs to take."""
        settings = self.settings
        per_run = [self.run_once(i, record=False) for i in range(settings.warmup or (1 if settings.seconds else 0))]
        self.runs = runs_for(settings, float(np.median(per_run)) if per_run else 0.0)

    def step(self) -> None:
        self.run_once(self.done)
        self.done += 1

    def settle(self) -> None:
        """One untimed run before a turn (see ``take_turns``)."""
        self.run_once(self.done, record=False)


def load_kwargs(target: Target, settings: BenchSettings, **overrides: Any) -> dict[str, Any]:
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
    args = {"model": str(model), "load": load_kwargs(target, settings), "images": [str(p) for p in paths]}
    runs = []
    for _ in range(spawns):
        run = _spawn(args)
        if run["status"] != "ok":
            return run
        runs.append(run)
    runs.sort(key=lambda r: r["first_result_s"])
    return {**runs[len(runs) // 2], "spawns": [r["first_result_s"] for r in runs],
            "peak_rss_mb": max(r["peak_rss_mb"] for r in runs)}  # fmt: skip


def engine_facts(predictor: PosePredictor) -> dict[str, Any]:
    backend = predictor.backend
    facts: dict[str, Any] = {"providers": list(backend.providers), "input_shape": list(predictor.input_shape),
                             "rect": predictor.rect}  # fmt: skip
    if backend.name == "openvino":
        compiled = backend.compiled  # type: ignore[attr-defined]
        try:  # a CPU property: AUTO, MULTI, GPU and NPU do not expose it
            facts["threads_used"] = int(compiled.get_property("INFERENCE_NUM_THREADS"))
        except Exception:  # OpenVINO raises a plain RuntimeError for a property a plugin lacks
            facts["threads_used"] = "not exposed by this device"
        facts["precision"] = backend.engine["precision"]["compiled"]  # what runs; the target names the request
        facts["precision_requested"] = backend.engine["precision"]["requested"]
    else:
        options = backend.session.get_session_options()  # type: ignore[attr-defined]
        facts["threads_used"] = options.intra_op_num_threads or "onnxruntime default (one per physical core)"
        facts["spin"] = options.get_session_config_entry("session.intra_op.allow_spinning") == "1"
    return facts


def throughput(model: str, target: Target, settings: BenchSettings, paths: Sequence[Path], runs: int,
                single_fps: float | None) -> dict[str, Any]:  # fmt: skip
    """``streams`` frames in flight through the whole pipeline: FPS and per-frame latency under load.

    OpenVINO: one model compiled with the THROUGHPUT hint, frames kept ``streams`` in flight through
    ``stream.InferencePool`` (the async requests a video or camera stream runs on), each finished by
    ``PosePredictor.to_result``. onnxruntime: ``streams`` threads, each with its own predictor of
    usable cores / streams intra-op threads (or ``--threads``): independent streams, as a server
    with several cameras runs them."""
    n, streams = len(paths), settings.streams
    latencies: list[float] = []
    if target.backend == "openvino":
        predictor = load(model, **load_kwargs(target, settings, hint="throughput"))
        pool = InferencePool(predictor.backend, streams)

        def submit(count: int, record: bool) -> float:
            began = time.perf_counter()
            pending: collections.deque = collections.deque()

            def finish() -> None:
                start, box, image, name, wait = pending.popleft()
                predictor.to_result(wait(), box, image, name)
                if record:
                    latencies.append((time.perf_counter() - start) * 1000)

            for i in range(count):
                if len(pending) == streams:
                    finish()
                start = time.perf_counter()
                image = read_image(paths[i % n])
                tensor, box = predictor.preprocess(image)
                pending.append((start, box, image, str(paths[i % n]), pool.submit(tensor)))
            while pending:
                finish()
            return time.perf_counter() - began

        try:
            submit(streams * 2, record=False)
            wall = submit(runs, record=True)
        finally:
            pool.close()
        try:
            streams_note = f"{predictor.backend.compiled.get_property('NUM_STREAMS')} streams"  # type: ignore[attr-defined]
        except Exception:  # a device without the property (AUTO)
            streams_note = "streams not exposed"
        mode = f"{streams} OpenVINO infer requests in flight (stream.InferencePool), THROUGHPUT hint ({streams_note})"
    else:
        import queue as queues

        threads = settings.threads or max(1, usable_cores() // streams)
        predictors = [load(model, **load_kwargs(target, settings, threads=threads)) for _ in range(streams)]
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
