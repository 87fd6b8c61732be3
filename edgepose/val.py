"""Pose and box mAP of a graph on a YOLO-format pose dataset, computed as ``yolo val pose`` does.

Matching and AP follow Ultralytics' validator, so the figures agree with theirs for the same
predictions: greedy by confidence per IoU/OKS threshold, a prediction matching only labels of its
own class; AP per class with 101-point COCO interpolation, mAP their mean over the classes that
have labels; OKS with the dataset's ``kpt_oks_sigmas``, else COCO's sigmas for [17, 3] layouts and
1/K for every other, area = 0.53 x box area; labels of classes the model cannot predict (a dataset
of more classes than the model) are left out. Detections are the runtime's (each box's best class),
where Ultralytics' val of a raw head of several classes keeps each class above conf (multi-label NMS).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import numpy as np

from .errors import InputError, MissingExtraError
from .keypoints import COCO_SIGMAS
from .postprocess import Detections
from .sources import IMAGE_SUFFIXES, read_image

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
AP_X = np.linspace(0, 1, 101)
_trapezoid = getattr(np, "trapezoid", None) or np.trapz  # numpy < 2 names it trapz


class Detector(Protocol):
    """What scoring needs of a model: its classes and its detections at a score threshold."""

    @property
    def names(self) -> dict[int, str]: ...

    def detect(self, image: np.ndarray, conf: float | None = None, clip: bool = True) -> Detections: ...


class KeypointSpec(NamedTuple):
    """A dataset's keypoint layout (``kpt_shape``) and the OKS sigma of each keypoint."""

    shape: tuple[int, int]
    sigmas: np.ndarray


def keypoint_spec(kpt_shape: Sequence[int], sigmas: Sequence[float] | None = None, source: str = "") -> KeypointSpec:
    """The spec Ultralytics' validator uses: the dataset's ``kpt_oks_sigmas`` (one positive value
    per keypoint), else (absent or empty) COCO's sigmas for a [17, 3] layout and 1/K for every other."""
    try:
        k, d = (int(v) for v in kpt_shape)
    except (TypeError, ValueError):
        k = d = 0
    if k < 1 or d not in (2, 3):
        raise InputError(f"{source or 'dataset'}: kpt_shape must be [K, 2] or [K, 3], got {kpt_shape}")
    if not sigmas:  # as Ultralytics: an empty kpt_oks_sigmas means the default
        values = np.asarray(COCO_SIGMAS) if (k, d) == (len(COCO_SIGMAS), 3) else np.full(k, 1 / k)
        return KeypointSpec((k, d), values)
    try:
        values = np.asarray(sigmas, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        values = np.zeros(0)
    if len(values) != k or not (values > 0).all() or not np.isfinite(values).all():
        raise InputError(f"{source or 'dataset'}: kpt_oks_sigmas must be {k} positive values, got {sigmas}")
    return KeypointSpec((k, d), values)


@dataclass(frozen=True)
class Sample:
    """One image and its ground truth: class ids (n,), boxes (n, 4) xyxy and keypoints (n, K, 3) in pixels."""

    image: Path
    classes: np.ndarray
    boxes: np.ndarray
    keypoints: np.ndarray


def _label_path(image: Path) -> Path:
    """Ultralytics' rule: the last ``images`` folder becomes ``labels`` (no such folder: the label
    file sits beside the image), and the suffix ``.txt``."""
    parts = list(image.parts)
    if "images" in parts[:-1]:
        parts[len(parts) - 1 - parts[::-1].index("images")] = "labels"
    return Path(*parts).with_suffix(".txt")


def load_dataset(data_yaml: str | os.PathLike, split: str = "val") -> tuple[list[Path], KeypointSpec]:
    """Image paths of a split of an Ultralytics data yaml, and its keypoint spec; every label file is
    checked here (as Ultralytics does before a run), so a bad one fails before any work."""
    try:
        import yaml
    except ImportError:
        raise MissingExtraError("val", "pyyaml") from None
    data_yaml = Path(data_yaml)
    if not data_yaml.is_file():
        raise InputError(f"no such dataset yaml: {data_yaml}")
    try:
        data = yaml.safe_load(data_yaml.read_text(errors="replace"))
    except yaml.YAMLError as exc:
        raise InputError(f"{data_yaml} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict) or not data.get(split):
        raise InputError(f"{data_yaml} has no '{split}' split")
    spec = keypoint_spec(data.get("kpt_shape", (17, 3)), data.get("kpt_oks_sigmas"), str(data_yaml))
    if not isinstance(data.get("path") or "", str):
        raise InputError(f"{data_yaml}: 'path' must be a folder, got {data['path']!r}")
    root = Path(data["path"]) if data.get("path") else data_yaml.parent
    root = root if root.is_absolute() or not data.get("path") else data_yaml.parent / root
    entries = data[split] if isinstance(data[split], list) else [data[split]]
    images: list[Path] = []
    for entry in entries:
        if not isinstance(entry, str):
            raise InputError(f"{data_yaml}: '{split}' must name folders or .txt lists, got {entry!r}")
        where = root / entry
        if where.is_dir():
            images += sorted(p for p in where.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES
                             and not any(part.startswith(".") for part in p.relative_to(where).parts))  # fmt: skip
        elif where.suffix == ".txt" and where.is_file():
            images += _listed_images(where, root)
        else:
            raise InputError(f"{data_yaml}: '{split}' points to {where}, which does not exist")
    if not images:
        raise InputError(f"{data_yaml}: no images in the '{split}' split")
    classes = _class_count(data, str(data_yaml))
    for image in images:  # every label file checked now: a bad one fails before the model loads, not mid-run
        _label_rows(image, spec.shape, classes)
    return images, spec


def _listed_images(listing: Path, root: Path) -> list[Path]:
    """The images a .txt list names, read as Ultralytics reads it: a line "./x" is relative to the
    list's own folder, other lines not naming an image are left out; this side also takes a relative
    line from the dataset's root. Each must exist: a missing one fails now, not mid-run."""
    images = []
    for line in listing.read_text(encoding="utf-8-sig", errors="replace").splitlines():
        line = line.strip()
        if Path(line).suffix.lower() not in IMAGE_SUFFIXES:
            continue
        image = listing.parent / line[2:] if line.startswith("./") else root / line
        if not image.is_file():
            raise InputError(f"{listing}: no such image {image}")
        images.append(image)
    return images


def _class_count(data: dict[str, Any], source: str) -> int | None:
    """The dataset's number of classes, read as Ultralytics reads it: ``names`` (a list or mapping),
    else ``nc`` (a whole number, '10' and 10.0 too); both given must agree. None where neither is."""
    names, nc = data.get("names"), data.get("nc")
    if names is not None and not isinstance(names, (list, dict)):
        raise InputError(f"{source}: names must be a list or a mapping, got {names!r}")
    if nc is not None:
        try:
            whole = float(nc)
            if isinstance(nc, bool) or whole != int(whole) or whole < 0:
                raise ValueError
        except (TypeError, ValueError, OverflowError):
            raise InputError(f"{source}: nc must be a whole number, got {nc!r}") from None
        if names is not None and len(names) != int(whole):
            raise InputError(f"{source}: names holds {len(names)} classes but nc is {nc}")
        return int(whole)
    return None if names is None else len(names)


def _label_rows(image: Path, kpt_shape: tuple[int, int], classes: int | None = None) -> np.ndarray:
    """The validated rows (n, 5 + K*D) of an image's YOLO pose label file (missing or blank file: no
    persons, as Ultralytics reads it); class ids must be below ``classes`` where it is known."""
    k, d = kpt_shape
    path = _label_path(image)
    try:
        text = path.read_bytes().decode("utf-8-sig", "replace") if path.is_file() else ""
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:  # an empty or blank file: no persons, as Ultralytics reads it
        rows = np.loadtxt(text.splitlines(), ndmin=2, dtype=np.float64) if text.strip() else np.zeros((0, 5 + k * d))
    except ValueError as exc:
        raise InputError(f"{path}: not a YOLO pose label file ({exc})") from None
    if rows.shape[1] != 5 + k * d:
        raise InputError(f"{path}: expected {5 + k * d} values per line, got {rows.shape[1]}")
    if not np.isfinite(rows).all() or ((rows[:, 0] < 0) | (rows[:, 0] != np.round(rows[:, 0]))).any():
        raise InputError(f"{path}: values must be finite and class ids whole numbers >= 0")
    if classes is not None and len(rows) and rows[:, 0].max() >= classes:
        raise InputError(f"{path}: class {int(rows[:, 0].max())} is not among the dataset's {classes} classes")
    if len(rows) and (rows[:, 5:].reshape(len(rows), k, d)[..., :2].max() > 1.01
                      or not (rows.min() >= 0 or (rows.min() >= -0.01 and rows[:, 3:5].min() >= 0))):  # fmt: skip
        raise InputError(f"{path}: keypoints beyond 1 or negative values: not normalised YOLO labels "
                         "(Ultralytics drops such an image as corrupt)")  # fmt: skip
    _, first = np.unique(rows, axis=0, return_index=True)
    return rows[np.sort(first)]  # a repeated row is one person, as Ultralytics reads it


def read_labels(image: Path, width: int, height: int, kpt_shape: tuple[int, int]) -> Sample:
    """Ground truth of one image, in pixels."""
    k, d = kpt_shape
    rows = _label_rows(image, kpt_shape)
    cx, cy, w, h = rows[:, 1] * width, rows[:, 2] * height, rows[:, 3] * width, rows[:, 4] * height
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    kpts = rows[:, 5:].reshape(-1, k, d).copy()
    kpts[..., 0] *= width
    kpts[..., 1] *= height
    if d == 2:  # no visibility column: every labelled point counts
        kpts = np.concatenate([kpts, np.ones((*kpts.shape[:2], 1))], axis=-1)
    return Sample(image, rows[:, 0].astype(np.int64), boxes, kpts)


def box_iou(a: np.ndarray, b: np.ndarray, eps: float = 1e-7) -> np.ndarray:
    """IoU matrix (len(a), len(b)) of xyxy boxes."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(2)
    area_a = (a[:, 2:] - a[:, :2]).prod(1)
    area_b = (b[:, 2:] - b[:, :2]).prod(1)
    return inter / (area_a[:, None] + area_b[None] - inter + eps)


def keypoint_oks(
    gt: np.ndarray,
    pred: np.ndarray,
    area: np.ndarray,
    sigmas: np.ndarray,
    eps: float = 1e-7,
    counted: np.ndarray | None = None,
) -> np.ndarray:
    """OKS matrix (len(gt), len(pred)), ``area`` scaling each ``gt`` row; the points that count are
    ``counted`` (len(gt), len(pred), K), by default the labelled (visibility != 0) ground-truth
    points, as Ultralytics' val counts them. A pair with no point counted scores 0."""
    d = ((gt[:, None, :, :2] - pred[None, :, :, :2]) ** 2).sum(-1)
    mask = (gt[..., 2] != 0)[:, None] if counted is None else counted
    e = d / ((2 * sigmas) ** 2 * (area[:, None, None] + eps) * 2)
    return (np.exp(-e) * mask).sum(-1) / (mask.sum(-1) + eps)


def match(similarity: np.ndarray, same_class: np.ndarray | None = None) -> np.ndarray:
    """(n_pred, 10) true-positive flags; predictions are in descending confidence order and each
    claims its best still-unclaimed target per threshold, of its own class where ``same_class``
    (n_gt, n_pred) says which pairs share one (Ultralytics' ``match_predictions``)."""
    if same_class is not None:
        similarity = similarity * same_class
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
    """AP at each threshold from stacked true-positive flags (one class), 101-point COCO."""
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
    classes: np.ndarray  # (n_pred,) each detection's class
    target_classes: np.ndarray  # (n_labels,) each scored label's class
    left_out: int = 0  # labels of classes the model cannot predict

    @property
    def targets(self) -> int:
        return len(self.target_classes)


def require_keypoints(count: int, spec: KeypointSpec) -> None:
    """Refuse a model whose persons have ``count`` keypoints for a dataset labelled with another number."""
    if count != spec.shape[0]:
        raise InputError(f"the model gives {count} keypoints a person, the dataset labels {spec.shape[0]} "
                         f"(kpt_shape {list(spec.shape)}): not a model for this dataset")  # fmt: skip


def match_images(
    predictor: Detector,
    images: Iterable[Path],
    spec: KeypointSpec,
    conf: float = 0.001,
    progress: Callable[[Iterable[Path]], Iterable[Path]] = lambda x: x,
) -> list[ImageMatches]:
    """Run ``predictor`` on labelled images and match each image's detections to its labels."""
    out = []
    for path in progress(images):
        image = read_image(path)
        gt = read_labels(path, image.shape[1], image.shape[0], spec.shape)
        scored = gt.classes < len(predictor.names)  # as Ultralytics' val of a model with fewer classes
        boxes_gt, kpts_gt, cls_gt = gt.boxes[scored], gt.keypoints[scored], gt.classes[scored]
        det = predictor.detect(image, conf=conf, clip=False)
        require_keypoints(det.keypoints.shape[1], spec)
        order = np.argsort(-det.scores, kind="stable")
        boxes, kpts, scores, classes = det.boxes[order], det.keypoints[order], det.scores[order], det.classes[order]
        classes = classes.astype(np.int64)
        same = cls_gt[:, None] == classes[None]
        area = (boxes_gt[:, 2:] - boxes_gt[:, :2]).prod(1) * 0.53
        out.append(ImageMatches(match(box_iou(boxes_gt, boxes), same),
                                match(keypoint_oks(kpts_gt, kpts, area, spec.sigmas), same), scores, classes, cls_gt,
                                int((~scored).sum())))  # fmt: skip
    return out


def pooled_map(matches: Sequence[ImageMatches]) -> dict[str, float]:
    """Box and pose mAP over the pooled detections of these images: AP per class, then the mean
    over the classes that have labels (a class with labels and no detection scores 0)."""
    scores = np.concatenate([m.scores for m in matches])
    classes = np.concatenate([m.classes for m in matches])
    target_classes = np.concatenate([m.target_classes for m in matches])
    tp_box = np.concatenate([m.tp_box for m in matches])
    tp_pose = np.concatenate([m.tp_pose for m in matches])
    ap_box, ap_pose = np.zeros(len(IOU_THRESHOLDS)), np.zeros(len(IOU_THRESHOLDS))
    labelled, counts = np.unique(target_classes, return_counts=True)
    for c, count in zip(labelled, counts):
        mine = classes == c
        ap_box += average_precision(tp_box[mine], scores[mine], int(count)) / len(labelled)
        ap_pose += average_precision(tp_pose[mine], scores[mine], int(count)) / len(labelled)
    return {
        "images": len(matches),
        "instances": len(target_classes),
        "classes": len(labelled),
        "labels_left_out": sum(m.left_out for m in matches),
        "box_map50": float(ap_box[0]),
        "box_map50_95": float(ap_box.mean()),
        "pose_map50": float(ap_pose[0]),
        "pose_map50_95": float(ap_pose.mean()),
    }


def evaluate(
    predictor: Detector,
    images: Iterable[Path],
    spec: KeypointSpec,
    conf: float = 0.001,
    progress: Callable[[Iterable[Path]], Iterable[Path]] = lambda x: x,
) -> dict[str, float]:
    """Box and pose mAP of ``predictor`` on labelled images."""
    return pooled_map(match_images(predictor, images, spec, conf, progress))


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
    if not deltas:
        raise InputError("none of the images holds a label: there is no mAP to compare")
    low, high = np.percentile(deltas, [2.5, 97.5])
    return {"delta": pooled_map(candidate)[metric] - pooled_map(reference)[metric],
            "ci95_low": float(low), "ci95_high": float(high), "resamples": len(deltas)}  # fmt: skip
