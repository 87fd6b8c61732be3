"""What FP16, bf16 and INT8 cost in accuracy and what they buy in speed, both INT8 routes, in one run.

    python benchmarks/int8_accuracy.py [--weights models/yolo11n-pose.onnx] [--data ../shared/data/coco-val-pose]

On coco-val-pose's 217 labelled COCO val2017 images (692 persons; the public models never trained
on them), in two folds: the labelled images sorted by name, alternately into halves A and B;
each INT8 graph is calibrated on one half and scored on the other, so no image calibrates the
graph it is scored on, and every image is scored once per graph. Per fold and graph: pose/box
mAP50-95 and pose mAP50 (edgepose val's matching), keypoint drift in pixels and detection
agreement against the FP32 ONNX graph (edgepose compare), and speed from one ``edgepose bench``
run over every graph (interleaved rounds; OpenVINO at f32 and bf16). The summary pools the folds
and gives each mAP change against FP32 a 95 % paired bootstrap interval over the images. Also
measured: INT8 with only the head's decode arithmetic in float, and with nothing in float (the
choices --keep-float exposes), and the gate's OpenVINO route: NNCF's accuracy-aware quantisation
validated on the calibration half (its labels) with ``--max-drop`` 0.5 points, then scored like
the others on the held-out half. Writes benchmarks/results/int8.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
from pathlib import Path

import numpy as np
from int8_arm64 import halves as labelled_halves

from edgepose.bench import BenchSettings, run_bench
from edgepose.compare import compare_models
from edgepose.export.pipeline import export_model
from edgepose.memory import allocator_state, reuse_freed_memory
from edgepose.predictor import load
from edgepose.val import keypoint_spec, map_delta_interval, match_images, pooled_map

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = {  # name -> export_model options (from the FP32 ONNX graph)
    "onnx_int8": {"format": "onnx", "int8": True},
    "onnx_int8_decode_float": {"format": "onnx", "int8": True, "keep_float": "decode"},
    "onnx_int8_all_quantised": {"format": "onnx", "int8": True, "keep_float": "none"},
    "openvino_fp32": {"format": "openvino"},
    "openvino_fp16": {"format": "openvino", "half": True},
    "openvino_int8": {"format": "openvino", "int8": True},
    "openvino_int8_decode_float": {"format": "openvino", "int8": True, "keep_float": "decode"},
    "openvino_int8_accuracy_control": {"format": "openvino", "int8": True, "max_drop": 0.5},  # + data: the calib half
}


def bench_latency(graphs: dict[str, Path], images: Path, runs: int) -> tuple[dict[str, float], list[dict]]:
    """Every graph through ``edgepose bench`` in one run (interleaved rounds, same images; OpenVINO
    at f32 and bf16): each graph's end-to-end p50 summed over the images (ms), and the harness's
    speed-ups against the first graph on the same engine (INT8 ONNX vs FP32 ONNX; IRs vs FP32 IR)."""
    settings = BenchSettings(model=tuple(str(p) for p in graphs.values()), images=str(images), runs=runs,
                             cold_start=False, precision="f32,bf16")  # fmt: skip
    report = run_bench(settings)
    names = {str(path): name for name, path in graphs.items()}

    def name_of(model: str, target: str) -> str:
        return "openvino_bf16" if names[model] == "openvino_fp32" and "bf16" in target else names[model]

    latency = {name_of(t["model"], t["target"]): round(sum(i["end_to_end_p50_ms"] for i in t["images"]), 2)
               for t in report["targets"] if t["status"] == "ok" and ("bf16" not in t["target"]
                                                                      or names[t["model"]] == "openvino_fp32")}  # fmt: skip
    speedups = [{"graph": name_of(m["model"], m["target"]), "against": names[m["reference"]], "target": m["target"],
                 "end_to_end_p50_speedup": m["end_to_end_p50_speedup"], "forward_p50_speedup": m["forward_p50_speedup"]}
                for m in report["models"] if m.get("end_to_end_p50_speedup") and "bf16" not in m["target"]]  # fmt: skip
    return latency, speedups


def run_fold(source: Path, calib_half: list[Path], test_half: list[Path], label: str, work: Path,
             runs: int, matches: dict[str, list]) -> dict:  # fmt: skip
    calib = work / f"calib-{label}"
    calib.mkdir()
    for image in calib_half:
        shutil.copy(image, calib)
    # the same calibration half as a labelled dataset (absolute paths: labels beside the originals),
    # which the accuracy-controlled export validates on; the scored half never enters it
    listing = work / f"calib-{label}.txt"
    listing.write_text("".join(f"{image.resolve()}\n" for image in calib_half))
    calib_data = work / f"calib-{label}.yaml"
    calib_data.write_text(f"path: {work}\nval: {listing.name}\nkpt_shape: [17, 3]\n")
    images, spec = test_half, keypoint_spec((17, 3))
    graphs = {"onnx_fp32": source}
    fold: dict = {"calibration_images": len(calib_half), "test_images": len(images)}
    for name, options in VARIANTS.items():
        out = work / f"{name}-{label}"
        extra = {"data": str(calib_data)} if options.get("max_drop") is not None else {}
        calibration = {"calib": calib} if options.get("int8") else {}  # FP32/FP16 IR take none
        report = export_model(str(source), out=out, **calibration, **options, **extra)[-1]
        graphs[name] = Path(report.path)
        if extra:  # what the gate measured on the calibration half, beside the held-out figures below
            fold[f"{name}_gate"] = report.fidelity.get("accuracy")
    reference = load(source)
    for name, path in [*graphs.items(), ("openvino_bf16", graphs["openvino_fp32"])]:
        options = {"precision": "bf16"} if name == "openvino_bf16" else {}
        found = match_images(load(path, conf=0.001, **options), images, spec)
        matches.setdefault(name, []).extend(found)  # pooled over folds: each image scored once per graph
        metrics = pooled_map(found)
        fold[name] = {k: round(metrics[k], 4) for k in ("pose_map50_95", "pose_map50", "box_map50_95")}
        fold[name]["instances"] = metrics["instances"]
        if name != "onnx_fp32":
            agreement = compare_models(reference, load(path, **options), images)
            fold[name].update(persons=agreement["persons"], keypoint_drift_px=agreement["keypoint_drift_px"])
    timed = work / f"timed-{label}"  # speed on 10 of the scored images: the order of the graphs, not of the data
    timed.mkdir()
    for image in images[:10]:
        shutil.copy(image, timed)
    latency, fold["bench_speedups"] = bench_latency(graphs, timed, runs)
    for name, ms in latency.items():
        fold[name]["latency_ms_p50_sum"] = ms
    return fold


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=str(ROOT / "models" / "yolo11n-pose.onnx"))
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "coco-val-pose"))
    parser.add_argument("--runs", type=int, default=30, help="edgepose bench runs per graph and fold.")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "int8.json"))
    args = parser.parse_args()
    reuse_freed_memory()  # time the graphs as the `edgepose bench` CLI process does

    source, data = Path(args.weights), Path(args.data)
    matches: dict[str, list] = {}
    with tempfile.TemporaryDirectory() as tmp:
        halves = dict(zip("AB", labelled_halves(data)))
        folds = {f"test_{test}": run_fold(source, halves[calib], halves[test], test, Path(tmp), args.runs, matches)
                 for calib, test in (("A", "B"), ("B", "A"))}  # fmt: skip
    summary = {}
    for name in ["onnx_fp32", *VARIANTS, "openvino_bf16"]:
        speed = [folds[f]["onnx_fp32"]["latency_ms_p50_sum"] / folds[f][name]["latency_ms_p50_sum"] for f in folds]
        # every labelled image scored once, by the graph calibrated without it; the interval is a
        # paired bootstrap over those images: how far the delta could move on another draw of them
        delta = map_delta_interval(matches["onnx_fp32"], matches[name])
        pooled = pooled_map(matches[name])
        summary[name] = {"pose_map50_95": round(pooled["pose_map50_95"], 4), "pose_map50": round(pooled["pose_map50"], 4),
                         "pose_map50_95_points_vs_fp32": round(delta["delta"] * 100, 2),
                         "points_vs_fp32_ci95": [round(delta["ci95_low"] * 100, 2), round(delta["ci95_high"] * 100, 2)],
                         "speedup_vs_onnx_fp32": round(float(np.mean(speed)), 2)}  # fmt: skip
        drift = [folds[f][name]["keypoint_drift_px"] for f in folds if "keypoint_drift_px" in folds[f][name]]
        if drift:
            summary[name]["keypoint_drift_px_mean"] = round(float(np.mean([d["mean"] for d in drift])), 3)
            summary[name]["keypoint_drift_px_p95"] = round(float(np.mean([d["p95"] for d in drift])), 3)
            summary[name]["keypoint_drift_px_max"] = round(float(max(d["max"] for d in drift)), 3)
    for name in summary:  # the harness's own figure, per engine: INT8 ONNX vs FP32 ONNX, IRs vs FP32 IR
        found = [m for f in folds.values() for m in f["bench_speedups"] if m["graph"] == name]
        if found:
            summary[name]["bench_speedup_vs"] = found[0]["against"]
            summary[name]["bench_speedup"] = round(float(np.mean([m["end_to_end_p50_speedup"] for m in found])), 3)
    result = {"weights": source.name, "data": f"{data.name} (labelled: {sum(map(len, halves.values()))} images)",
              "folds_made_by": "labelled images sorted by name, alternately into halves A and B",
              "allocator": allocator_state(), "cpu": platform.processor() or platform.machine(),
              "summary": summary, "folds": folds}  # fmt: skip
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
