"""The COCO-17 keypoint layout that Ultralytics pose models predict: names, skeleton, mirror map.

Seed users wrote these indices by hand (``GetKeypoint.LEFT_WRIST``); ``Keypoint`` replaces that.
"""

from __future__ import annotations

from enum import IntEnum

COCO_KEYPOINTS: tuple[str, ...] = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
)  # fmt: skip

Keypoint = IntEnum("Keypoint", {name.upper(): i for i, name in enumerate(COCO_KEYPOINTS)})
Keypoint.__doc__ = "Index of a COCO keypoint by name, e.g. ``Keypoint.LEFT_WRIST == 9``."

# Limb edges as pairs of 0-based keypoint indices (Ultralytics' drawing skeleton).
COCO_SKELETON: tuple[tuple[int, int], ...] = (
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7), (6, 8),
    (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
)  # fmt: skip

# Index of each keypoint's mirror image (left <-> right), for horizontal flips.
COCO_FLIP_INDEX: tuple[int, ...] = (0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15)

# Per-keypoint OKS sigmas from COCO, as Ultralytics' validator uses them.
COCO_SIGMAS: tuple[float, ...] = (
    0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072, 0.062, 0.062,
    0.107, 0.107, 0.087, 0.087, 0.089, 0.089,
)  # fmt: skip
