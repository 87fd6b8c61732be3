"""The letterbox resize across platforms: Ultralytics' INTER_LINEAR against INTER_LINEAR_EXACT.

    python benchmarks/cross_platform.py keypoints --out DIR [--data ../shared/data] [--images 40]
    python benchmarks/cross_platform.py report X86_DIR ARM64_DIR [--data ../shared/data] [--dynamic-model M]

``keypoints`` runs on each platform (x86 here; arm64 inside the Debian root ``.ci/arm64`` builds,
under qemu-user): the static 640 graph over the bundled samples, the first N labelled coco-val-pose
images (sorted by name) and the first N yoga-train photos longer than 640 px (the letterbox shrinks
those), once per interpolation, each written as ``predict --json`` would. ``report`` (x86) adds the
pose mAP50-95 of all 217 labelled images with each interpolation, paired (same images, bootstrap
interval over images), through the static 640 graph and a dynamic graph at 480 (which resizes every
image), and the x86-vs-arm64 agreement with each (persons,
keypoint drift in px, through ``edgepose compare``'s code); it writes
benchmarks/results/cross_platform.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
from pathlib import Path

import cv2

import edgepose
import edgepose.preprocess as preprocess
from edgepose.compare import compare_result_files
from edgepose.sources import list_images, sample_images

ROOT = Path(__file__).resolve().parent.parent
INTERPOLATIONS = {"INTER_LINEAR": cv2.INTER_LINEAR, "INTER_LINEAR_EXACT": cv2.INTER_LINEAR_EXACT}


def labelled_images(data: Path) -> list[Path]:
    root = data / "coco-val-pose"
    return sorted(
        p for p in list_images(root / "images" / "val") if (root / "labels" / "val" / f"{p.stem}.txt").is_file()
    )


def downscaled_photos(data: Path, count: int) -> list[Path]:
    """The first yoga-train photos (by folder and name) longer than 640 px: the letterbox shrinks
    them, the resize whose rounding differs between platforms (most coco-val-pose images are
    640 px long already, so a static 640 graph does not resize them)."""
    out = []
    folders = sorted(p for p in (data / "yoga-train").iterdir() if p.is_dir())
    for path in (path for folder in folders for path in list_images(folder)):
        image = cv2.imread(str(path))
        if image is not None and max(image.shape[:2]) > 640:
            out.append(path)
        if len(out) == count:
            break
    return out


def keypoints(model: str, data: Path, count: int, out: Path) -> None:
    """One ``predict --json`` file per interpolation."""
    images = sample_images() + labelled_images(data)[:count] + downscaled_photos(data, count)
    out.mkdir(parents=True, exist_ok=True)
    predictor = edgepose.load(model)
    for name, flag in INTERPOLATIONS.items():
        preprocess.RESIZE = flag
        results = [predictor(path).to_dict() for path in images]
        (out / f"{name}.json").write_text(json.dumps(results))
    (out / "platform.json").write_text(json.dumps({"machine": platform.machine(), "cv2": cv2.__version__,
                                                   "onnxruntime": __import__("onnxruntime").__version__}))  # fmt: skip


def pose_map(model: str, data: Path, imgsz: int | None = None) -> dict:
    """Pose mAP50-95 with each interpolation on the labelled images, and the paired change."""
    from edgepose.val import load_dataset, map_delta_interval, match_images, pooled_map

    yaml = data / "coco-val-pose" / "data_labelled.yaml"
    text = yaml.read_text().replace("path: .", f"path: {yaml.parent}")
    with tempfile.TemporaryDirectory() as tmp:  # the labelled list with an absolute path (see the data README)
        local = Path(tmp) / "data.yaml"
        local.write_text(text)
        images, spec = load_dataset(local)
    matches = {}
    for name, flag in INTERPOLATIONS.items():
        preprocess.RESIZE = flag
        matches[name] = match_images(edgepose.load(model, conf=0.001, imgsz=imgsz), images, spec, conf=0.001)
    preprocess.RESIZE = cv2.INTER_LINEAR
    interval = map_delta_interval(matches["INTER_LINEAR"], matches["INTER_LINEAR_EXACT"])
    return {"model": Path(model).name, "imgsz": imgsz or 640, "images": len(images), **{name: pooled_map(m) for name, m in matches.items()},
            "exact_minus_linear": round(interval["delta"], 4),
            "exact_minus_linear_ci95": [round(interval["ci95_low"], 4), round(interval["ci95_high"], 4)]}  # fmt: skip


def report(model: str, dynamic: str, data: Path, x86: Path, arm64: Path, out: Path) -> None:
    """Static 640 graph: few coco-val-pose images are resized; the dynamic graph at 480 resizes every one."""
    figures = {"model": Path(model).name, "x86": json.loads((x86 / "platform.json").read_text()),
               "arm64": json.loads((arm64 / "platform.json").read_text()),
               "pose_map_x86": [pose_map(model, data), pose_map(dynamic, data, 480)], "x86_vs_arm64": {}}  # fmt: skip
    for name in INTERPOLATIONS:
        figures["x86_vs_arm64"][name] = {k: v for k, v in compare_result_files(str(x86 / f"{name}.json"),
                                                                               str(arm64 / f"{name}.json")).items()
                                         if k not in ("reference", "candidate", "per_keypoint_drift_px")}  # fmt: skip
    out.write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=("keypoints", "report"))
    parser.add_argument("dirs", nargs="*", type=Path, help="report: the x86 and the arm64 keypoints folders")
    parser.add_argument("--model", default=str(ROOT / "models" / "yolo11n-pose.onnx"))
    parser.add_argument(
        "--dynamic-model",
        default=str(ROOT / "models" / "dynamic" / "yolo11n-pose.onnx"),
        help="report: a dynamic graph ('edgepose export --dynamic'), scored at imgsz 480",
    )
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--images", type=int, default=40, help="keypoints: labelled coco-val-pose images")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "cross_platform.json")
    args = parser.parse_args()
    if args.step == "keypoints":
        keypoints(args.model, args.data, args.images, args.out)
    else:
        report(args.model, args.dynamic_model, args.data, *args.dirs, args.out)


if __name__ == "__main__":
    main()
