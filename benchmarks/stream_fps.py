"""Stream FPS with overlap vs one frame at a time, on the same video, in the same run.

    python benchmarks/stream_fps.py [--model M ...] [--rounds 8] [--save]

The measurement is the harness's (``edgepose.bench_stream``, also ``edgepose bench --video``):
sequential = a plain read/predict/track loop with the engine at its latency defaults; overlap =
``edgepose.Stream`` (reader thread, bounded queue, several inferences in flight). Both decode the
same video made from the bundled photos (1280x720) and run the same tracker and classifier;
``--save`` adds drawing and encoding an annotated video on both sides. By default both exported
graphs are measured: the static 640x640 one and the dynamic one (``export --dynamic``, fed a
384x640 letterbox for 16:9 frames), on both engines. Writes benchmarks/results/stream.json
(stream_save.json with --save).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import edgepose
from edgepose.bench_stream import SAMPLE, stream_fps
from edgepose.device_info import cpu_model
from edgepose.memory import allocator_state, reuse_freed_memory

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model",
        action="append",
        help="repeatable; default: models/yolo11n-pose.onnx and models/dynamic/yolo11n-pose.onnx",
    )
    parser.add_argument("--classifier", default=str(ROOT / "models" / "yoga-classifier.onnx"))
    parser.add_argument("--backends", default="onnxruntime,openvino")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--save", action="store_true", help="also draw and encode an annotated video")
    parser.add_argument("--out", default=None, help="default: benchmarks/results/stream[_save].json")
    args = parser.parse_args()

    models = args.model or [
        str(ROOT / "models" / "yolo11n-pose.onnx"),
        str(ROOT / "models" / "dynamic" / "yolo11n-pose.onnx"),
    ]
    reuse_freed_memory()  # as `edgepose bench --video` and a kiosk app following docs/predict.md
    results: dict = {"load_average_before": [round(v, 2) for v in os.getloadavg()],
                     "classifier": Path(args.classifier).name, "cpu": cpu_model(), "cores": os.cpu_count(),
                     "allocator": allocator_state(), "runs": []}  # fmt: skip
    for model in models:
        for backend in args.backends.split(","):
            try:
                row = stream_fps(
                    model, SAMPLE, {"backend": backend, "classifier": args.classifier}, args.rounds, args.save
                )
            except edgepose.MissingExtraError as exc:
                print(f"{backend}: skipped ({exc})")
                continue
            name = str(Path(model).relative_to(ROOT)) if Path(model).is_relative_to(ROOT) else model
            results["runs"].append({"model": name, "backend": backend, **row})
            print(f"{name} {backend}: sequential {row['sequential_fps_median']} fps, overlap {row['overlap_fps_median']} "
                  f"fps -> {row['speedup']}x (per round {row['speedup_per_round']}); ceiling {row['speedup_ceiling']}x, "
                  f"CPU busy {row['sequential_cpu_busy']:.0%} -> {row['overlap_cpu_busy']:.0%}")  # fmt: skip
    results["load_average_after"] = [round(v, 2) for v in os.getloadavg()]
    name = "stream_save.json" if args.save else "stream.json"
    out = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
