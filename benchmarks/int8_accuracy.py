"""What FP16 and INT8 cost in accuracy and what INT8 buys in speed, both routes, in one run.

    python benchmarks/int8_accuracy.py [--weights models/yolo11n-pose.onnx] [--data ../shared/data/coco8-pose]

Two folds over the labelled coco8-pose images: calibrate on one split plus the bundled samples,
measure on the other split, so no image calibrates the graph it is scored on. The summary pools
the two folds (each image scored once per graph) and gives each mAP change against FP32 a 95 %
paired bootstrap interval over the images. Per fold and
graph: pose/box mAP50-95 (edgepose val), keypoint drift in pixels and detection agreement
against the FP32 ONNX graph (edgepose compare), and the median end-to-end latency of the
predictor on the fold's images, all graphs timed in interleaved rounds so machine noise hits
them alike. Also measured: INT8 with the head's decode arithmetic quantised too (the choice
--quantize-head exposes). Writes benchmarks/results/int8.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from edgepose.compare import compare_models
from edgepose.export.pipeline import export_model
from edgepose.predictor import load
from edgepose.sources import list_images, sample_images
from edgepose.val import load_dataset, map_delta_interval, match_images, pooled_map

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = {  # name -> export_model options (from the FP32 ONNX graph)
    "onnx_int8": {"format": "onnx", "int8": True},
    "onnx_int8_head_quantised": {"format": "onnx", "int8": True, "keep_head_float": False},
    "openvino_fp32": {"format": "openvino"},
    "openvino_fp16": {"format": "openvino", "half": True},
    "openvino_int8": {"format": "openvino", "int8": True},
    "openvino_int8_head_quantised": {"format": "openvino", "int8": True, "keep_head_float": False},
}


def median_latency_ms(models: dict[str, object], images: list[Path], rounds: int) -> dict[str, float]:
    """Median end-to-end predict time per graph, graphs interleaved image by image."""
    from edgepose.sources import read_image

    frames = [read_image(p) for p in images]
    times: dict[str, list[float]] = {name: [] for name in models}
    for model in models.values():
        model(frames[0])  # warm-up
    for _ in range(rounds):
        for frame in frames:
            for name, model in models.items():
                start = time.perf_counter()
                model(frame)
                times[name].append(time.perf_counter() - start)
    return {name: round(float(np.median(t)) * 1000, 2) for name, t in times.items()}


def run_fold(source: Path, data: Path, calib_split: str, test_split: str, work: Path, rounds: int,
             matches: dict[str, list]) -> dict:  # fmt: skip
    calib = work / f"calib-{calib_split}"
    calib.mkdir()
    for image in [*list_images(data / "images" / calib_split), *sample_images()]:
        shutil.copy(image, calib)
    yaml = work / f"{test_split}.yaml"
    yaml.write_text(f"path: {data.resolve()}\nval: images/{test_split}\nkpt_shape: [17, 3]\n")
    images, kpt_shape = load_dataset(yaml)
    graphs = {"onnx_fp32": source}
    for name, options in VARIANTS.items():
        out = work / f"{name}-{calib_split}"
        graphs[name] = Path(export_model(str(source), out=out, calib=calib, **options)[-1].path)
    fold: dict = {"calibration": sorted(p.name for p in calib.iterdir()), "test_images": [p.name for p in images]}
    reference = load(source)
    for name, path in graphs.items():
        found = match_images(load(path, conf=0.001), images, kpt_shape)
        matches.setdefault(name, []).extend(found)  # pooled over folds: each image scored once per graph
        metrics = pooled_map(found)
        fold[name] = {"pose_map50_95": round(metrics["pose_map50_95"], 4), "box_map50_95": round(metrics["box_map50_95"], 4),
                      "instances": metrics["instances"]}  # fmt: skip
        if name != "onnx_fp32":
            agreement = compare_models(reference, load(path), images)
            fold[name].update(persons=agreement["persons"], keypoint_drift_px=agreement["keypoint_drift_px"])
    latency = median_latency_ms({name: load(path) for name, path in graphs.items()}, images, rounds)
    for name, ms in latency.items():
        fold[name]["latency_ms_p50"] = ms
    return fold


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=str(ROOT / "models" / "yolo11n-pose.onnx"))
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "coco8-pose"))
    parser.add_argument("--rounds", type=int, default=10, help="Timing rounds over the fold's images.")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "int8.json"))
    args = parser.parse_args()

    source, data = Path(args.weights), Path(args.data)
    matches: dict[str, list] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folds = {f"test_{test}": run_fold(source, data, calib, test, Path(tmp), args.rounds, matches)
                 for calib, test in (("train", "val"), ("val", "train"))}  # fmt: skip
    summary = {}
    for name in ["onnx_fp32", *VARIANTS]:
        speed = [folds[f]["onnx_fp32"]["latency_ms_p50"] / folds[f][name]["latency_ms_p50"] for f in folds]
        # every labelled image scored once, by the graph calibrated without it; the interval is a
        # paired bootstrap over those images: how far the delta could move on another draw of them
        delta = map_delta_interval(matches["onnx_fp32"], matches[name])
        summary[name] = {"pose_map50_95": round(pooled_map(matches[name])["pose_map50_95"], 4),
                         "pose_map50_95_points_vs_fp32": round(delta["delta"] * 100, 2),
                         "points_vs_fp32_ci95": [round(delta["ci95_low"] * 100, 2), round(delta["ci95_high"] * 100, 2)],
                         "speedup_vs_onnx_fp32": round(float(np.mean(speed)), 2)}  # fmt: skip
    ov_fp32 = np.mean([folds[f]["openvino_fp32"]["latency_ms_p50"] for f in folds])
    ov_int8 = np.mean([folds[f]["openvino_int8"]["latency_ms_p50"] for f in folds])
    summary["openvino_int8"]["speedup_vs_openvino_fp32"] = round(float(ov_fp32 / ov_int8), 2)
    result = {"weights": source.name, "data": data.name, "cpu": platform.processor() or platform.machine(),
              "summary": summary, "folds": folds}  # fmt: skip
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
