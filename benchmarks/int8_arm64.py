"""INT8 on a Pi's CPU: the same INT8 graphs scored on coco-val-pose on x86 and on arm64.

    .ci/arm64 --int8-accuracy     (root; needs ../shared/data) runs the three steps below:
    python benchmarks/int8_arm64.py graphs DIR [--data ../shared/data]               (x86)
    python benchmarks/int8_arm64.py score DIR OUT [--graph NAME] [--data ...]        (each platform)
    python benchmarks/int8_arm64.py report X86_OUT ARM64_OUT                         (x86)

arm64's int8 kernels round differently from x86's (``.ci/arm64`` sees INT8 keypoints move by a
few pixels between the two on the samples), so x86's INT8 accuracy is not a Pi's by construction.
``graphs`` exports the FP32 graph's INT8 forms (onnxruntime QDQ and NNCF IR), calibrated on half A
of the labelled images (sorted by name, alternately into halves A and B, as ``int8_accuracy.py``);
``score`` matches each graph's persons on half B (the FP32 graph and the INT8 ONNX graph through
onnxruntime, the INT8 IR through OpenVINO) and writes one pickle per graph into OUT, since under
qemu each graph takes many minutes; it runs on x86 and inside the Debian arm64 root ``.ci/arm64``
builds (qemu-user, Cortex-A76: timings mean nothing there, results do). ``report`` gives each
graph's pose mAP50-95 on each platform and the paired differences (95 % bootstrap interval over
the images) and writes benchmarks/results/int8_arm64.json.
"""

from __future__ import annotations

import argparse
import json
import pickle
import platform
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GRAPHS = {  # name -> (file in DIR, backend)
    "fp32": ("yolo11n-pose.onnx", "onnxruntime"),
    "onnx_int8": ("yolo11n-pose_int8.onnx", "onnxruntime"),
    "openvino_int8": ("yolo11n-pose_int8_openvino_model", "openvino"),
}


def halves(folder: Path) -> tuple[list[Path], list[Path]]:
    """coco-val-pose's labelled images, sorted by name, alternately into halves A and B: the folds
    of this script and of ``int8_accuracy.py`` (which imports it; this module's imports stay light
    enough for the arm64 root, which has the runtime alone)."""
    from edgepose.val import load_dataset

    with tempfile.TemporaryDirectory() as tmp:
        yaml = Path(tmp) / "data.yaml"  # the labelled images, with an absolute path (see the data README)
        yaml.write_text(f"path: {folder.resolve()}\nval: val_labelled.txt\nkpt_shape: [17, 3]\n")
        labelled, _ = load_dataset(yaml)
    return list(labelled[0::2]), list(labelled[1::2])


def graphs(out: Path, data: Path) -> None:
    from edgepose.export.pipeline import export_model

    out.mkdir(parents=True, exist_ok=True)
    source = out / GRAPHS["fp32"][0]
    source.write_bytes((ROOT / "models" / GRAPHS["fp32"][0]).read_bytes())
    with tempfile.TemporaryDirectory() as calib:
        for image in halves(data / "coco-val-pose")[0]:
            (Path(calib) / image.name).symlink_to(image.resolve())
        for fmt in ("onnx", "openvino"):
            export_model(str(source), out=out, calib=Path(calib), format=fmt, int8=True)


def score(folder: Path, out: Path, data: Path, names: list[str]) -> None:
    """Each graph's matches on half B, one pickle per graph in ``out`` (emulated: minutes per graph)."""
    import onnxruntime
    import openvino

    from edgepose.predictor import load
    from edgepose.val import keypoint_spec, match_images

    test = halves(data / "coco-val-pose")[1]
    out.mkdir(parents=True, exist_ok=True)
    machine = f"{platform.machine()}: onnxruntime {onnxruntime.__version__}, openvino {openvino.__version__}"
    for name in names or list(GRAPHS):
        file, backend = GRAPHS[name]
        found = match_images(load(folder / file, conf=0.001, backend=backend), test, keypoint_spec((17, 3)))
        (out / f"{name}.pkl").write_bytes(pickle.dumps({"machine": machine, "images": len(test), "matches": found}))
        print(f"{name}: scored on {len(test)} images", flush=True)


def report(x86_dir: Path, arm_dir: Path, out: Path) -> None:
    from edgepose.val import map_delta_interval, pooled_map

    def read(folder: Path) -> dict[str, dict]:
        return {p.stem: pickle.loads(p.read_bytes()) for p in sorted(folder.glob("*.pkl"))}

    def delta(a: list, b: list) -> dict[str, object]:
        d = map_delta_interval(a, b)
        return {"points": round(d["delta"] * 100, 2), "ci95": [round(d["ci95_low"] * 100, 2), round(d["ci95_high"] * 100, 2)]}  # fmt: skip

    x86, arm = read(x86_dir), read(arm_dir)
    first = x86["fp32"]
    result: dict[str, object] = {
        "date": time.strftime("%Y-%m-%d"),
        "data": f"coco-val-pose half B ({first['images']} labelled images); INT8 graphs calibrated on half A",
        "x86": first["machine"],
        "arm64": f"{arm['fp32']['machine']} under qemu-user, QEMU_CPU=cortex-a76",
    }
    for name in [n for n in GRAPHS if n in arm]:
        a, b = x86[name]["matches"], arm[name]["matches"]
        row: dict[str, object] = {"pose_map50_95_x86": round(pooled_map(a)["pose_map50_95"], 4),
                                  "pose_map50_95_arm64": round(pooled_map(b)["pose_map50_95"], 4),
                                  "arm64_vs_x86": delta(a, b)}  # fmt: skip
        if name != "fp32":
            row["vs_fp32_x86"] = delta(x86["fp32"]["matches"], a)
            row["vs_fp32_arm64"] = delta(arm["fp32"]["matches"], b)
        result[name] = row
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="verb", required=True)
    for verb in ("graphs", "score"):
        p = sub.add_parser(verb)
        p.add_argument("dir", type=Path)
        if verb == "score":
            p.add_argument("out", type=Path)
            p.add_argument("--graph", action="append", choices=list(GRAPHS), default=[])
        p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    p = sub.add_parser("report")
    p.add_argument("x86", type=Path)
    p.add_argument("arm64", type=Path)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "int8_arm64.json")
    args = parser.parse_args()
    if args.verb == "graphs":
        graphs(args.dir, args.data)
    elif args.verb == "score":
        score(args.dir, args.out, args.data, args.graph)
    else:
        report(args.x86, args.arm64, args.out)


if __name__ == "__main__":
    main()
