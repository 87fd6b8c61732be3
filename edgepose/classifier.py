"""Run an exported keypoint classifier: persons' keypoints -> a label per person.

The graph does its own masking and normalisation; this side only scales keypoints to the
contract (x / width, y / height, conf) and batches every person of a frame into one call.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .backends import open_backend
from .errors import ModelError
from .metadata import parse_value
from .results import Result

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
        self.names: list[str] = list(meta["names"])
        self.keypoint_names: tuple[str, ...] = tuple(meta["keypoint_names"])
        self.report: dict = dict(meta.get("report", {}))

    def check_layout(self, keypoint_names: tuple[str, ...]) -> None:
        """Refuse a pose model whose keypoints are not the ones this classifier was trained on."""
        if tuple(keypoint_names) != self.keypoint_names:
            raise ModelError(
                f"{self.model_path.name} expects {len(self.keypoint_names)} keypoints "
                f"({', '.join(self.keypoint_names[:3])}, ...), the pose model gives {len(keypoint_names)} "
                f"({', '.join(keypoint_names[:3])}, ...)"
            )

    def probs(self, keypoints: np.ndarray) -> np.ndarray:
        """Class probabilities [N, C] for keypoints [N, K, 3] already in the contract's units."""
        if len(keypoints) == 0:
            return np.zeros((0, len(self.names)), np.float32)
        return self.backend.run(np.ascontiguousarray(keypoints, dtype=np.float32))

    def classify(self, result: Result) -> Result:
        """Set ``label`` and ``label_score`` on every person of a result (one batched call)."""
        if not result.persons:
            return result
        kpts = np.stack([p.keypoints for p in result.persons]).astype(np.float32)
        kpts[..., 0] /= result.width
        kpts[..., 1] /= result.height
        probs = self.probs(kpts)
        for person, row in zip(result.persons, probs):
            best = int(row.argmax())
            person.label, person.label_score = self.names[best], float(row[best])
        return result


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
