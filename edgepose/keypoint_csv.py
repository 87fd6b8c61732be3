"""The keypoint CSV schema shared by the dataset builder, training and evaluation.

Columns: ``image_name,label``, then ``<kpt>_x,<kpt>_y`` for every keypoint in COCO order,
normalised by image width/height (Ultralytics ``xyn``), optionally ``<kpt>_conf``. A keypoint the
pose model did not place is ``0,0``.
"""

from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError
from .keypoints import COCO_KEYPOINTS


@dataclass(frozen=True)
class KeypointTable:
    """Rows of one CSV: names (n,), labels (n,), keypoints (n, K, 3) as x, y, conf."""

    image_names: list[str]
    labels: list[str]
    keypoints: np.ndarray


def columns(keypoint_names: tuple[str, ...] = COCO_KEYPOINTS, with_conf: bool = False) -> list[str]:
    cols = ["image_name", "label"]
    for name in keypoint_names:
        cols += [f"{name}_x", f"{name}_y"] + ([f"{name}_conf"] if with_conf else [])
    return cols


def read_table(path: str | os.PathLike, keypoint_names: tuple[str, ...] = COCO_KEYPOINTS) -> KeypointTable:
    """Read and validate a keypoint CSV; rows without ``_conf`` get conf 1 where the point exists."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"no such CSV: {path}")
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        missing = [c for c in columns(keypoint_names) if c not in header]
        if missing:
            raise InputError(f"{path}: missing columns {', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''}")
        with_conf = all(f"{n}_conf" in header for n in keypoint_names)
        names, labels, rows = [], [], []
        for line, row in enumerate(reader, start=2):
            try:
                values = [[float(row[f"{n}_x"]), float(row[f"{n}_y"]),
                           float(row[f"{n}_conf"]) if with_conf else math.nan] for n in keypoint_names]  # fmt: skip
            except (TypeError, ValueError):
                raise InputError(f"{path}:{line}: a keypoint value is empty or not a number") from None
            if any(math.isnan(v) for xyc in values for v in xyc[: 3 if with_conf else 2]):
                raise InputError(f"{path}:{line}: NaN keypoint value")
            if not row["label"]:
                raise InputError(f"{path}:{line}: empty label")
            names.append(row["image_name"])
            labels.append(row["label"])
            rows.append(values)
    if not rows:
        raise InputError(f"{path}: no rows")
    kpts = np.asarray(rows, dtype=np.float32)
    if not with_conf:
        kpts[..., 2] = ((kpts[..., 0] != 0) | (kpts[..., 1] != 0)).astype(np.float32)
    return KeypointTable(names, labels, kpts)


def format_table(table: KeypointTable, keypoint_names: tuple[str, ...] = COCO_KEYPOINTS) -> str:
    """CSV text of a table, with ``_conf`` columns."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns(keypoint_names, with_conf=True))
    for name, label, kpts in zip(table.image_names, table.labels, table.keypoints):
        writer.writerow([name, label, *(f"{v:.6g}" for v in kpts.reshape(-1))])
    return out.getvalue()
