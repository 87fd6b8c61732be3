"""Pose and box mAP of a graph on a YOLO-format pose dataset, computed as ``yolo val pose`` does.

Matching and AP follow Ultralytics' validator (greedy by confidence per IoU/OKS threshold,
101-point COCO interpolation, OKS with COCO sigmas for [17, 3] layouts and 1/K for every other,
area = 0.53 x box area), so the figures agree with theirs for the same predictions. Like COCO
pose, only class 0 is scored.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError, MissingExtraError
from .keypoints import COCO_SIGMAS
from .predictor import PosePredictor
from .sources import IMAGE_SUFFIXES, read_image

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
AP_X = np.linspace(0, 1, 101)
_trapezoid = getattr(np, "trapezoid", None) or np.trapz  # numpy < 2 names it trapz


@dataclass(frozen=True)
class Sample:
    """One image and its ground truth: boxes (n, 4) xyxy and keypoints (n, K, 3) in pixels."""

    image: Path
    boxes: np.ndarray
    keypoints: np.ndarray


def _label_path(image: Path) -> Path:
    parts = list(image.parts)
    idx = len(parts) - 1 - parts[::-1].index("images")  # last 'images' folder, as Ultralytics
    parts[idx] = "labels"
    return Path(*parts).with_suffix(".txt")


def load_dataset(data_yaml: str | os.PathLike, split: str = "val") -> tuple[list[Path], tuple[int, int]]:
    """Image paths of a split of an Ultralytics data yaml, and its kpt_shape."""
    try:
        import yaml
    except ImportError:
        raise MissingExtraError("val", "pyyaml") from None
    data_yaml = Path(data_yaml)
    if not data_yaml.is_file():
        raise InputError(f"no such dataset yaml: {data_yaml}")
    try:
        data = yaml.safe_load(data_yaml.read_text())
    except yaml.YAMLError as exc:
        raise InputError(f"{data_yaml} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict) or not data.get(split):
        raise InputError(f"{data_yaml} has no '{split}' split")
    root = Path(data["path"]) if data.get("path") else data_yaml.parent
    root = root if root.is_absolute() or not data.get("path") else data_yaml.parent / root
    entries = data[split] if isinstance(data[split], list) else [data[split]]
    images: list[Path] = []
    for entry in entries:
        where = root / entry
        if where.is_dir():
            images += sorted(p for p in where.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        elif where.suffix == ".txt" and where.is_file():
            images += [root / line.strip() for line in where.read_text().splitlines() if line.strip()]
        else:
            raise InputError(f"{data_yaml}: '{split}' points to {where}, which does not exist")
    if not images:
        raise InputError(f"{data_yaml}: no images in the '{split}' split")
    return images, tuple(data.get("kpt_shape", (17, 3)))  # type: ignore[return-value]


def read_labels(image: Path, width: int, height: int, kpt_shape: tuple[int, int]) -> Sample:
    """Ground truth of one image from its YOLO pose label file (missing file = no persons)."""
    k, d = kpt_shape
    path = _label_path(image)
    rows = (
        np.loadtxt(path, ndmin=2, dtype=np.float64)
        if path.is_file() and path.stat().st_size
        else np.zeros((0, 5 + k * d))
    )
    if rows.shape[1] != 5 + k * d:
        raise InputError(f"{path}: expected {5 + k * d} values per line, got {rows.shape[1]}")
    cx, cy, w, h = rows[:, 1] * width, rows[:, 2] * height, rows[:, 3] * width, rows[:, 4] * height
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    kpts = rows[:, 5:].reshape(-1, k, d).copy()
    kpts[..., 0] *= width
    kpts[..., 1] *= height
    if d == 2:  # no visibility column: every labelled point counts
        kpts = np.concatenate([kpts, np.ones((*kpts.shape[:2], 1))], axis=-1)
    return Sample(image, boxes, kpts)


def box_iou(a: np.ndarray, b: np.ndarray, eps: float = 1e-7) -> np.ndarray:
    """IoU matrix (len(a), len(b)) of xyxy boxes."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(2)
    area_a = (a[:, 2:] - a[:, :2]).prod(1)
    area_b = (b[:, 2:] - b[:, :2]).prod(1)
    return inter / (area_a[:, None] + area_b[None] - inter + eps)


def keypoint_oks(
    gt: np.ndarray, pred: np.ndarray, area: np.ndarray, sigmas: np.ndarray, eps: float = 1e-7
) -> np.ndarray:
    """OKS matrix (len(gt), len(pred)); only labelled (visibility != 0) ground-truth points count."""
    d = ((gt[:, None, :, :2] - pred[None, :, :, :2]) ** 2).sum(-1)
    mask = gt[..., 2] != 0
    e = d / ((2 * sigmas) ** 2 * (area[:, None, None] + eps) * 2)
    return (np.exp(-e) * mask[:, None]).sum(-1) / (mask.sum(-1)[:, None] + eps)


def match(similarity: np.ndarray) -> np.ndarray:
    """(n_pred, 10) true-positive flags; predictions are in descending confidence order and each
    claims its best still-unclaimed target per threshold (Ultralytics' ``match_predictions``)."""
    n_gt, n_pred = similarity.shape
    correct = np.zeros((n_pred, len(IOU_THRESHOLDS)), dtype=bool)
    if n_gt == 0 or n_pred == 0:
        return correct
    matched = np.zeros((n_gt, len(IOU_THRESHOLDS)), dtype=bool)
    cols = np.arange(len(IOU_THRESHOLDS))
    for j in np.flatnonzero((similarity >= IOU_THRESHOLDS.min()).any(0)):
        available = np.where(matched, 0, similarity[:, j, None])
        k = available.argmax(0)
        correct[j] = available[k, cols] >= IOU_THRESHOLDS
        matched[k, cols] |= correct[j]
    return correct


def average_precision(tp: np.ndarray, conf: np.ndarray, n_targets: int) -> np.ndarray:
    """AP at each threshold from stacked true-positive flags (single class), 101-point COCO."""
    if n_targets == 0 or len(conf) == 0:
        return np.zeros(tp.shape[1])
    order = np.argsort(-conf, kind="stable")
    tp = tp[order]
    tpc = tp.cumsum(0)
    fpc = (1 - tp).cumsum(0)
    recall = tpc / (n_targets + 1e-16)
    precision = tpc / (tpc + fpc)
    ap = np.zeros(tp.shape[1])
    for j in range(tp.shape[1]):
        mrec = np.concatenate(([0.0], recall[:, j], [recall[-1, j]], [1.0]))
        mpre = np.concatenate(([1.0], precision[:, j], [0.0], [0.0]))
        mpre = np.flip(np.maximum.accumulate(np.flip(mpre)))
        ap[j] = _trapezoid(np.interp(AP_X, mrec, mpre), AP_X)
    return ap


@dataclass(frozen=True)
class ImageMatches:
    """One image's detections matched against its labels (descending confidence): what mAP pools
    over images, kept per image so the pool can be resampled (``map_delta_interval``)."""

    tp_box: np.ndarray  # (n_pred, 10) true-positive flags per IoU threshold
    tp_pose: np.ndarray  # (n_pred, 10) per OKS threshold
    scores: np.ndarray
    targets: int


def match_images(
    predictor: PosePredictor,
    images: Iterable[Path],
    kpt_shape: tuple[int, int],
    conf: float = 0.001,
    progress: Callable[[Iterable[Path]], Iterable[Path]] = lambda x: x,
) -> list[ImageMatches]:
    """Run ``predictor`` on labelled images and match each image's persons (person class, as in COCO pose)."""
    coco = tuple(kpt_shape) == (len(COCO_SIGMAS), 3)  # Ultralytics' rule: COCO's sigmas for [17, 3] only
    sigmas = np.asarray(COCO_SIGMAS) if coco else np.full(kpt_shape[0], 1 / kpt_shape[0])
    out = []
    for path in progress(images):
        image = read_image(path)
        gt = read_labels(path, image.shape[1], image.shape[0], kpt_shape)
        det = predictor.detect(image, conf=conf, clip=False)
        order = np.argsort(-det.scores, kind="stable")
        boxes, kpts, scores = det.boxes[order], det.keypoints[order], det.scores[order]
        area = (gt.boxes[:, 2:] - gt.boxes[:, :2]).prod(1) * 0.53
        out.append(ImageMatches(match(box_iou(gt.boxes, boxes)), match(keypoint_oks(gt.keypoints, kpts, area, sigmas)),
                                scores, len(gt.boxes)))  # fmt: skip
    return out


def pooled_map(matches: Sequence[ImageMatches]) -> dict[str, float]:
    """Box and pose mAP over the pooled detections of these images."""
    scores = np.concatenate([m.scores for m in matches])
    targets = sum(m.targets for m in matches)
    ap_box = average_precision(np.concatenate([m.tp_box for m in matches]), scores, targets)
    ap_pose = average_precision(np.concatenate([m.tp_pose for m in matches]), scores, targets)
    return {
        "images": len(matches),
        "instances": targets,
        "box_map50": float(ap_box[0]),
        "box_map50_95": float(ap_box.mean()),
        "pose_map50": float(ap_pose[0]),
        "pose_map50_95": float(ap_pose.mean()),
    }


def evaluate(
    predictor: PosePredictor,
    images: Iterable[Path],
    kpt_shape: tuple[int, int],
    conf: float = 0.001,
    progress: Callable[[Iterable[Path]], Iterable[Path]] = lambda x: x,
) -> dict[str, float]:
    """Box and pose mAP of ``predictor`` on labelled images (person class, as in COCO pose)."""
    return pooled_map(match_images(predictor, images, kpt_shape, conf, progress))


def map_delta_interval(
    reference: Sequence[ImageMatches],
    candidate: Sequence[ImageMatches],
    metric: str = "pose_map50_95",
    resamples: int = 2000,
    seed: int = 0,
) -> dict[str, float]:
    """``candidate - reference`` of a pooled mAP, with a 95 % paired bootstrap interval over images.

    Both lists hold the same images in the same order; each resample draws images with
    replacement and scores both graphs on the same draw. On a handful of labelled images the
    interval is wide, and says so: a delta inside it is not a measured loss or gain."""
    if len(reference) != len(candidate) or not reference:
        raise InputError("map_delta_interval needs the same, non-empty list of images for both graphs")
    rng = np.random.default_rng(seed)
    n = len(reference)
    deltas = []
    for _ in range(resamples):
        pick = rng.integers(0, n, n)
        if sum(reference[i].targets for i in pick) == 0:
            continue
        deltas.append(
            pooled_map([candidate[i] for i in pick])[metric] - pooled_map([reference[i] for i in pick])[metric]
        )
    low, high = np.percentile(deltas, [2.5, 97.5])
    return {"delta": pooled_map(candidate)[metric] - pooled_map(reference)[metric],
            "ci95_low": float(low), "ci95_high": float(high), "resamples": len(deltas)}  # fmt: skip
