"""Train the keypoint classifier (MLP or SVC, optionally with a "none of these" outcome learnt from
negatives) and export it as a self-contained ONNX graph (``classifier_graph``), measured on the
hold-outs ``classifier_data`` keeps."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgepose.classifier import per_class_report
from edgepose.errors import ExportError, InputError, MissingExtraError
from edgepose.integrity import write_checksum
from edgepose.keypoint_csv import read_table
from edgepose.keypoints import COCO_FLIP_INDEX
from edgepose.metadata import sha256_file

from .classifier_data import SEED_SPLIT, SPLIT_RULE, negative_groups, read_negatives, split_negatives, split_sources
from .classifier_graph import BODY, MIN_BODY, MlpModel, SvcModel, build_network, features_of, pose_features, write_graph

log = logging.getLogger("edgepose")

MAX_FALSE_ACCEPT = 0.04  # default target: share of validation negatives the chosen threshold still labels
FOLDS = 5  # out-of-fold predictions on the training rows choose the threshold
MODELS = ("mlp", "svc")


def _require() -> None:
    for module in ("torch", "sklearn"):
        try:
            __import__(module)
        except ImportError:
            raise MissingExtraError("export", module) from None


def mirror(kpts: np.ndarray) -> np.ndarray:
    """The same pose seen in a mirror: x -> 1 - x and left/right keypoints swapped; missing stays 0,0."""
    out = kpts[:, list(COCO_FLIP_INDEX)].copy()
    present = (out[..., 0] != 0) | (out[..., 1] != 0)
    out[..., 0] = np.where(present, 1 - out[..., 0], 0)
    return out


def drop_keypoints(
    kpts: np.ndarray, count: int, rng: np.random.Generator, rows: np.ndarray | None = None
) -> np.ndarray:
    """Set ``count`` random body keypoints missing (0, 0, conf 0) in each selected row."""
    out = kpts.copy()
    for i in range(len(out)) if rows is None else rows:
        out[i, rng.choice(BODY, count, replace=False)] = 0
    return out


def _augment(kpts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    flip = rng.random(len(kpts)) < 0.5
    out = kpts.copy()
    out[flip] = mirror(kpts[flip])
    for count in (1, 2, 3):  # about half the rows lose 1-3 body keypoints
        out = drop_keypoints(out, count, rng, np.flatnonzero(rng.random(len(out)) < 1 / 6))
    present = out[..., 2:3] > 0
    out[..., :2] += rng.normal(0, 0.004, out[..., :2].shape).astype(np.float32) * present
    return out


@dataclass
class TrainReport:
    """Headline figures of a training run, written beside the graph as JSON. Accuracy counts a
    held-out pose labelled "none" as wrong; the headline figures are the first CSV's hold-out."""

    model: str
    classes: list[str]
    train_rows: int
    test_rows: int
    accuracy: float
    accuracy_two_missing: float
    accuracy_mirrored: float
    per_class: dict[str, dict[str, float]]
    confusion: list[list[int]]
    split: dict[str, Any]
    seconds: float
    sources: list[dict[str, Any]] = field(default_factory=list)
    rejection: dict[str, Any] | None = None  # threshold, its validation, held-out false accepts, the curve
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def train_mlp(x: np.ndarray, y: np.ndarray, num_outputs: int, hidden: int, epochs: int, seed: int,
              rejects: bool = False) -> MlpModel:  # fmt: skip
    """Class-weighted cross-entropy, AdamW with one-cycle LR, fresh augmentation every epoch."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = build_network(x.shape[1], num_outputs, hidden, rejects)
    batch = 64
    steps = epochs * int(np.ceil(len(y) / batch))
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    weights = torch.tensor(len(y) / (num_outputs * np.bincount(y, minlength=num_outputs).clip(min=1)),
                           dtype=torch.float32)  # fmt: skip
    loss_fn = nn.CrossEntropyLoss(weight=weights, label_smoothing=0.05)
    for _ in range(epochs):
        net.train()
        xa = _augment(x, rng)
        order = rng.permutation(len(y))
        for start in range(0, len(order), batch):
            idx = order[start : start + batch]
            loss = loss_fn(net(torch.from_numpy(xa[idx])), torch.from_numpy(y[idx]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return MlpModel(net.eval(), {"hidden": hidden, "epochs": epochs, "seed": seed})


SVC_COPIES = 4  # augmented copies of the training rows (mirror, drop-out, jitter) beside the originals


def train_svc(x: np.ndarray, y: np.ndarray, seed: int, c: float = 30.0, none: int | None = None) -> SvcModel:
    """RBF SVC with balanced class weights and sigmoid-calibrated probabilities (5-fold), on the
    in-graph features of the training rows plus augmented copies (SVCs see the data once, so the
    augmentation is drawn up front). With ``none`` (the "none" class's index, the last; a validation
    fold's rows may hold none of it), the poses' SVC learns the poses alone and a second one known
    against none (``SvcModel``)."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.svm import SVC

    def calibrated() -> Any:
        return CalibratedClassifierCV(SVC(C=c, gamma="scale", class_weight="balanced"), method="sigmoid", cv=5,
                                      ensemble=False)  # fmt: skip

    rng = np.random.default_rng(seed)
    xa = np.concatenate([x] + [_augment(x, rng) for _ in range(SVC_COPIES)])
    ya = np.tile(y, SVC_COPIES + 1)
    features = features_of(pose_features().eval(), xa)
    settings = {"C": c, "gamma": "scale", "augmented_copies": SVC_COPIES, "seed": seed}
    if none is None:
        return SvcModel(calibrated().fit(features, ya), settings)
    pose = ya != none
    known = calibrated().fit(features, pose.astype(int))
    return SvcModel(calibrated().fit(features[pose], ya[pose]), {**settings, "known_vs_none": True}, known)


def choose_threshold(known: np.ndarray, correct: np.ndarray, negative: np.ndarray,
                     max_false_accept: float) -> tuple[float, list[dict[str, float]]]:  # fmt: skip
    """The lowest threshold on the known-pose score (to 1e-4) whose false-accept rate on the
    validation negatives is at most ``max_false_accept`` (labelling as many real poses as that
    allows), and the curve of accuracy (a rejected pose counts as wrong) and false accepts."""

    def point(t: float) -> dict[str, float]:
        accepted = known >= t
        return {"threshold": round(t, 4), "accuracy": round(float((accepted & correct)[~negative].mean()), 4),
                "false_accept": round(float(accepted[negative].mean()), 4)}  # fmt: skip

    scores = np.sort(known[negative])[::-1]
    allowed = int(np.floor(max_false_accept * len(scores) + 1e-9))  # negatives the threshold may still label
    threshold = 0.0 if allowed >= len(scores) else min(np.floor(float(scores[allowed]) * 1e4) / 1e4 + 1e-4, 1.0)
    chosen = point(threshold)
    if chosen["false_accept"] > max_false_accept:  # negatives scored 1.0: no threshold stops them
        log.warning(f"no threshold holds false accepts at {max_false_accept:g}: at {threshold:g}, the highest, "
                    f"{chosen['false_accept']:.2%} of the validation negatives still get a pose (they look like "
                    "the poses to this classifier)")  # fmt: skip
    return round(threshold, 4), [point(float(t)) for t in np.arange(0.0, 1.0, 0.01)] + [chosen]


def train_classifier(
    csv_path: str | os.PathLike | list[str | os.PathLike],
    out: str | os.PathLike,
    model: str = "mlp",
    hidden: int = 256,
    epochs: int = 300,
    seed: int = 0,
    name: str = "classifier",
    negatives: list[str | os.PathLike] | None = None,
    pose_model: str | os.PathLike | None = None,
    max_false_accept: float = MAX_FALSE_ACCEPT,
) -> TrainReport:
    """Train on the split of each keypoint CSV (and on ``negatives``, people in no class), report on
    the hold-outs, export ``out/NAME.onnx``.

    With negatives the classifier has a "none" output; the threshold on its known-pose score is
    chosen on out-of-fold predictions of the training rows for ``max_false_accept``, then the
    model is refitted on all of them."""
    if model not in MODELS:
        raise InputError(f"unknown classifier model '{model}' (choose from {', '.join(MODELS)})")
    if not name or Path(name).name != name or name.startswith("."):
        raise InputError(f"name must be a plain file name (NAME.onnx is written in out), got {name!r}")
    if not 0.0 < max_false_accept < 1.0:
        raise InputError(f"max_false_accept must be between 0 and 1, got {max_false_accept}")
    _require()
    start = time.perf_counter()
    csv_paths = [Path(p) for p in (csv_path if isinstance(csv_path, (list, tuple)) else [csv_path])]
    tables = [read_table(p) for p in csv_paths]
    classes = sorted({label for table in tables for label in table.labels})
    if len(classes) < 2:
        raise InputError(f"{csv_paths[0]}: needs at least two labels, found {classes}")
    if negatives and "none" in classes:
        raise InputError("'none' is the label of no known pose: rename that class in the CSV")
    labels_of = [np.array([classes.index(label) for label in table.labels]) for table in tables]
    parts, row_groups = split_sources(tables, classes, [str(p) for p in csv_paths])
    splits = [(t.keypoints[train], t.keypoints[test], y[train], y[test]) for t, y, (train, test) in
              zip(tables, labels_of, parts)]  # fmt: skip
    starts = np.cumsum([0] + [len(t.labels) for t in tables])
    x_train = np.concatenate([s[0] for s in splits])
    y_train = np.concatenate([s[2] for s in splits])
    groups = np.concatenate([row_groups[start + train] for start, (train, _) in zip(starts, parts)])
    unreadable: list[str] = []  # a negatives folder's images that could not be read, skipped
    negative_tables = [read_negatives(src, pose_model, unreadable) for src in negatives or []]
    rejects = bool(negative_tables)
    none = len(classes)  # the "none" output's index, with negatives
    negative_splits = []
    for source, table in zip(negatives or [], negative_tables):
        photos = negative_groups(table)
        if len(np.unique(photos)) < 2:
            raise InputError(f"--negatives {source}: its rows come from one photo; half of a source's photos "
                             "are held out, so it needs at least 2")  # fmt: skip
        train, held = split_negatives(table, photos)
        negative_splits.append((table.keypoints[train], table.keypoints[held]))
        groups = np.concatenate([groups, photos[train] + groups.max() + 1])  # a photo's persons in one fold
    if rejects:
        x_neg = np.concatenate([s[0] for s in negative_splits])
        x_train = np.concatenate([x_train, x_neg])
        y_train = np.concatenate([y_train, np.full(len(x_neg), none)])

    def fit(x: np.ndarray, y: np.ndarray) -> MlpModel | SvcModel:
        if model == "mlp":
            return train_mlp(x, y, len(classes) + rejects, hidden, epochs, seed, rejects)
        return train_svc(x, y, seed, none=none if rejects else None)

    reject = validation = None
    if rejects:
        threshold, validation = _validate_threshold(fit, x_train, y_train, groups, none, max_false_accept, seed)
        reject = {"threshold": threshold, "none_column": none, "min_body_keypoints": MIN_BODY,
                  "max_false_accept": max_false_accept}  # fmt: skip
    trained = fit(x_train, y_train)

    def labels(kpts: np.ndarray) -> np.ndarray:
        """Predicted class per row, ``none`` where the classifier rejects."""
        probs = trained.probs(kpts)
        if not rejects:
            return probs.argmax(1)
        return np.where(1 - probs[:, none] >= reject["threshold"], probs[:, :none].argmax(1), none)

    rng = np.random.default_rng(seed + 1)
    sources = []
    for path, table, (_, x_test, y_part, y_test) in zip(csv_paths, tables, splits):
        sources.append({"csv": path.name, "train_rows": len(y_part), "test_rows": len(y_test),
                        "split": "by content (image hash)" if table.image_hashes else "seed rows",
                        "accuracy": _accuracy(labels(x_test), y_test),
                        "accuracy_two_missing": _accuracy(labels(drop_keypoints(x_test, 2, rng)), y_test),
                        "accuracy_mirrored": _accuracy(labels(mirror(x_test)), y_test)})  # fmt: skip
    _, x_test, _, y_test = splits[0]
    pred = labels(x_test)
    per_class, confusion = per_class_report(y_test, pred, classes + ["none"] * rejects)
    per_class.pop("none", None)  # no held-out positive is "none": its column in the confusion says what was rejected
    head = sources[0]
    report = TrainReport(
        model=model, classes=classes, train_rows=len(y_train), test_rows=len(y_test), accuracy=head["accuracy"],
        accuracy_two_missing=head["accuracy_two_missing"], accuracy_mirrored=head["accuracy_mirrored"],
        per_class=per_class, confusion=confusion, sources=sources,
        split={**SEED_SPLIT, "stratify": True, "shuffle": True, "rule": SPLIT_RULE}, seconds=0.0,
        extra=dict(trained.settings),
    )  # fmt: skip
    if rejects:
        held = np.concatenate([s[1] for s in negative_splits])
        report.rejection = {
            **reject,
            "validation": validation,
            "held_out_negatives": {"sources": [Path(s).name for s in negatives or []], "rows": len(held),
                                   "train_rows": len(x_train) - len(np.concatenate([s[0] for s in splits])),
                                   "false_accept": round(float((labels(held) != none).mean()), 4),
                                   "unreadable_images": unreadable},
        }  # fmt: skip
    from edgepose.outputs import output_folder, write_json

    headline = {k: getattr(report, k) for k in ("accuracy", "accuracy_two_missing", "accuracy_mirrored", "test_rows")}
    if rejects:
        headline["false_accept_held_out"] = report.rejection["held_out_negatives"]["false_accept"]
    source = {"csv": [p.name for p in csv_paths], "csv_sha256": [sha256_file(p) for p in csv_paths],
              "negatives": [Path(s).name for s in negatives or []]}  # fmt: skip
    with output_folder(out) as out:  # a failed write removes the folder it made, left empty
        staged = out / f".{name}.partial.onnx"  # hidden, and still a name the runtime loads (.onnx)
        try:
            write_graph(trained.to_onnx(), staged, classes, {"model": model, **headline}, source, reject)
            agreement = _check_agreement(trained, staged, np.concatenate([t.keypoints for t in tables]))
            os.replace(staged, out / f"{name}.onnx")
            write_checksum(out / f"{name}.onnx")  # <name>.onnx.sha256: what `--verify` checks the graph against
        finally:
            staged.unlink(missing_ok=True)
        report.extra["onnx_vs_trained"] = agreement
        report.seconds = round(time.perf_counter() - start, 1)
        write_json(out / f"{name}.report.json", report.to_dict())
    return report


def _accuracy(pred: np.ndarray, truth: np.ndarray) -> float:
    return round(float((pred == truth).mean()), 4)


def _validate_threshold(fit: Any, x: np.ndarray, y: np.ndarray, groups: np.ndarray, none: int,
                        max_false_accept: float, seed: int) -> tuple[float, dict[str, Any]]:  # fmt: skip
    """Out-of-fold known-pose scores of every training row (``FOLDS`` stratified folds that keep each
    group, a photo and its copies, in one fold), and the threshold ``choose_threshold`` picks from them."""
    from sklearn.model_selection import StratifiedGroupKFold

    known = np.zeros(len(y), np.float32)
    correct = np.zeros(len(y), bool)
    for train, held in StratifiedGroupKFold(FOLDS, shuffle=True, random_state=seed).split(x, y, groups):
        probs = fit(x[train], y[train]).probs(x[held])
        known[held] = 1 - probs[:, none]
        correct[held] = probs[:, :none].argmax(1) == y[held]
    threshold, curve = choose_threshold(known, correct, y == none, max_false_accept)
    chosen = curve.pop()  # the curve is a 0.01 grid; its last point is the chosen threshold's
    return threshold, {"folds": FOLDS, "rows": len(y), "accuracy": chosen["accuracy"],
                       "false_accept": chosen["false_accept"], "curve": curve}  # fmt: skip


def _check_agreement(trained: MlpModel | SvcModel, path: Path, kpts: np.ndarray) -> dict[str, Any]:
    """The graph must give the trained model's argmax on every row and probabilities within 1e-4."""
    from edgepose.classifier import KeypointClassifier

    ref = trained.probs(kpts)
    got = KeypointClassifier(path).outputs(kpts)
    result = {"rows": len(kpts), "argmax_equal": bool((ref.argmax(1) == got.argmax(1)).all()),
              "max_abs_prob": float(np.abs(ref - got).max())}  # fmt: skip
    if not result["argmax_equal"] or result["max_abs_prob"] > 1e-4:
        raise ExportError(f"classifier graph disagrees with the trained network: {result}")
    return result
