"""Decode the pose head, suppress duplicates and map results back to the original image.

The head of an Ultralytics pose graph is ``(1, 4 + nc + K*D, N)``: box centre/size in input pixels,
per-class scores (already sigmoid), then K keypoints of D values (x, y[, conf]) in input pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .preprocess import Letterbox

MAX_NMS = 30000  # candidates kept for NMS, as Ultralytics


@dataclass(frozen=True)
class Detections:
    """Arrays for the persons kept in one image: boxes (n, 4) xyxy, scores (n,), classes (n,), keypoints (n, K, D)."""

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    keypoints: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)


def decode(
    output: np.ndarray,
    num_classes: int,
    kpt_shape: tuple[int, int],
    conf: float,
    iou: float,
    max_det: int,
) -> Detections:
    """Threshold, convert to xyxy and run class-aware NMS on one image's head output."""
    pred = output[0] if output.ndim == 3 else output
    pred = pred.T  # (N, 4 + nc + K*D): one row per anchor
    scores_all = pred[:, 4 : 4 + num_classes]
    classes = scores_all.argmax(1) if num_classes > 1 else np.zeros(len(pred), dtype=np.int64)
    scores = scores_all.max(1) if num_classes > 1 else scores_all[:, 0]
    keep = scores > conf
    pred, scores, classes = pred[keep], scores[keep], classes[keep]
    if len(scores) > MAX_NMS:
        top = np.argsort(-scores)[:MAX_NMS]
        pred, scores, classes = pred[top], scores[top], classes[top]
    xywh = pred[:, :4].astype(np.float32)
    corner = xywh.copy()
    corner[:, :2] -= corner[:, 2:] / 2  # top-left x, y as cv2 wants
    idx = cv2.dnn.NMSBoxesBatched(corner, scores, classes, conf, iou) if len(scores) else []
    idx = np.asarray(idx, dtype=np.int64).reshape(-1)[:max_det]
    boxes = np.concatenate([corner[idx, :2], corner[idx, :2] + corner[idx, 2:]], axis=1)
    kpts = pred[idx, 4 + num_classes :].reshape(len(idx), *kpt_shape).astype(np.float32)
    return Detections(boxes, scores[idx].astype(np.float32), classes[idx], kpts)


def to_original(det: Detections, box: Letterbox, clip: bool = True) -> Detections:
    """Undo the letterbox on boxes and keypoints; ``clip`` keeps them inside the image.

    Validation passes ``clip=False``: Ultralytics' validator matches unclipped boxes.
    """
    boxes = box.to_original(det.boxes.copy())
    kpts = det.keypoints.copy()
    if len(kpts):
        xy = kpts[..., :2].reshape(len(kpts), -1)  # a copy: (n, 2K) interleaved x, y
        kpts[..., :2] = box.to_original(xy).reshape(len(kpts), -1, 2)
    if clip:
        h, w = box.orig_shape
        np.clip(boxes[:, 0::2], 0, w, out=boxes[:, 0::2])
        np.clip(boxes[:, 1::2], 0, h, out=boxes[:, 1::2])
        np.clip(kpts[..., 0], 0, w, out=kpts[..., 0])
        np.clip(kpts[..., 1], 0, h, out=kpts[..., 1])
    return Detections(boxes, det.scores, det.classes, kpts)
