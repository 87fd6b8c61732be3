"""Run an exported keypoint classifier: persons' keypoints -> a label per person, or none.

The graph does its own masking and normalisation; this side only scales keypoints to the
contract (x / width, y / height, conf), batches every person of a frame into one call, and —
for a graph trained with negatives — compares its known-pose score with the threshold in its
metadata: below it a person holds no known pose (``label`` None).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .backends import open_backend
from .errors import ModelError
from .metadata import parse_value
from .results import Person, Result

CLASSIFIER_TASK = "pose-classifier"


class KeypointClassifier:
    """A classifier graph with its class names and the keypoint layout it expects."""

    def __init__(self, model: str | os.PathLike, device: str | None = None, threads: int | None = None,
                 backend: str = "auto", verify: bool = False) -> None:  # fmt: skip
        self.model_path = Path(model)
        self.backend = open_backend(self.model_path, backend, device=device, threads=threads, verify=verify)
        meta = {k: parse_value(v) for k, v in self.backend.metadata.items()}
        if meta.get("task") != CLASSIFIER_TASK:
            raise ModelError(f"{self.model_path} is not an edgepose keypoint classifier (task {meta.get('task')!r})")
        try:
            self.names: list[str] = [str(n) for n in meta["names"]]
            self.keypoint_names: tuple[str, ...] = tuple(str(n) for n in meta["keypoint_names"])
            self.report: dict = dict(meta.get("report", {}))
            reject = meta.get("reject")  # None for graphs trained without negatives (and every graph before them)
            self.threshold: float | None = None if reject is None else float(reject["threshold"])
        except (KeyError, TypeError, ValueError) as exc:  # metadata written by hand, or damaged
            raise ModelError(
                f"{self.model_path} has malformed classifier metadata ({type(exc).__name__}: {exc})"
            ) from None

    def check_layout(self, keypoint_names: tuple[str, ...]) -> None:
        """Refuse a pose model whose keypoints are not the ones this classifier was trained on."""
        if tuple(keypoint_names) != self.keypoint_names:
            raise ModelError(
                f"{self.model_path.name} expects {len(self.keypoint_names)} keypoints "
                f"({', '.join(self.keypoint_names[:3])}, ...), the pose model gives {len(keypoint_names)} "
                f"({', '.join(keypoint_names[:3])}, ...)"
            )

    def outputs(self, keypoints: np.ndarray) -> np.ndarray:
        """The graph's output [N, C] (or [N, C + 1], the last column "none") for keypoints [N, K, 3]
        already in the contract's units."""
        columns = len(self.names) + (self.threshold is not None)
        if len(keypoints) == 0:
            return np.zeros((0, columns), np.float32)
        return self.backend.run(np.ascontiguousarray(keypoints, dtype=np.float32))

    def probs(self, keypoints: np.ndarray) -> np.ndarray:
        """Class probabilities [N, C], given that the person holds one of the poses."""
        return self.decide(keypoints)[1]

    def decide(self, keypoints: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Per person: the class index (-1: no known pose), the class probabilities [N, C] given a
        known pose (all 0 for a person the graph rules out: too few body keypoints), and the
        known-pose score the graph's threshold decided on (None for graphs without one)."""
        out = self.outputs(keypoints)
        if self.threshold is None:
            return out.argmax(1), out, None
        known = 1 - out[:, -1]
        probs = out[:, :-1] / np.maximum(out[:, :-1].sum(1, keepdims=True), 1e-12)
        return np.where(known >= self.threshold, probs.argmax(1), -1), probs, known

    def classify(self, result: Result) -> Result:
        """Set ``label``, ``label_score`` (and ``pose_score``) on every person (one batched call)."""
        if not result.persons:
            return result
        best, probs, known = self.decide(result.keypoints_xyn())
        for i, person in enumerate(result.persons):
            self.label(person, int(best[i]), probs[i], None if known is None else float(known[i]))
        return result

    def label(self, person: Person, index: int, probs: np.ndarray, known: float | None) -> None:
        """Write one decision onto a person: class ``index`` with its probability, or (-1) no known pose."""
        person.label = self.names[index] if index >= 0 else None
        person.label_score = float(probs[index]) if index >= 0 else None
        person.pose_score = known


def per_class_report(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str]) -> tuple[dict, list[list[int]]]:
    """Precision/recall per class and the confusion matrix (rows: truth, columns: prediction)."""
    confusion = np.zeros((len(classes), len(classes)), dtype=int)
    np.add.at(confusion, (y_true, y_pred), 1)
    report = {}
    for i, name in enumerate(classes):
        tp = confusion[i, i]
        report[name] = {
            "precision": round(float(tp / max(confusion[:, i].sum(), 1)), 4),
            "recall": round(float(tp / max(confusion[i].sum(), 1)), 4),
            "support": int(confusion[i].sum()),
        }
    return report, confusion.tolist()
