"""Reproduce the spinning table of docs/benchmark.md: onnxruntime with and without busy-waiting threads, on an
idle machine and beside 1 or 2 processes that each keep a core busy.

    python benchmarks/spin_load.py [--model M] [--busy 0,1,2] [--rounds 6] [--out FILE]

Three sessions of the same graph in one process, timed in alternating rounds: edgepose's default
(``spin=False``), ``spin=True`` (onnxruntime's own default), and spinning that stops when each run
returns (``session.force_spinning_stop``, which edgepose does not offer: this run is why). Each
round times ``predictor(path)`` on the bundled photos (read, decode, letterbox, inference, decode
of the head) and the bare forward pass on a pre-made 384x640 tensor. The competing load is
``busy`` Python processes spinning in a loop, the stand-in for a camera, a UI or another service
on the device. Writes ``benchmarks/results/spin_load.json``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import edgepose
from edgepose.sources import read_image, sample_images

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = {"off (edgepose default)": (False, False), "on (onnxruntime default)": (True, False),
           "on, stopped after each run": (True, True)}  # fmt: skip
IMAGES_PER_ROUND = 5  # passes over the 2 photos per config and round
FORWARDS_PER_ROUND = 10


def predictors(model: str) -> dict[str, edgepose.PosePredictor]:
    """One predictor per configuration; the stop-after-run one gets its session rebuilt with that entry."""
    import onnxruntime as ort

    out = {}
    for name, (spin, stop) in CONFIGS.items():
        predictor = edgepose.load(model, spin=spin)
        if stop:
            options = predictor.backend.session.get_session_options()
            options.add_session_config_entry("session.force_spinning_stop", "1")
            predictor.backend.session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        out[name] = predictor
    return out


def measure(preds: dict[str, edgepose.PosePredictor], busy: int, rounds: int) -> dict[str, dict[str, float]]:
    """p50/p90 of end to end and p50 of the bare forward per configuration, with ``busy`` competing processes."""
    paths = sample_images()
    tensor = next(iter(preds.values())).preprocess(read_image(paths[-1]))[0]  # zidane.jpg: 384x640
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy)]
    try:
        for predictor in preds.values():  # warm-up: first runs allocate
            for path in paths * 3:
                predictor(path)
        e2e: dict[str, list[float]] = {name: [] for name in preds}
        fwd: dict[str, list[float]] = {name: [] for name in preds}
        for _ in range(rounds):
            for name, predictor in preds.items():
                for path in paths * IMAGES_PER_ROUND:
                    start = time.perf_counter()
                    predictor(path)
                    e2e[name].append((time.perf_counter() - start) * 1000)
                for _ in range(FORWARDS_PER_ROUND):
                    start = time.perf_counter()
                    predictor.backend.run(tensor)
                    fwd[name].append((time.perf_counter() - start) * 1000)
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    return {name: {"end_to_end_p50_ms": round(statistics.median(e2e[name]), 1),
                   "end_to_end_p90_ms": round(float(np.percentile(e2e[name], 90)), 1),
                   "forward_p50_ms": round(statistics.median(fwd[name]), 1)} for name in preds}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(ROOT / "models" / "dynamic" / "yolo11n-pose.onnx"))
    parser.add_argument("--busy", default="0,1,2", help="Competing busy processes per measurement, comma list.")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "spin_load.json"))
    args = parser.parse_args()
    from edgepose.device_info import cpu_model, usable_cores
    from edgepose.outputs import write_json

    preds = predictors(args.model)
    rows = []
    for busy in (int(b) for b in args.busy.split(",")):
        for name, stats in measure(preds, busy, args.rounds).items():
            rows.append({"busy_processes": busy, "spinning": name, **stats})
            print(f"busy {busy}  {name:<28} e2e p50 {stats['end_to_end_p50_ms']:6.1f}  "
                  f"p90 {stats['end_to_end_p90_ms']:6.1f}  forward p50 {stats['forward_p50_ms']:6.1f} ms", flush=True)  # fmt: skip
    write_json(args.out, {"model": args.model, "cpu": cpu_model(), "cores": usable_cores(), "rounds": args.rounds,
                          "images": [p.name for p in sample_images()], "rows": rows})  # fmt: skip


if __name__ == "__main__":
    main()
