"""Train the keypoint classifier and export it as a self-contained ONNX graph.

The graph's contract: input ``keypoints`` float32 [N, K, 3] (x, y normalised by image width and
height, keypoint confidence), output ``probs`` float32 [N, C] — or [N, C + 1] for a classifier
trained with negatives, whose last column is the probability of "none of these" and whose
metadata ``reject`` holds the threshold the runtime compares ``1 - probs[:, C]`` with.
Missing-keypoint masking, the position/size normalisation and the rule that a person with too
few body keypoints holds no known pose are operations inside the graph, so the runtime only
feeds keypoints.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgepose import __version__
from edgepose.classifier import CLASSIFIER_TASK, per_class_report
from edgepose.errors import ExportError, InputError, MissingExtraError
from edgepose.integrity import write_checksum
from edgepose.keypoint_csv import KeypointTable, hash_distance, read_table, table_from_images
from edgepose.keypoints import COCO_FLIP_INDEX, COCO_KEYPOINTS
from edgepose.metadata import sha256_file

from .pose import set_metadata

CONF_THRESHOLD = 0.5  # below this a keypoint counts as missing, as Ultralytics' xyn zeroes it
BODY = np.arange(5, 17)  # shoulders to ankles: the points drop-out removes
MIN_BODY = 4  # a person with fewer placed body keypoints holds no known pose (classifiers with negatives)
# Limb segments whose directions the features carry beside the positions: the joint angles that tell a
# yoga pose from a stance are then one layer away, not a function the network must build from coordinates.
LIMBS = ((5, 7), (7, 9), (6, 8), (8, 10), (11, 13), (13, 15), (12, 14), (14, 16), (5, 6), (11, 12), (5, 11),
         (6, 12), (0, 5), (0, 6))  # fmt: skip
SEED_SPLIT = {"test_size": 0.2, "random_state": 2022}
SPLIT_RULE = ("CSVs split together: rows linked by label and image name or near-copy hashes stay on one side; the "
              "first CSV's split (seed rows, or by content where it has hashes) decides, later CSVs' other rows "
              "are split the same way")  # fmt: skip
NEAR_COPY_BITS = 12  # image hashes (256 bits) this close are one photo resized/re-encoded: one side of a split
NEGATIVE_HOLDOUT = 0.5  # share of each negative source's images kept out of training, for the false-accept figure
MAX_FALSE_ACCEPT = 0.04  # default target: share of validation negatives the chosen threshold still labels
FOLDS = 5  # out-of-fold predictions on the training rows choose the threshold
MODELS = ("mlp", "svc")
OPSET = 17


def _require() -> None:
    for module in ("torch", "sklearn"):
        try:
            __import__(module)
        except ImportError:
            raise MissingExtraError("export", module) from None


def pose_features() -> Any:
    """The in-graph feature step shared by every classifier kind (a torch module)."""
    import torch
    from torch import nn

    first, second = (torch.tensor([limb[i] for limb in LIMBS]) for i in (0, 1))

    class PoseFeatures(nn.Module):
        """Keypoints relative to the centre of the present points, divided by their RMS spread;
        missing points (conf below threshold, or at 0,0) become 0 and are flagged in a mask; then
        the unit direction of each limb whose two ends are present, and a mask of those limbs."""

        def forward(self, kp: torch.Tensor) -> torch.Tensor:
            xy, conf = kp[..., :2], kp[..., 2]
            present = (conf >= CONF_THRESHOLD) & ((xy[..., 0] != 0) | (xy[..., 1] != 0))
            mask = present.to(kp.dtype).unsqueeze(-1)
            count = mask.sum(1).clamp(min=1.0)
            centre = (xy * mask).sum(1) / count
            rel = (xy - centre.unsqueeze(1)) * mask
            scale = torch.sqrt((rel**2).sum((1, 2)) / count[:, 0]).clamp(min=1e-6)
            rel = rel / scale[:, None, None]
            limb = rel[:, second] - rel[:, first]
            both = mask[:, first] * mask[:, second]
            direction = limb / torch.sqrt((limb**2).sum(-1, keepdim=True) + 1e-6) * both
            return torch.cat([rel.flatten(1), mask.flatten(1), direction.flatten(1), both.flatten(1)], 1)

    return PoseFeatures()


def mirror_pair() -> Any:
    """keypoints [N, K, 3] -> [2N, K, 3]: the persons, then the same persons seen in a mirror (as
    ``mirror``). The classes are mirror-symmetric (Tree on either leg), so the graph averages both
    views' probabilities (``finish``): a mirrored person gets exactly the same answer."""
    import torch
    from torch import nn

    flip = torch.tensor(COCO_FLIP_INDEX)

    class MirrorPair(nn.Module):
        def forward(self, kp: torch.Tensor) -> torch.Tensor:
            out = kp[:, flip]
            present = (out[..., 0] != 0) | (out[..., 1] != 0)
            x = torch.where(present, 1 - out[..., 0], torch.zeros_like(out[..., 0]))
            return torch.cat([kp, torch.cat([x.unsqueeze(-1), out[..., 1:]], -1)], 0)

    return MirrorPair()


def finish(num_keypoints: int, rejects: bool) -> Any:
    """The graph's last step: the mean of the two views' probabilities ([2N] -> [N]); for a
    classifier with a "none" column, a person with fewer than ``MIN_BODY`` placed body keypoints
    gets "none" with probability 1 (too little of the body to tell any pose)."""
    import torch
    from torch import nn

    body = slice(2 * num_keypoints + int(BODY[0]), 3 * num_keypoints)  # the body's part of the features' mask

    class Finish(nn.Module):
        def forward(self, features: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
            probs = probs.reshape(2, -1, probs.shape[-1]).mean(0)
            if not rejects:
                return probs
            first = features.reshape(2, -1, features.shape[-1])[0]
            enough = (first[:, body].sum(1, keepdim=True) >= MIN_BODY).to(probs.dtype)
            return torch.cat([probs[:, :-1] * enough, 1 - (1 - probs[:, -1:]) * enough], 1)

    return Finish()


def build_network(num_keypoints: int, num_outputs: int, hidden: int = 256, rejects: bool = False) -> Any:
    """Features (masking + normalisation + limb directions) -> two hidden layers (hidden, hidden/2)
    -> softmax over both mirror views, averaged (``finish``); with ``rejects`` the last output is "none"."""
    import torch
    from torch import nn

    width = num_keypoints * 3 + len(LIMBS) * 3

    class Classifier(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.pair = mirror_pair()
            self.features = pose_features()
            self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(0.2),
                                     nn.Linear(hidden, hidden // 2), nn.ReLU(), nn.Dropout(0.2),
                                     nn.Linear(hidden // 2, num_outputs))  # fmt: skip
            self.finish = finish(num_keypoints, rejects)

        def forward(self, kp: Any) -> Any:
            """Logits of one view while training (the augmentation mirrors); ``probs`` is the graph."""
            return self.mlp(self.features(kp))

        def probs(self, kp: Any) -> Any:
            features = self.features(self.pair(kp))
            return self.finish(features, torch.softmax(self.mlp(features), 1))

    return Classifier()


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


class MlpModel:
    """The trained network; its whole forward pass (features and gate included) exports from torch."""

    kind = "mlp"

    def __init__(self, net: Any, settings: dict[str, Any]) -> None:
        self.net, self.settings = net, settings

    def probs(self, kpts: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self.net.probs(torch.from_numpy(np.ascontiguousarray(kpts, dtype=np.float32))).numpy()

    def to_onnx(self) -> Any:
        import torch

        class Probs(torch.nn.Module):
            def __init__(self, net: Any) -> None:
                super().__init__()
                self.net = net

            def forward(self, keypoints: Any) -> Any:
                return self.net.probs(keypoints)

        return _torch_to_onnx(Probs(self.net).eval(), {"keypoints": (2, len(COCO_KEYPOINTS), 3)}, "probs")


class SvcModel:
    """sklearn SVCs on the same in-graph features: the mirror pair and features, and the finishing
    step, export from torch, the SVCs from skl2onnx, and the graphs are joined with onnx.compose.

    With negatives there are two: the poses' SVC (trained on the poses alone) and a known-vs-none
    SVC, joined as P(pose) = P(pose | known) x P(known). One SVC over the poses and "none" was
    measured first: its sigmoid-calibrated "none" probability bunched most persons' known-pose score
    near 0.9, so the threshold that stops passers-by rejected 13 of the seed's 202 test rows."""

    kind = "svc"

    def __init__(self, svc: Any, settings: dict[str, Any], known: Any = None) -> None:
        from torch import nn

        self.svc, self.known, self.settings = svc, known, settings
        self.features = pose_features().eval()
        self.paired = nn.Sequential(mirror_pair(), self.features).eval()
        self.end = _svc_end(len(COCO_KEYPOINTS), known is not None).eval()

    def probs(self, kpts: np.ndarray) -> np.ndarray:
        import torch

        features = _features(self.paired, kpts)
        scores = [torch.from_numpy(m.predict_proba(features).astype(np.float32)) for m in self._svcs()]
        with torch.inference_mode():
            return self.end(torch.from_numpy(features), *scores).numpy()

    def _svcs(self) -> list[Any]:
        return [self.svc] + ([self.known] if self.known is not None else [])

    def to_onnx(self) -> Any:
        import onnx
        from skl2onnx import convert_sklearn
        from skl2onnx.common.data_types import FloatTensorType

        merged = _torch_to_onnx(self.paired, {"keypoints": (2, len(COCO_KEYPOINTS), 3)}, "features")
        width = self.svc.n_features_in_
        kept = ["features"]
        for model, prefix in zip(self._svcs(), ("svc_", "known_")):
            with warnings.catch_warnings():  # skl2onnx reads SVC attributes sklearn 1.9 marks as deprecated
                warnings.simplefilter("ignore", FutureWarning)
                graph = convert_sklearn(model, initial_types=[("features", FloatTensorType([None, width]))],
                                        options={id(model): {"zipmap": False}},
                                        target_opset={"": OPSET, "ai.onnx.ml": 3})  # fmt: skip
            graph = onnx.version_converter.convert_version(graph, OPSET)  # skl2onnx picks the lowest opset that works
            graph.ir_version = merged.ir_version
            graph = onnx.compose.add_prefix(graph, prefix)
            kept.append(f"{prefix}probabilities")
            merged = onnx.compose.merge_models(merged, graph, io_map=[("features", f"{prefix}features")], outputs=kept)
        shapes = {"features": (4, width), "scores": (4, len(self.svc.classes_))}
        if self.known is not None:
            shapes["known"] = (4, 2)
        end = _torch_to_onnx(self.end, shapes, "probs")
        end.ir_version = merged.ir_version
        end = onnx.compose.add_prefix(end, "end_")
        wanted = {i.name for i in end.graph.input}  # without "none" the finishing step takes no features
        io_map = [(a, b) for a, b in zip(kept, ("end_features", "end_scores", "end_known")) if b in wanted]
        merged = onnx.compose.merge_models(merged, end, outputs=["end_probs"], io_map=io_map)
        for node in merged.graph.node:
            node.output[:] = ["probs" if o == "end_probs" else o for o in node.output]
        merged.graph.output[0].name = "probs"
        return merged


def _svc_end(num_keypoints: int, two_stage: bool) -> Any:
    """The SVC graph's last step: with a known-vs-none SVC, the joint [P(pose) x P(known), P(none)]
    (its classes are 0: none, 1: known), then ``finish``."""
    import torch
    from torch import nn

    done = finish(num_keypoints, two_stage)

    class End(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.finish = done

        def forward(self, features: torch.Tensor, scores: torch.Tensor, *known: torch.Tensor) -> torch.Tensor:
            if known:
                scores = torch.cat([scores * known[0][:, 1:], known[0][:, :1]], 1)
            return self.finish(features, scores)

    return End()


def _torch_to_onnx(module: Any, inputs: dict[str, tuple[int, ...]], output: str) -> Any:
    """Export a module with a dynamic batch (first axis of every input and the output), in memory."""
    import io

    import onnx
    import torch

    buffer = io.BytesIO()
    dummies = tuple(torch.zeros(*shape) for shape in inputs.values())
    axes = {name: {0: f"{name}_rows"} for name in [*inputs, output]}  # features of a mirror pair have 2N rows
    torch.onnx.export(module, dummies, buffer, input_names=list(inputs), output_names=[output],
                      dynamic_axes=axes, opset_version=OPSET, dynamo=False)  # fmt: skip
    return onnx.load_from_string(buffer.getvalue())


def _features(module: Any, kpts: np.ndarray) -> np.ndarray:
    import torch

    with torch.inference_mode():
        return module(torch.from_numpy(np.ascontiguousarray(kpts, dtype=np.float32))).numpy()


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


def train_svc(x: np.ndarray, y: np.ndarray, seed: int, c: float = 30.0, rejects: bool = False) -> SvcModel:
    """RBF SVC with balanced class weights and sigmoid-calibrated probabilities (5-fold), on the
    in-graph features of the training rows plus augmented copies (SVCs see the data once, so the
    augmentation is drawn up front). With ``rejects`` (the last class is "none"), the poses' SVC
    learns the poses alone and a second one known against none (``SvcModel``)."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.svm import SVC

    def calibrated() -> Any:
        return CalibratedClassifierCV(SVC(C=c, gamma="scale", class_weight="balanced"), method="sigmoid", cv=5,
                                      ensemble=False)  # fmt: skip

    rng = np.random.default_rng(seed)
    xa = np.concatenate([x] + [_augment(x, rng) for _ in range(SVC_COPIES)])
    ya = np.tile(y, SVC_COPIES + 1)
    features = _features(pose_features().eval(), xa)
    settings = {"C": c, "gamma": "scale", "augmented_copies": SVC_COPIES, "seed": seed}
    if not rejects:
        return SvcModel(calibrated().fit(features, ya), settings)
    pose = ya != ya.max()  # "none" is the last class
    known = calibrated().fit(features, pose.astype(int))
    return SvcModel(calibrated().fit(features[pose], ya[pose]), {**settings, "known_vs_none": True}, known)


def write_graph(graph: Any, path: Path, classes: list[str], report: dict[str, Any], source: dict[str, Any],
                reject: dict[str, Any] | None = None) -> None:  # fmt: skip
    """Give a classifier graph its metadata, check it with onnx and write it."""
    import onnx

    meta = {
        "task": CLASSIFIER_TASK,
        "names": classes,
        "keypoint_names": list(COCO_KEYPOINTS),
        "input_contract": "keypoints float32 [N,17,3]: x/width, y/height, conf (1 if placed and no conf known)",
        "conf_threshold": CONF_THRESHOLD,
        "report": report,
        "source": source,
        "edgepose_version": __version__,
    }
    if reject is not None:  # the output has a last "none" column; a pose is known when 1 - none >= threshold
        meta["reject"] = reject
    set_metadata(graph, {key: json.dumps(value) for key, value in meta.items()})
    onnx.checker.check_model(graph, full_check=True)
    onnx.save(graph, str(path))


def split_sources(
    tables: list[KeypointTable], classes: list[str]
) -> tuple[list[tuple[np.ndarray, np.ndarray]], np.ndarray]:
    """Per positives CSV: (train rows, scored held-out rows); and a group id for every row (all CSVs
    in order), for grouped validation folds.

    The CSVs may hold the same photos (the seed CSV and yoga-train do: one photo, two extractors),
    so they are split together. Rows are linked when they share label and image name, or when
    their photos are near copies (image hashes); a linked group is on one side. The first CSV's own
    split (``split_rows``) decides the groups it touches and is its scored hold-out exactly (the
    seed's 202 rows); each later CSV's rows in groups no earlier CSV decided are split the same way.
    A CSV's scored rows are its rows in held-out groups; no row of a held-out group is trained on."""
    starts = np.cumsum([0] + [len(t.labels) for t in tables])
    groups = _link_rows(tables)
    held = np.zeros(starts[-1], bool)
    decided: set[int] = set()
    first_test = np.zeros(0, int)
    for i, table in enumerate(tables):
        rows = np.arange(starts[i], starts[i + 1])
        free = np.array([r for r in rows if groups[r] not in decided], int)
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


def _subset(table: KeypointTable, rows: np.ndarray) -> KeypointTable:
    return KeypointTable([table.image_names[i] for i in rows], [table.labels[i] for i in rows], table.keypoints[rows],
                         None if table.image_hashes is None else [table.image_hashes[i] for i in rows])  # fmt: skip


def _link_rows(tables: list[KeypointTable]) -> np.ndarray:
    """Group id per row of all tables: same (label, image name), or near-copy image hashes (union-find)."""
    parent = list(range(sum(len(t.labels) for t in tables)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first: dict[tuple[str, str], int] = {}
    hashed: list[tuple[int, str]] = []
    row = 0
    for table in tables:
        for i, key in enumerate(zip(table.labels, table.image_names)):
            parent[root(row)] = root(first.setdefault(key, row))
            if table.image_hashes is not None:
                hashed.append((row, table.image_hashes[i]))
            row += 1
    if hashed:
        lead: dict[int, int] = {}
        for (row, _), group in zip(hashed, content_groups([h for _, h in hashed])):
            parent[root(row)] = root(lead.setdefault(int(group), row))
    return np.array([root(i) for i in range(len(parent))])


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
    """One group id per row: rows linked by a chain of near-copy hashes share it (union-find over
    the distinct hashes: the persons of one photo share its hash)."""
    unique, inverse = np.unique(hashes, return_inverse=True)
    parent = list(range(len(unique)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in zip(*np.nonzero(hash_distance(list(unique)) <= NEAR_COPY_BITS)):
        parent[root(int(a))] = root(int(b))
    return np.array([root(int(i)) for i in inverse.reshape(-1)])


def split_negatives(table: KeypointTable) -> tuple[np.ndarray, np.ndarray]:
    """Train and held-out row indices of a negatives source, split by image (every person of one
    photo, and its near copies where hashes exist, on one side), ``NEGATIVE_HOLDOUT`` held out."""
    from sklearn.model_selection import GroupShuffleSplit

    splitter = GroupShuffleSplit(n_splits=1, test_size=NEGATIVE_HOLDOUT, random_state=SEED_SPLIT["random_state"])
    return next(splitter.split(table.keypoints, groups=_negative_groups(table)))


def _negative_groups(table: KeypointTable) -> np.ndarray:
    """Group id per negative row: its photo (and the photo's near copies, where hashes exist)."""
    if table.image_hashes:
        return content_groups(table.image_hashes)
    return np.unique(table.image_names, return_inverse=True)[1].reshape(-1)


def read_negatives(source: str | os.PathLike, pose_model: str | os.PathLike | None) -> KeypointTable:
    """People in no class: a keypoint CSV (its labels are ignored), or a folder of photos whose every
    person the pose model finds (score >= 0.25, the runtime's default) becomes a row."""
    source = Path(source)
    if source.is_file():
        return read_table(source)
    if not source.is_dir():
        raise InputError(f"--negatives: no such CSV or folder: {source}")
    from edgepose.predictor import load
    from edgepose.sources import list_images

    pose_model = pose_model or "models/yolo11n-pose.onnx"
    done = table_from_images(load(pose_model), [("none", path) for path in list_images(source)], all_persons=True)
    if done.table is None:
        raise InputError(f"--negatives: no person found in any image under {source}")
    return done.table


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
    return round(threshold, 4), [point(float(t)) for t in np.arange(0.0, 1.0, 0.01)] + [point(threshold)]


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
    parts, row_groups = split_sources(tables, classes)
    splits = [(t.keypoints[train], t.keypoints[test], y[train], y[test]) for t, y, (train, test) in
              zip(tables, labels_of, parts)]  # fmt: skip
    starts = np.cumsum([0] + [len(t.labels) for t in tables])
    x_train = np.concatenate([s[0] for s in splits])
    y_train = np.concatenate([s[2] for s in splits])
    groups = np.concatenate([row_groups[start + train] for start, (train, _) in zip(starts, parts)])
    negative_tables = [read_negatives(src, pose_model) for src in negatives or []]
    rejects = bool(negative_tables)
    none = len(classes)  # the "none" output's index, with negatives
    negative_splits = []
    for table in negative_tables:
        train, held = split_negatives(table)
        negative_splits.append((table.keypoints[train], table.keypoints[held]))
        photo = _negative_groups(table)[train]
        groups = np.concatenate([groups, photo + groups.max() + 1])  # a photo's persons in one fold
    if rejects:
        x_neg = np.concatenate([s[0] for s in negative_splits])
        x_train = np.concatenate([x_train, x_neg])
        y_train = np.concatenate([y_train, np.full(len(x_neg), none)])

    def fit(x: np.ndarray, y: np.ndarray) -> MlpModel | SvcModel:
        if model == "mlp":
            return train_mlp(x, y, len(classes) + rejects, hidden, epochs, seed, rejects)
        return train_svc(x, y, seed, rejects=rejects)

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
                                   "false_accept": round(float((labels(held) != none).mean()), 4)},
        }  # fmt: skip
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    staged = out / f".{name}.partial.onnx"  # hidden, and still a name the runtime loads (.onnx)
    headline = {k: getattr(report, k) for k in ("accuracy", "accuracy_two_missing", "accuracy_mirrored", "test_rows")}
    if rejects:
        headline["false_accept_held_out"] = report.rejection["held_out_negatives"]["false_accept"]
    source = {"csv": [p.name for p in csv_paths], "csv_sha256": [sha256_file(p) for p in csv_paths],
              "negatives": [Path(s).name for s in negatives or []]}  # fmt: skip
    try:
        write_graph(trained.to_onnx(), staged, classes, {"model": model, **headline}, source, reject)
        agreement = _check_agreement(trained, staged, np.concatenate([t.keypoints for t in tables]))
        os.replace(staged, out / f"{name}.onnx")
        write_checksum(out / f"{name}.onnx")  # <name>.onnx.sha256: what `--verify` checks the graph against
    finally:
        staged.unlink(missing_ok=True)
    report.extra["onnx_vs_trained"] = agreement
    report.seconds = round(time.perf_counter() - start, 1)
    from edgepose.outputs import write_json

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
