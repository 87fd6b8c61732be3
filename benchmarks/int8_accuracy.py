"""What FP16 and INT8 cost in accuracy and what INT8 buys in speed, both routes, in one run.

    python benchmarks/int8_accuracy.py [--weights models/yolo11n-pose.onnx] [--data ../shared/data/coco8-pose]

Two folds over the labelled coco8-pose images: calibrate on one split plus the bundled samples,
measure on the other split, so no image calibrates the graph it is scored on. Per fold and graph:
pose/box mAP50-95 (edgepose val), keypoint drift in pixels and detection agreement against the
FP32 ONNX graph (edgepose compare), and end-to-end latency, all graphs timed by ``edgepose bench``
in one run (interleaved rounds, so machine noise hits them alike). The summary pools the two folds
(each image scored once per graph) and gives each mAP change against FP32 a 95 % paired bootstrap
interval over the images. Also measured: INT8 with only the head's decode arithmetic in float,
and with nothing in float (the choices --keep-float exposes). Writes benchmarks/results/int8.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
from pathlib import Path

import numpy as np

from edgepose.bench import BenchSettings, run_bench
from edgepose.compare import compare_models
from edgepose.export.pipeline import export_model
from edgepose.memory import allocator_state, reuse_freed_memory
from edgepose.predictor import load
from edgepose.sources import list_images, sample_images
from edgepose.val import load_dataset, map_delta_interval, match_images, pooled_map

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = {  # name -> export_model options (from the FP32 ONNX graph)
    "onnx_int8": {"format": "onnx", "int8": True},
    "onnx_int8_decode_float": {"format": "onnx", "int8": True, "keep_float": "decode"},
    "onnx_int8_all_quantised": {"format": "onnx", "int8": True, "keep_float": "none"},
    "openvino_fp32": {"format": "openvino"},
    "openvino_fp16": {"format": "openvino", "half": True},
    "openvino_int8": {"format": "openvino", "int8": True},
    "openvino_int8_decode_float": {"format": "openvino", "int8": True, "keep_float": "decode"},
}


def bench_latency(graphs: dict[str, Path], images: Path, runs: int) -> tuple[dict[str, float], list[dict]]:
    """Every graph through ``edgepose bench`` in one run (interleaved rounds, same images): each
    graph's end-to-end p50 summed over the images (ms), and the harness's speed-ups against the
    first graph on the same engine (INT8 ONNX vs FP32 ONNX; FP16/INT8 IR vs FP32 IR)."""
    settings = BenchSettings(model=tuple(str(p) for p in graphs.values()), images=str(images), runs=runs,
                             cold_start=False)  # fmt: skip
    report = run_bench(settings)
    names = {str(path): name for name, path in graphs.items()}
    latency = {names[t["model"]]: round(sum(i["end_to_end_p50_ms"] for i in t["images"]), 2)
               for t in report["targets"] if t["status"] == "ok"}  # fmt: skip
    speedups = [{"graph": names[m["model"]], "against": names[m["reference"]], "target": m["target"],
                 "end_to_end_p50_speedup": m["end_to_end_p50_speedup"], "forward_p50_speedup": m["forward_p50_speedup"]}
                for m in report["models"] if m.get("end_to_end_p50_speedup")]  # fmt: skip
    return latency, speedups


def run_fold(source: Path, data: Path, calib_split: str, test_split: str, work: Path, runs: int,
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
    latency, fold["bench_speedups"] = bench_latency(graphs, data / "images" / test_split, runs)
    for name, ms in latency.items():
        fold[name]["latency_ms_p50_sum"] = ms
    return fold


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=str(ROOT / "models" / "yolo11n-pose.onnx"))
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "coco8-pose"))
    parser.add_argument("--runs", type=int, default=60, help="edgepose bench runs per graph and fold.")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "int8.json"))
    args = parser.parse_args()
    reuse_freed_memory()  # time the graphs as the `edgepose bench` CLI process does

    source, data = Path(args.weights), Path(args.data)
    matches: dict[str, list] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folds = {f"test_{test}": run_fold(source, data, calib, test, Path(tmp), args.runs, matches)
                 for calib, test in (("train", "val"), ("val", "train"))}  # fmt: skip
    summary = {}
    for name in ["onnx_fp32", *VARIANTS]:
        speed = [folds[f]["onnx_fp32"]["latency_ms_p50_sum"] / folds[f][name]["latency_ms_p50_sum"] for f in folds]
        # every labelled image scored once, by the graph calibrated without it; the interval is a
        # paired bootstrap over those images: how far the delta could move on another draw of them
        delta = map_delta_interval(matches["onnx_fp32"], matches[name])
        summary[name] = {"pose_map50_95": round(pooled_map(matches[name])["pose_map50_95"], 4),
                         "pose_map50_95_points_vs_fp32": round(delta["delta"] * 100, 2),
                         "points_vs_fp32_ci95": [round(delta["ci95_low"] * 100, 2), round(delta["ci95_high"] * 100, 2)],
                         "speedup_vs_onnx_fp32": round(float(np.mean(speed)), 2)}  # fmt: skip
    for name in summary:  # the harness's own figure, per engine: INT8 ONNX vs FP32 ONNX, IRs vs FP32 IR
        found = [m for f in folds.values() for m in f["bench_speedups"] if m["graph"] == name]
        if found:
            summary[name]["bench_speedup_vs"] = found[0]["against"]
            summary[name]["bench_speedup"] = round(float(np.mean([m["end_to_end_p50_speedup"] for m in found])), 3)
    result = {"weights": source.name, "data": data.name, "allocator": allocator_state(),
              "cpu": platform.processor() or platform.machine(),
              "summary": summary, "folds": folds}  # fmt: skip
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
