"""``edgepose bench --compare-ultralytics``: Ultralytics' own predict, timed in the same rounds as
edgepose's targets (``edgepose.bench`` runs them together). torch and ultralytics load only here."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from .bench_targets import BenchSettings
from .bench_timing import TimedRuns, p50_of, summarize
from .errors import MissingExtraError


def check_ultralytics() -> None:
    import importlib.util

    for module in ("torch", "ultralytics"):
        if importlib.util.find_spec(module) is None:
            raise MissingExtraError("export", module)


class UltralyticsBench(TimedRuns):
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
        self.warm_up()

    def run_once(self, i: int, record: bool = True) -> float:
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
            "images": [{"image": name, "end_to_end_p50_ms": p50_of(values)} for name, values in self.per_image.items()],
        }


@contextlib.contextmanager
def quiet_ultralytics(active: bool) -> Iterator[None]:
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
