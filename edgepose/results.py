"""The one result type of edgepose and its JSON schema.

Schema (a list of these per run)::

    {"image": str, "width": int, "height": int,
     "frame": int, "time": float,                          # only for video/camera/stream frames
     "persons": [{"id": int,                               # only when tracking (streams)
                  "class": str,                             # only for graphs of several classes
                  "box": [x1, y1, x2, y2], "score": float,  # >= conf; streams: a shown person down to low_conf
                  "keypoints": [[x, y, conf], ...K],        # conf 1.0 throughout for kpt_shape [K, 2] graphs
                  "label": str | null, "label_score": float | null,  # only with a classifier;
                  "pose_score": float,                    # null: no known pose; pose_score: only with a
                  "label_seconds": float}]}               # classifier trained with negatives, this frame's
                                                          # (a stream's shown label is held by its hysteresis);
                                                          # label_seconds: tracked streams, how long the shown
                                                          # label (or none) has held

All coordinates are pixels of the original image. A "person" is any detection of a pose graph
(for a custom keypoint model, a hand or an animal); its keypoints are in the graph's own order
(``edgepose info``'s ``keypoint_names``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .keypoints import Keypoint


@dataclass
class Person:
    """One detected person: ``box`` xyxy (4,), ``score``, ``keypoints`` (K, 3) as x, y, conf."""

    box: np.ndarray
    score: float
    keypoints: np.ndarray
    keypoint_names: tuple[str, ...] = field(repr=False, default=())
    label: str | None = None  # set when a keypoint classifier is attached; None too for "no known pose"
    label_score: float | None = None  # the label's probability given a known pose
    pose_score: float | None = None  # the known-pose score a rejecting classifier decided on
    label_seconds: float | None = None  # streams: how long the track has shown this label (or no pose)
    id: int | None = None  # persistent across frames when a stream tracks persons (edgepose.track)
    cls: str | None = None  # the class name, for graphs of several classes

    @classmethod
    def from_dict(cls, data: dict[str, Any], keypoint_names: tuple[str, ...] = ()) -> Person:
        """A person read back from the JSON ``to_dict`` wrote (a [K, 2] graph's conf of 1.0 included)."""
        return cls(box=np.array(data["box"], np.float64), score=float(data["score"]),
                   keypoints=np.array(data["keypoints"], np.float64).reshape(-1, 3), keypoint_names=keypoint_names,
                   label=data.get("label"), label_score=data.get("label_score"), pose_score=data.get("pose_score"),
                   label_seconds=data.get("label_seconds"), id=data.get("id"), cls=data.get("class"))  # fmt: skip

    def keypoint(self, which: int | str) -> np.ndarray:
        """One keypoint's (x, y, conf) by index, ``Keypoint`` member or name (``"left_wrist"``)."""
        if isinstance(which, str):
            which = self.keypoint_names.index(which) if self.keypoint_names else Keypoint[which.upper()]
        return self.keypoints[int(which)]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {} if self.id is None else {"id": self.id}
        if self.cls is not None:
            out["class"] = self.cls
        out |= {
            "box": [round(float(v), 2) for v in self.box],
            "score": round(float(self.score), 4),
            "keypoints": [[round(float(x), 2), round(float(y), 2), round(float(c), 4)] for x, y, c in self.keypoints],
        }
        if self.label is not None or self.pose_score is not None:
            out["label"] = self.label
            out["label_score"] = None if self.label_score is None else round(float(self.label_score), 4)
        if self.pose_score is not None:
            out["pose_score"] = round(float(self.pose_score), 4)
        if self.label_seconds is not None:
            out["label_seconds"] = round(float(self.label_seconds), 2)
        return out


@dataclass
class Result:
    """All persons found in one image."""

    image: str
    width: int
    height: int
    persons: list[Person]
    frame: int | None = None  # index in the source video/stream (streams only)
    time: float | None = None  # seconds: position in a file, or since a live stream started

    @classmethod
    def from_dict(cls, data: dict[str, Any], keypoint_names: tuple[str, ...] = ()) -> Result:
        """A result read back from its JSON (``predict --json``): e.g. to compare runs made elsewhere."""
        return cls(image=data["image"], width=int(data["width"]), height=int(data["height"]),
                   persons=[Person.from_dict(p, keypoint_names) for p in data["persons"]], frame=data.get("frame"),
                   time=data.get("time"))  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"image": self.image, "width": self.width, "height": self.height}
        if self.frame is not None:
            out["frame"] = self.frame
        if self.time is not None:
            out["time"] = round(float(self.time), 4)
        out["persons"] = [p.to_dict() for p in self.persons]
        return out

    def keypoints_xyn(self, persons: list[Person] | None = None) -> np.ndarray:
        """Keypoints [N, K, 3] of ``persons`` (default: all) with x / width, y / height (Ultralytics'
        ``xyn``) and conf: the units of keypoint CSVs and of the classifier graph's input."""
        persons = self.persons if persons is None else persons
        if not persons:
            return np.zeros((0, 0, 3), np.float32)
        kpts = np.stack([p.keypoints for p in persons]).astype(np.float32)
        kpts[..., :2] /= np.array([self.width, self.height], np.float32)
        return kpts

    def __len__(self) -> int:
        return len(self.persons)
