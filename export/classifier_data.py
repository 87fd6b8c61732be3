"""Where the keypoint classifier's rows come from and how they are split, so that no photo is on both
sides: positives from keypoint CSVs split together (one photo's rows, by label and image name or by
near-copy image hashes, on one side), negatives (people in no class) split by photo."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from edgepose.errors import InputError
from edgepose.keypoint_csv import KeypointTable, near_copies, read_table, table_from_images

SEED_SPLIT = {"test_size": 0.2, "random_state": 2022}
SPLIT_RULE = ("CSVs split together: rows linked by label and image name or near-copy hashes stay on one side; the "
              "first CSV's split (seed rows, or by content where it has hashes) decides, later CSVs' other rows "
              "are split the same way")  # fmt: skip
NEAR_COPY_BITS = 12  # image hashes (256 bits) this close are one photo resized/re-encoded: one side of a split
NEGATIVE_HOLDOUT = 0.5  # share of each negative source's images kept out of training, for the false-accept figure
MIN_PHOTOS_PER_LABEL = 5  # a label's photos in the rows a CSV splits itself: its 20 % hold-out and 5 validation folds


def split_sources(
    tables: list[KeypointTable], classes: list[str], sources: list[str] | None = None
) -> tuple[list[tuple[np.ndarray, np.ndarray]], np.ndarray]:
    """Per positives CSV: (train rows, scored held-out rows); and a group id for every row (all CSVs
    in order), for grouped validation folds.

    The CSVs may hold the same photos (the seed CSV and yoga-train do: one photo, two extractors),
    so they are split together. Rows are linked when they share label and image name, or when
    their photos are near copies (image hashes); a linked group is on one side. The first CSV's own
    split (``split_rows``) decides the groups it touches and is its scored hold-out exactly (the
    seed's 202 rows); each later CSV's rows in groups no earlier CSV decided are split the same way.
    A CSV's scored rows are its rows in held-out groups; no row of a held-out group is trained on.
    Each label of the first CSV needs ``MIN_PHOTOS_PER_LABEL`` photos (groups), else an InputError
    names the CSV (``sources``, its paths) and the label; a later CSV's label with fewer photos of
    its own is trained on whole (it only adds to what the first CSV holds out)."""
    starts = np.cumsum([0] + [len(t.labels) for t in tables])
    groups = _link_rows(tables)
    held = np.zeros(starts[-1], bool)
    decided: set[int] = set()
    first_test = np.zeros(0, int)
    for i, table in enumerate(tables):
        rows = np.arange(starts[i], starts[i + 1])
        free = np.array([r for r in rows if groups[r] not in decided], int)
        photos = _photos_per_label([table.labels[r - starts[i]] for r in free], groups[free])
        if i == 0:
            label, few = min(photos.items(), key=lambda item: item[1])
            if few < MIN_PHOTOS_PER_LABEL:
                raise InputError(f"{sources[0] if sources else 'CSV 1'}: '{label}' has {few} photo(s); a label needs "
                                 f"at least {MIN_PHOTOS_PER_LABEL} for a fifth of them to be held out (rows of one "
                                 "image name, or near-copy image hashes, are one photo)")  # fmt: skip
        free = np.array([r for r in free if photos[table.labels[r - starts[i]]] >= MIN_PHOTOS_PER_LABEL], int)
        if len(free):
            part = _subset(table, free - starts[i])
            _, test = split_rows(part, np.array([classes.index(label) for label in part.labels]))
            held[np.isin(groups, groups[free[test]])] = True
            if i == 0:
                first_test = free[test]
        decided |= set(groups[rows].tolist())
    out = []
    for i in range(len(tables)):
        rows = np.arange(starts[i], starts[i + 1])
        scored = first_test if i == 0 else rows[held[rows]]
        out.append((rows[~held[rows]] - starts[i], scored - starts[i]))
    return out, groups


def _photos_per_label(labels: list[str], groups: np.ndarray) -> dict[str, int]:
    photos: dict[str, set[int]] = {}
    for label, group in zip(labels, groups.tolist()):
        photos.setdefault(label, set()).add(group)
    return {label: len(found) for label, found in photos.items()}


def _subset(table: KeypointTable, rows: np.ndarray) -> KeypointTable:
    return KeypointTable([table.image_names[i] for i in rows], [table.labels[i] for i in rows], table.keypoints[rows],
                         None if table.image_hashes is None else [table.image_hashes[i] for i in rows])  # fmt: skip


def _link_rows(tables: list[KeypointTable]) -> np.ndarray:
    """Group id per row of all tables: same (label, image name), or near-copy image hashes."""
    first: dict[tuple[str, str], int] = {}
    lead: dict[int, int] = {}
    pairs, hashed = [], []
    row = 0
    for table in tables:
        for i, key in enumerate(zip(table.labels, table.image_names)):
            pairs.append((row, first.setdefault(key, row)))
            if table.image_hashes is not None:
                hashed.append((row, table.image_hashes[i]))
            row += 1
    if hashed:
        pairs += [(r, lead.setdefault(int(g), r)) for (r, _), g in zip(hashed, content_groups([h for _, h in hashed]))]
    return components(row, pairs)


def split_rows(table: KeypointTable, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Train and test row indices: the seed's stratified hold-out split (20 %, random_state 2022) for
    a CSV without image hashes; with them, the same share split by content: rows whose photos are
    near copies (``NEAR_COPY_BITS``) stay on one side."""
    from sklearn.model_selection import StratifiedGroupKFold, train_test_split

    rows = np.arange(len(y))
    if table.image_hashes is None:
        train, test = train_test_split(rows, stratify=y, shuffle=True, **SEED_SPLIT)
        return np.asarray(train), np.asarray(test)
    folds = StratifiedGroupKFold(n_splits=round(1 / SEED_SPLIT["test_size"]), shuffle=True,
                                 random_state=SEED_SPLIT["random_state"])  # fmt: skip
    return next(folds.split(rows, y, content_groups(table.image_hashes)))


def content_groups(hashes: list[str]) -> np.ndarray:
    """One group id per row: rows linked by a chain of near-copy hashes share it (over the distinct
    hashes: the persons of one photo share its hash)."""
    unique, inverse = np.unique(hashes, return_inverse=True)
    return components(len(unique), near_copies(list(unique), NEAR_COPY_BITS))[inverse.reshape(-1)]


def components(count: int, pairs: Iterable[tuple[int, int]]) -> np.ndarray:
    """Component id of each of ``count`` items linked by ``pairs`` (union-find)."""
    parent = list(range(count))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in pairs:
        parent[root(a)] = root(b)
    return np.array([root(i) for i in range(count)], int)


def split_negatives(table: KeypointTable, groups: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Train and held-out row indices of a negatives source, split by image (every person of one
    photo, and its near copies where hashes exist, on one side: ``negative_groups``, or ``groups``
    where the caller has them), ``NEGATIVE_HOLDOUT`` held out."""
    from sklearn.model_selection import GroupShuffleSplit

    splitter = GroupShuffleSplit(n_splits=1, test_size=NEGATIVE_HOLDOUT, random_state=SEED_SPLIT["random_state"])
    return next(splitter.split(table.keypoints, groups=negative_groups(table) if groups is None else groups))


def negative_groups(table: KeypointTable) -> np.ndarray:
    """Group id per negative row: its photo (and the photo's near copies, where hashes exist)."""
    if table.image_hashes:
        return content_groups(table.image_hashes)
    return np.unique(table.image_names, return_inverse=True)[1].reshape(-1)


def read_negatives(source: str | os.PathLike, pose_model: str | os.PathLike | None,
                   unreadable: list[str] | None = None) -> KeypointTable:  # fmt: skip
    """People in no class: a keypoint CSV (its labels are ignored), or a folder of photos whose every
    person the pose model finds (score >= 0.25, the runtime's default) becomes a row. A folder's
    images that cannot be read are skipped, each reason appended to ``unreadable``."""
    source = Path(source)
    if source.is_file():
        return read_table(source)
    if not source.is_dir():
        raise InputError(f"--negatives: no such CSV or folder: {source}")
    from edgepose.predictor import load
    from edgepose.sources import list_images

    pose_model = pose_model or "models/yolo11n-pose.onnx"
    done = table_from_images(load(pose_model), [("none", path) for path in list_images(source)], all_persons=True)
    if unreadable is not None:
        unreadable += done.failed
    if done.table is None:
        raise InputError(f"--negatives: no person found in any image under {source}")
    return done.table
