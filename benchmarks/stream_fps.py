"""Stream FPS with overlap vs one frame at a time, on the same video, in the same run.

    python benchmarks/stream_fps.py [--model models/yolo11n-pose.onnx] [--rounds 12] [--save]

The measurement is the harness's (``edgepose.bench_stream``, also ``edgepose bench --video``):
sequential = a plain read/predict/track loop with the engine at its latency defaults; overlap =
``edgepose.Stream`` (reader thread, bounded queue, several inferences in flight). Both decode the
same video made from the bundled photos and run the same tracker and classifier; ``--save`` adds
drawing and encoding an annotated video on both sides. Writes benchmarks/results/stream.json
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

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(ROOT / "models" / "yolo11n-pose.onnx"))
    parser.add_argument("--classifier", default=str(ROOT / "models" / "yoga-classifier.onnx"))
    parser.add_argument("--backends", default="onnxruntime,openvino")
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--save", action="store_true", help="also draw and encode an annotated video")
    parser.add_argument("--out", default=None, help="default: benchmarks/results/stream[_save].json")
    args = parser.parse_args()

    results: dict = {"load_average_before": [round(v, 2) for v in os.getloadavg()],
                     "model": Path(args.model).name, "classifier": Path(args.classifier).name,
                     "cpu": cpu_model(), "cores": os.cpu_count(), "backends": {}}  # fmt: skip
    for backend in args.backends.split(","):
        try:
            row = stream_fps(
                args.model, SAMPLE, {"backend": backend, "classifier": args.classifier}, args.rounds, args.save
            )
        except edgepose.MissingExtraError as exc:
            print(f"{backend}: skipped ({exc})")
            continue
        results["backends"][backend] = row
        print(f"{backend}: sequential {row['sequential_fps_median']} fps, overlap {row['overlap_fps_median']} fps "
              f"-> {row['speedup']}x (per round {row['speedup_per_round']})")  # fmt: skip
    results["load_average_after"] = [round(v, 2) for v in os.getloadavg()]
    name = "stream_save.json" if args.save else "stream.json"
    out = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
