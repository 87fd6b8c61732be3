"""Decode the pose head, suppress duplicates and map results back to the original image.

An Ultralytics pose graph ends in one of three head forms (``HEAD_FORMS``), told apart by
``head_form`` from its metadata and output shape together:

- ``raw``: ``(1, 4 + nc + K*D, N)``, one column per anchor: box centre/size in input pixels,
  per-class scores (already sigmoid), then K keypoints of D values (x, y[, conf]) in input pixels.
  edgepose thresholds it and runs class-aware NMS (``decode``).
- ``nms-free`` (YOLO26's one-to-one head, ``end2end`` in the metadata) and ``embedded-nms``
  (NMS inside the graph, ``args.nms``): ``(1, max_det, 6 + K*D)``, one row per detection: x1, y1,
  x2, y2, score, class, then the keypoints, best first and zero-padded. Only a confidence filter is
  left to do (``decode_rows``); an embedded-NMS graph has already dropped what scored under the
  conf it was exported with.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .errors import ModelError
from .metadata import ModelMeta
from .preprocess import Letterbox

MAX_NMS = 30000  # candidates kept for NMS, as Ultralytics
HEAD_FORMS = ("raw", "nms-free", "embedded-nms")


def declared_form(meta: ModelMeta) -> str:
    """The head form a graph's metadata declares: edgepose's ``head_form``, else Ultralytics' keys."""
    form = meta.raw.get("head_form")
    if form in HEAD_FORMS:
        return str(form)
    if meta.end2end:
        return "nms-free"
    args = meta.raw.get("args")
    return "embedded-nms" if isinstance(args, dict) and args.get("nms") is True else "raw"


def head_form(meta: ModelMeta, output_shape: tuple[int | None, ...], source: str) -> str:
    """The form to decode: the declared one, checked against the output it has to explain.

    A graph whose output fits another form than its metadata declares is refused, naming both,
    rather than decoded as the wrong thing (boxes made of keypoints)."""
    form = declared_form(meta)
    nc, (k, d) = len(meta.names), meta.kpt_shape
    raw_channels, row_width = 4 + nc + k * d, 6 + k * d
    shape = "x".join("?" if v is None else str(v) for v in output_shape)
    fits_raw = len(output_shape) == 3 and output_shape[1] in (None, raw_channels)
    fits_rows = len(output_shape) == 3 and output_shape[2] in (None, row_width)
    if form == "raw" and not fits_raw:
        if fits_rows:
            raise ModelError(
                f"{source}: output {shape} is a post-NMS head (rows of box, score, class and {k}x{d} keypoints) but "
                "its metadata says neither end2end nor nms; re-export it with Ultralytics or 'edgepose export --head'"
            )
        raise ModelError(
            f"{source}: output {shape} is no pose head with {nc} classes and kpt_shape [{k}, {d}] (raw heads have "
            f"{raw_channels} channels, post-NMS heads rows of {row_width})"
        )
    if form != "raw" and not fits_rows:
        raise ModelError(
            f"{source}: metadata says {form} but output {shape} has no rows of {row_width} "
            f"(box, score, class and {k}x{d} keypoints){' (it is a raw head)' if fits_raw else ''}"
        )
    return form


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


def decode_rows(output: np.ndarray, kpt_shape: tuple[int, int], conf: float, max_det: int) -> Detections:
    """Rows of an NMS-free or embedded-NMS head (x1, y1, x2, y2, score, class, keypoints) above ``conf``."""
    rows = output[0] if output.ndim == 3 else output
    rows = rows[rows[:, 4] > conf]
    rows = rows[np.argsort(-rows[:, 4], kind="stable")][:max_det]  # graphs emit them best first; make sure
    return Detections(rows[:, :4].astype(np.float32), rows[:, 4].astype(np.float32), rows[:, 5].astype(np.int64),
                      rows[:, 6:].reshape(len(rows), *kpt_shape).astype(np.float32))  # fmt: skip


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
