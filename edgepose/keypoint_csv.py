"""The keypoint CSV schema shared by the dataset builder, training and evaluation.

Columns: ``image_name,label``, then ``<kpt>_x,<kpt>_y`` for every keypoint in the model's order (COCO's by default),
normalised by image width/height (Ultralytics ``xyn``), optionally ``<kpt>_conf``, and optionally
``image_hash`` (a perceptual hash of the photo, written by ``edgepose dataset``, so training can keep
near-copies of one photo on one side of its split). A keypoint the pose model did not place is ``0,0``.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .errors import InputError
from .keypoints import COCO_KEYPOINTS
from .results import Result


@dataclass(frozen=True)
class KeypointTable:
    """Rows of one CSV: names (n,), labels (n,), keypoints (n, K, 3) as x, y, conf, and each
    row's ``image_hash`` (hex) where the CSV has them."""

    image_names: list[str]
    labels: list[str]
    keypoints: np.ndarray
    image_hashes: list[str] | None = None


def image_hash(image: np.ndarray) -> str:
    """256-bit difference hash of a BGR image (hex): resized or re-encoded copies of one photo
    differ in a few bits (``near_copies``), different photos in dozens."""
    grey = cv2.resize(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), (17, 16), interpolation=cv2.INTER_AREA)
    return np.packbits(grey[:, 1:] > grey[:, :-1]).tobytes().hex()


_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], np.uint8)


def near_copies(hashes: list[str], bits: int) -> list[tuple[int, int]]:
    """Pairs (i, j), i < j, of image hashes at most ``bits`` apart (Hamming), one hash against the
    rest at a time: memory grows with n, not n x n (20,000 photos of negatives made a 3 GB matrix)."""
    packed = np.array([np.frombuffer(bytes.fromhex(h), np.uint8) for h in hashes]).reshape(len(hashes), -1)
    pairs = []
    for i in range(len(packed) - 1):
        distance = _POPCOUNT[packed[i + 1 :] ^ packed[i]].sum(1, dtype=np.uint16)
        pairs += [(i, i + 1 + int(j)) for j in np.flatnonzero(distance <= bits)]
    return pairs


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
    try:
        return _read_table(path, keypoint_names)
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a text CSV (not UTF-8)") from None
    except csv.Error as exc:
        raise InputError(f"{path}: not a readable CSV ({exc})") from None


def _read_table(path: Path, keypoint_names: tuple[str, ...]) -> KeypointTable:
    with open(path, newline="", encoding="utf-8-sig") as handle:  # -sig: Excel's "CSV UTF-8" starts with a BOM
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        missing = [c for c in columns(keypoint_names) if c not in header]
        if missing:
            raise InputError(f"{path}: missing columns {', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''}")
        with_conf = all(f"{n}_conf" in header for n in keypoint_names)
        with_hash = "image_hash" in header
        names, labels, rows, hashes = [], [], [], []
        for line, row in enumerate(reader, start=2):
            try:
                values = [[float(row[f"{n}_x"]), float(row[f"{n}_y"]),
                           float(row[f"{n}_conf"]) if with_conf else math.nan] for n in keypoint_names]  # fmt: skip
            except (TypeError, ValueError):
                raise InputError(f"{path}:{line}: a keypoint value is empty or not a number") from None
            if not all(math.isfinite(v) for xyc in values for v in xyc[: 3 if with_conf else 2]):
                raise InputError(f"{path}:{line}: NaN or infinite keypoint value")
            if not row["label"]:
                raise InputError(f"{path}:{line}: empty label")
            if not row["image_name"]:
                raise InputError(f"{path}:{line}: empty image_name (it keeps a photo's rows on one side of a split)")
            names.append(row["image_name"])
            labels.append(row["label"])
            rows.append(values)
            if with_hash:
                if len(row["image_hash"] or "") != 64 or any(c not in "0123456789abcdef" for c in row["image_hash"]):
                    raise InputError(f"{path}:{line}: image_hash must be 64 hex digits (as edgepose dataset writes)")
                hashes.append(row["image_hash"])
    if not rows:
        raise InputError(f"{path}: no rows")
    kpts = np.asarray(rows, dtype=np.float32)
    if not with_conf:
        kpts[..., 2] = ((kpts[..., 0] != 0) | (kpts[..., 1] != 0)).astype(np.float32)
    return KeypointTable(names, labels, kpts, hashes if with_hash else None)


def format_table(table: KeypointTable, keypoint_names: tuple[str, ...] = COCO_KEYPOINTS) -> str:
    """CSV text of a table, with ``_conf`` columns (and ``image_hash`` where the table has them)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    hashes = table.image_hashes
    writer.writerow(columns(keypoint_names, with_conf=True) + (["image_hash"] if hashes else []))
    for i, (name, label, kpts) in enumerate(zip(table.image_names, table.labels, table.keypoints)):
        writer.writerow([name, label, *(f"{v:.6g}" for v in kpts.reshape(-1)), *([hashes[i]] if hashes else [])])
    return out.getvalue()


def person_rows(result: Result, all_persons: bool) -> list[np.ndarray]:
    """Keypoint rows of a result in the CSV's units: the most confident person, or every person."""
    persons = result.persons if all_persons else sorted(result.persons, key=lambda p: -p.score)[:1]
    rows = list(result.keypoints_xyn(persons))
    for kpts in rows:
        kpts[kpts[:, 2] < 0.5, :2] = 0  # Ultralytics' xyn convention: an unplaced point is 0,0
    return rows


@dataclass
class Extraction:
    """What ``table_from_images`` made: the table, and what it had to leave out (reported by the caller)."""

    table: KeypointTable | None
    no_person: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def table_from_images(predictor: Any, jobs: Iterable[tuple[str, Path]], all_persons: bool = False,
                      progress: Callable[[list], Iterable] = iter,
                      on_failure: Callable[[str], None] | None = None) -> Extraction:  # fmt: skip
    """Keypoint rows of (label, image) jobs through a pose predictor, each with the photo's hash.

    One unreadable image does not end the run: it is listed in ``failed`` with its reason (and
    passed to ``on_failure`` at once, so a long run reports it when it happens)."""
    from .sources import read_image

    jobs = list(jobs)
    names, labels, rows, hashes, done = [], [], [], [], Extraction(None)
    for label, path in progress(jobs):
        try:
            image = read_image(path)
            result = predictor(image, name=str(path))
        except InputError as exc:
            done.failed.append(str(exc))
            if on_failure:
                on_failure(str(exc))
            continue
        found = person_rows(result, all_persons)
        if not found:
            done.no_person.append(f"{path}: no person found")
        digest = image_hash(image)
        for kpts in found:
            names.append(path.name)
            labels.append(label)
            rows.append(kpts)
            hashes.append(digest)
    if rows:
        done.table = KeypointTable(names, labels, np.stack(rows), hashes)
    return done
