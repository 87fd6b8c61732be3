"""Annotate an image with a ``Result``: boxes, skeleton, keypoints (OpenCV only)."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from .results import Result

BOX_COLOR = (56, 56, 255)
LIMB_COLOR = (255, 178, 51)
POINT_COLOR = (0, 255, 0)


def draw_result(
    image: np.ndarray,
    result: Result,
    skeleton: Sequence[tuple[int, int]],
    kpt_conf: float = 0.5,
) -> np.ndarray:
    """A copy of ``image`` with every person drawn; keypoints below ``kpt_conf`` are left out.

    Without a skeleton (a custom keypoint set edgepose knows no limbs of) each point is named
    instead, so a hand's or an animal's points can be told apart."""
    canvas = image.copy()
    scale = max(1, round(max(canvas.shape[:2]) / 640))
    for person in result.persons:
        x1, y1, x2, y2 = (int(round(v)) for v in person.box)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), BOX_COLOR, 2 * scale)
        caption = (
            f"{person.label} {person.label_score:.2f}"
            if person.label
            else f"{person.cls or 'person'} {person.score:.2f}"
        )
        if person.label and person.label_seconds is not None:  # streams: how long the label has held
            caption += f" {int(person.label_seconds)}s"  # whole seconds held, as the kiosk page counts
        if person.id is not None:  # tracked (streams): the id a kiosk app keys on
            caption = f"#{person.id} {caption}"
        cv2.putText(canvas, caption, (x1, max(y1 - 6, 12)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.5 * scale, BOX_COLOR, scale, cv2.LINE_AA)  # fmt: skip
        pts = person.keypoints
        visible = pts[:, 2] >= kpt_conf
        for a, b in skeleton:
            if visible[a] and visible[b]:
                pa, pb = tuple(int(v) for v in pts[a, :2]), tuple(int(v) for v in pts[b, :2])
                cv2.line(canvas, pa, pb, LIMB_COLOR, 2 * scale, cv2.LINE_AA)
        for i in np.flatnonzero(visible):
            x, y = int(pts[i, 0]), int(pts[i, 1])
            cv2.circle(canvas, (x, y), 3 * scale, POINT_COLOR, -1, cv2.LINE_AA)
            if not skeleton and i < len(person.keypoint_names):
                cv2.putText(canvas, person.keypoint_names[i], (x + 4 * scale, y), cv2.FONT_HERSHEY_SIMPLEX,
                            0.35 * scale, POINT_COLOR, 1, cv2.LINE_AA)  # fmt: skip
    return canvas
