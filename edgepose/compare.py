"""How far one pose model's results are from another's on the same real images.

Used by ``edgepose compare A B`` and by the accuracy report of every optimised export: persons are
matched by box IoU, then each keypoint the reference is sure of (conf >= 0.5) is measured in
pixels of the original image. Labels are compared when both sides carry a classifier.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .errors import InputError, MissingExtraError
from .keypoints import COCO_KEYPOINTS
from .postprocess import Detections
from .results import Result
from .sources import read_image
from .val import box_iou

MATCH_IOU = 0.5
SURE_KEYPOINT = 0.5


class Model(Protocol):
    """What compare needs of either side: edgepose's PosePredictor, or the Ultralytics adapter."""

    def predict(self, image: np.ndarray, name: str = "") -> Result: ...

    def detect(self, image: np.ndarray, conf: float | None = None, clip: bool = True) -> Detections: ...


def match_persons(ref: Result, got: Result) -> list[tuple[int, int, float]]:
    """Greedy one-to-one matching by box IoU (highest first), pairs at IoU >= 0.5."""
    if not ref.persons or not got.persons:
        return []
    iou = box_iou(np.stack([p.box for p in ref.persons]), np.stack([p.box for p in got.persons]))
    pairs = []
    for flat in np.argsort(-iou, axis=None, kind="stable"):
        i, j = np.unravel_index(flat, iou.shape)
        if iou[i, j] < MATCH_IOU:
            break
        if all(i != a and j != b for a, b, _ in pairs):
            pairs.append((int(i), int(j), float(iou[i, j])))
    return pairs


def _stats(values: np.ndarray) -> dict[str, float | int]:
    if values.size == 0:
        return {"n": 0, "mean": 0.0, "p95": 0.0, "max": 0.0}
    return {"n": int(values.size), "mean": round(float(values.mean()), 4),
            "p95": round(float(np.percentile(values, 95)), 4), "max": round(float(values.max()), 4)}  # fmt: skip


def compare_results(pairs: Iterable[tuple[Result, Result]]) -> dict[str, Any]:
    """Detection agreement and keypoint drift (pixels) of ``got`` against ``ref``, image by image."""
    matched = missed = extra = label_same = label_total = 0
    ious, drift, names = [], [], ()
    for ref, got in pairs:
        matches = match_persons(ref, got)
        matched += len(matches)
        missed += len(ref.persons) - len(matches)
        extra += len(got.persons) - len(matches)
        for i, j, iou in matches:
            a, b = ref.persons[i], got.persons[j]
            names = a.keypoint_names or names
            ious.append(iou)
            sure = a.keypoints[:, 2] >= SURE_KEYPOINT
            d = np.full(len(a.keypoints), np.nan)
            d[sure] = np.linalg.norm(a.keypoints[sure, :2] - b.keypoints[sure, :2], axis=1)
            drift.append(d)
            if _classified(a) and _classified(b):  # "no known pose" (label None) is a label too
                label_total += 1
                label_same += a.label == b.label
    per_kpt = np.array(drift) if drift else np.zeros((0, len(names)))
    report: dict[str, Any] = {
        "persons": {"matched": matched, "missed": missed, "extra": extra},
        "box_iou_mean": round(float(np.mean(ious)), 4) if ious else None,
        "keypoint_drift_px": _stats(per_kpt[~np.isnan(per_kpt)]),
        "per_keypoint_drift_px": {name: _stats(col[~np.isnan(col)]) for name, col in zip(names, per_kpt.T)},
    }
    if label_total:
        report["labels"] = {"compared": label_total, "same": label_same}
    return report


def _classified(person: Any) -> bool:
    return person.label is not None or person.pose_score is not None


def compare_models(
    ref: Model,
    got: Model,
    images: list[Path],
    progress: Callable[[list[Path]], Iterable[Path]] = lambda x: x,
) -> dict[str, Any]:
    """Run both models on every image and compare (``ref`` is the one trusted)."""
    pairs = []
    for path in progress(images):
        image = read_image(path)
        pairs.append((ref.predict(image, name=str(path)), got.predict(image, name=str(path))))
    return {"images": len(images), **compare_results(pairs)}


def compare_result_files(ref: str, got: str) -> dict[str, Any]:
    """Two runs' ``predict --json`` files (made on two devices, say): images paired by file name (a
    folder's JSON array) or frames by index (a video's records), then ``compare_results``."""
    runs = [_read_results(path) for path in (ref, got)]
    if set(runs[0]) != set(runs[1]):
        only = sorted(set(runs[0]) ^ set(runs[1]), key=str)[:3]
        raise InputError(f"{ref} and {got} hold different images or frames (e.g. {', '.join(map(str, only))})")
    pairs = [(runs[0][key], runs[1][key]) for key in sorted(runs[0], key=str)]
    return {"reference": ref, "candidate": got, "images": len(pairs), **compare_results(pairs)}


def _read_results(path: str) -> dict[str | int, Result]:
    try:
        text = Path(path).read_text()
        records = json.loads(text) if text.lstrip().startswith("[") else [json.loads(x) for x in text.splitlines() if x]
        first = next((r["persons"][0] for r in records if r["persons"]), None)
        names = COCO_KEYPOINTS if first is not None and len(first["keypoints"]) == len(COCO_KEYPOINTS) else ()
        results = [Result.from_dict(r, names) for r in records]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{path}: not a predict --json file ({type(exc).__name__}: {exc})") from None
    return {r.frame if r.frame is not None else Path(r.image).name: r for r in results}


def open_model(path: str, conf: float = 0.25, imgsz: int | None = None, **engine: Any) -> Model:
    """An edgepose predictor for a graph, or Ultralytics' own predict for a ``.pt`` checkpoint
    (which needs the export extra: the runtime never unpickles a checkpoint itself)."""
    if path.endswith(".pt"):
        try:
            from .export.reference import UltralyticsPredictor
        except ImportError as exc:
            raise MissingExtraError("export", exc.name or "a dependency") from None
        return UltralyticsPredictor(path, conf=conf, imgsz=imgsz or 640)
    from .predictor import load

    return load(path, conf=conf, imgsz=imgsz, **engine)


def accuracy_report(
    ref: str,
    got: str,
    images: list[Path],
    data: str | None = None,
    progress: Callable[[list[Path]], Iterable[Path]] = lambda x: x,
    **options: Any,
) -> dict[str, Any]:
    """Keypoint drift and detection agreement of ``got`` against ``ref`` on images; with a YOLO
    pose dataset yaml, the OKS mAP of both (at conf 0.001, as ``val``) and their difference with
    a 95 % paired bootstrap interval over the dataset's images."""
    models = [open_model(path, **options) for path in (ref, got)]
    report: dict[str, Any] = {"reference": ref, "candidate": got, **compare_models(*models, images, progress)}
    if data:
        report["map"] = map_comparison(ref, got, data, **options)
    return report


def map_comparison(ref: str, got: str, data: str, **options: Any) -> dict[str, Any]:
    """The OKS mAP of two graphs on a YOLO pose dataset (conf 0.001, as ``val``) and the change
    from ``ref`` to ``got``, with a 95 % paired bootstrap interval over the dataset's images."""
    from .val import load_dataset, map_delta_interval, match_images, pooled_map

    val_images, spec = load_dataset(data)
    matches = {
        name: match_images(open_model(path, **{**options, "conf": 0.001}), val_images, spec, conf=0.001)
        for name, path in (("reference", ref), ("candidate", got))
    }
    report: dict[str, Any] = {name: pooled_map(m) for name, m in matches.items()}
    interval = map_delta_interval(matches["reference"], matches["candidate"])
    report["images"] = len(val_images)
    report["pose_map50_95_delta"] = round(interval["delta"], 4)
    report["pose_map50_95_delta_ci95"] = [round(interval["ci95_low"], 4), round(interval["ci95_high"], 4)]
    return report
