"""Soak the runtime: many frames through the whole pipeline, checking memory and handles stay flat.

    python benchmarks/soak.py --frames 10000 [--warmup 200] [--model models/yolo11n-pose.onnx]
                              [--classifier models/yoga-classifier.onnx] [--backend auto] [--imgsz N]

Each frame is what a kiosk does: read an uploaded file (the bundled photos, mirrored and cropped
copies; every 50th upload is a corrupt file, which must raise InputError and be skipped), predict
with the keypoint classifier, draw, encode the annotated JPEG, serialise the JSON; every 100th
frame also writes both atomically (outputs.py). RSS and open file descriptors are sampled after
the warm-up and every 100 frames; growth is (end - after warm-up) / after warm-up. Linux only
(/proc). Writes benchmarks/results/soak.json (or --out); exits 1 if RSS grew by 5 % or more, or
the fd or thread count grew. tests/test_soak.py runs a short version of this very script.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import cv2

import edgepose
from edgepose.draw import draw_result
from edgepose.errors import InputError
from edgepose.memory import allocator_state, reuse_freed_memory
from edgepose.outputs import write_bytes_atomic, write_json
from edgepose.sources import read_image, sample_images

ROOT = Path(__file__).resolve().parent.parent
MAX_RSS_GROWTH_PCT = 5.0


def rss_mb() -> float:
    """Resident set size now (not the peak), from /proc/self/statm."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def threads() -> int:
    status = Path("/proc/self/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("Threads:")))


def uploads(folder: Path) -> list[Path]:
    """Real photos as files of several sizes, and one corrupt upload (a JPEG cut in half)."""
    files = []
    for path in sample_images():
        image = cv2.imread(str(path))
        for name, variant in (("", image), ("mirror-", image[:, ::-1]), ("crop-", image[: image.shape[0] * 2 // 3])):
            files.append(folder / f"{name}{path.name}")
            cv2.imwrite(str(files[-1]), variant)
    broken = folder / "broken.jpg"
    data = sample_images()[0].read_bytes()
    broken.write_bytes(data[: len(data) // 2])
    return files + [broken]


def soak(model: str, classifier: str | None, frames: int, warmup: int, backend: str, imgsz: int | None = None) -> dict:
    predictor = edgepose.load(model, classifier=classifier, backend=backend, imgsz=imgsz)
    samples: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="edgepose-soak-") as work:
        work_path = Path(work)
        *good, broken = uploads(work_path)
        skipped, persons, start = 0, 0, 0.0
        baseline: dict = {}
        for i in range(warmup + frames):
            if i == warmup:
                baseline = {"rss_mb": rss_mb(), "fds": open_fds(), "threads": threads()}
                start = time.perf_counter()
            path = broken if i % 50 == 49 else good[i % len(good)]
            try:
                image = read_image(path)
                result = predictor(image, name=path.name)
            except InputError:
                skipped += 1
                continue
            persons += len(result)
            annotated = cv2.imencode(".jpg", draw_result(image, result, predictor.meta.skeleton))[1]
            payload = json.dumps(result.to_dict())
            if i % 100 == 0:
                write_bytes_atomic(work_path / "out" / "last.jpg", annotated.tobytes())
                write_json(work_path / "out" / "last.json", json.loads(payload))
            if i >= warmup and (i - warmup) % 100 == 0:
                samples.append({"frame": i - warmup, "rss_mb": round(rss_mb(), 1), "fds": open_fds()})
        seconds = time.perf_counter() - start
        end = {"rss_mb": rss_mb(), "fds": open_fds(), "threads": threads()}
    rss = [s["rss_mb"] for s in samples] + [end["rss_mb"]]
    return {
        "frames": frames,
        "warmup_frames": warmup,
        "model": Path(model).name,
        "classifier": Path(classifier).name if classifier else None,
        "backend": predictor.backend.name,
        "input_shape": list(predictor.input_shape),
        "rss_mb_after_warmup": round(baseline["rss_mb"], 1),
        "rss_mb_end": round(end["rss_mb"], 1),
        "rss_mb_max": round(max(rss), 1),
        "rss_growth_pct": round(100 * (end["rss_mb"] - baseline["rss_mb"]) / baseline["rss_mb"], 2),
        "rss_max_growth_pct": round(100 * (max(rss) - baseline["rss_mb"]) / baseline["rss_mb"], 2),
        "fds_after_warmup": baseline["fds"],
        "fds_end": end["fds"],
        "threads_after_warmup": baseline["threads"],
        "threads_end": end["threads"],
        "corrupt_uploads_skipped": skipped,
        "persons_found": persons,
        "seconds": round(seconds, 1),
        "frames_per_second": round(frames / seconds, 2),
        "cpu": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "allocator": allocator_state(),
        "samples": samples,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=10000, help="Frames after the warm-up.")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--model", default=str(ROOT / "models" / "yolo11n-pose.onnx"))
    parser.add_argument("--classifier", default=str(ROOT / "models" / "yoga-classifier.onnx"))
    parser.add_argument("--backend", default="auto", choices=["auto", "onnxruntime", "openvino"])
    parser.add_argument("--imgsz", type=int, default=None, help="Input size (dynamic graphs only).")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "soak.json"))
    args = parser.parse_args()
    if not Path("/proc/self/statm").exists():
        sys.exit("error: the soak reads /proc (Linux only)")
    reuse_freed_memory()  # as `edgepose serve` and a kiosk app following docs/predict.md run
    report = soak(args.model, args.classifier or None, args.frames, args.warmup, args.backend, args.imgsz)
    write_json(args.out, report)
    print(f"{report['frames']} frames in {report['seconds']} s ({report['frames_per_second']} frames/s): RSS "
          f"{report['rss_mb_after_warmup']} -> {report['rss_mb_end']} MB ({report['rss_growth_pct']:+.2f} %, max "
          f"{report['rss_max_growth_pct']:+.2f} %), fds {report['fds_after_warmup']} -> {report['fds_end']}, threads "
          f"{report['threads_after_warmup']} -> {report['threads_end']}; {report['corrupt_uploads_skipped']} corrupt "
          f"uploads skipped; wrote {args.out}")  # fmt: skip
    flat = report["rss_growth_pct"] < MAX_RSS_GROWTH_PCT and report["fds_end"] <= report["fds_after_warmup"]
    sys.exit(0 if flat and report["threads_end"] <= report["threads_after_warmup"] else 1)


if __name__ == "__main__":
    main()
