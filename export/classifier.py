"""Train the keypoint classifier and export it as a self-contained ONNX graph.

The graph's contract: input ``keypoints`` float32 [N, K, 3] (x, y normalised by image width and
height, keypoint confidence), output ``probs`` float32 [N, C]. Missing-keypoint masking and the
position/size normalisation are operations inside the graph, so the runtime only feeds keypoints.
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
from edgepose.keypoint_csv import KeypointTable, read_table
from edgepose.keypoints import COCO_FLIP_INDEX, COCO_KEYPOINTS
from edgepose.metadata import sha256_file

from .pose import set_metadata

CONF_THRESHOLD = 0.5  # below this a keypoint counts as missing, as Ultralytics' xyn zeroes it
BODY = np.arange(5, 17)  # shoulders to ankles: the points drop-out removes
SEED_SPLIT = {"test_size": 0.2, "random_state": 2022}
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

    class PoseFeatures(nn.Module):
        """Keypoints relative to the centre of the present points, divided by their RMS spread;
        missing points (conf below threshold, or at 0,0) become 0 and are flagged in a mask."""

        def forward(self, kp: torch.Tensor) -> torch.Tensor:
            xy, conf = kp[..., :2], kp[..., 2]
            present = (conf >= CONF_THRESHOLD) & ((xy[..., 0] != 0) | (xy[..., 1] != 0))
            mask = present.to(kp.dtype).unsqueeze(-1)
            count = mask.sum(1).clamp(min=1.0)
            centre = (xy * mask).sum(1) / count
            rel = (xy - centre.unsqueeze(1)) * mask
            scale = torch.sqrt((rel**2).sum((1, 2)) / count[:, 0]).clamp(min=1e-6)
            return torch.cat([(rel / scale[:, None, None]).flatten(1), mask.flatten(1)], 1)

    return PoseFeatures()


def build_network(num_keypoints: int, num_classes: int, hidden: int = 256) -> Any:
    """Features (masking + normalisation) -> the seed's MLP shape (one hidden layer) -> softmax."""
    from torch import nn

    class Classifier(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = pose_features()
            self.mlp = nn.Sequential(nn.Linear(num_keypoints * 3, hidden), nn.ReLU(), nn.Dropout(0.2),
                                     nn.Linear(hidden, num_classes))  # fmt: skip

        def forward(self, kp: Any) -> Any:
            return self.mlp(self.features(kp))

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
    """Headline figures of a training run, written beside the graph as JSON."""

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
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class MlpModel:
    """The trained network; its whole forward pass (features included) exports from torch."""

    kind = "mlp"

    def __init__(self, net: Any, settings: dict[str, Any]) -> None:
        self.net, self.settings = net, settings

    def probs(self, kpts: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return torch.softmax(self.net(torch.from_numpy(kpts)), 1).numpy()

    def to_onnx(self) -> Any:
        import torch

        class WithSoftmax(torch.nn.Module):
            def __init__(self, net: Any) -> None:
                super().__init__()
                self.net = net

            def forward(self, keypoints: Any) -> Any:
                return torch.softmax(self.net(keypoints), 1)

        return _torch_to_onnx(WithSoftmax(self.net).eval(), "probs")


class SvcModel:
    """An sklearn SVC on the same in-graph features: the features export from torch, the SVC
    from skl2onnx, and the two graphs are joined into one with onnx.compose."""

    kind = "svc"

    def __init__(self, svc: Any, settings: dict[str, Any]) -> None:
        self.svc, self.settings = svc, settings
        self.features = pose_features().eval()

    def probs(self, kpts: np.ndarray) -> np.ndarray:
        return self.svc.predict_proba(_features(self.features, kpts)).astype(np.float32)

    def to_onnx(self) -> Any:
        import onnx
        from skl2onnx import convert_sklearn
        from skl2onnx.common.data_types import FloatTensorType

        features = _torch_to_onnx(self.features, "features")
        width = self.svc.n_features_in_
        with warnings.catch_warnings():  # skl2onnx reads SVC attributes sklearn 1.9 marks as deprecated
            warnings.simplefilter("ignore", FutureWarning)
            svc = convert_sklearn(self.svc, initial_types=[("features", FloatTensorType([None, width]))],
                                  options={id(self.svc): {"zipmap": False}},
                                  target_opset={"": OPSET, "ai.onnx.ml": 3})  # fmt: skip
        svc = onnx.version_converter.convert_version(svc, OPSET)  # skl2onnx picks the lowest opset that works
        svc.ir_version = features.ir_version
        svc = onnx.compose.add_prefix(svc, "svc_")
        merged = onnx.compose.merge_models(features, svc, io_map=[("features", "svc_features")],
                                           outputs=["svc_probabilities"])  # fmt: skip
        for node in merged.graph.node:
            node.output[:] = ["probs" if o == "svc_probabilities" else o for o in node.output]
        merged.graph.output[0].name = "probs"
        return merged


def _torch_to_onnx(module: Any, output: str) -> Any:
    """Export a module taking ``keypoints`` [N, 17, 3] with a dynamic batch, as an in-memory proto."""
    import io

    import onnx
    import torch

    buffer = io.BytesIO()
    dummy = torch.zeros(2, len(COCO_KEYPOINTS), 3)
    torch.onnx.export(module, (dummy,), buffer, input_names=["keypoints"], output_names=[output],
                      dynamic_axes={"keypoints": {0: "N"}, output: {0: "N"}}, opset_version=OPSET, dynamo=False)  # fmt: skip
    return onnx.load_from_string(buffer.getvalue())


def _features(module: Any, kpts: np.ndarray) -> np.ndarray:
    import torch

    with torch.inference_mode():
        return module(torch.from_numpy(np.ascontiguousarray(kpts, dtype=np.float32))).numpy()


def train_mlp(x: np.ndarray, y: np.ndarray, num_classes: int, hidden: int, epochs: int, seed: int) -> MlpModel:
    """Class-weighted cross-entropy, AdamW with one-cycle LR, fresh augmentation every epoch."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = build_network(x.shape[1], num_classes, hidden)
    batch = 64
    steps = epochs * int(np.ceil(len(y) / batch))
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    weights = torch.tensor(len(y) / (num_classes * np.bincount(y, minlength=num_classes).clip(min=1)),
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


def train_svc(x: np.ndarray, y: np.ndarray, seed: int, c: float = 10.0) -> SvcModel:
    """RBF SVC with balanced class weights and sigmoid-calibrated probabilities (5-fold), on the
    in-graph features of the training rows plus augmented copies (SVCs see the data once, so the
    augmentation is drawn up front)."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.svm import SVC

    rng = np.random.default_rng(seed)
    xa = np.concatenate([x] + [_augment(x, rng) for _ in range(SVC_COPIES)])
    ya = np.tile(y, SVC_COPIES + 1)
    svc = CalibratedClassifierCV(SVC(C=c, gamma="scale", class_weight="balanced"), method="sigmoid", cv=5,
                                 ensemble=False)  # fmt: skip
    model = SvcModel(svc, {"C": c, "gamma": "scale", "augmented_copies": SVC_COPIES, "seed": seed})
    svc.fit(_features(model.features, xa), ya)
    return model


def write_graph(graph: Any, path: Path, classes: list[str], report: dict[str, Any], source: dict[str, Any]) -> None:
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
    set_metadata(graph, {key: json.dumps(value) for key, value in meta.items()})
    onnx.checker.check_model(graph, full_check=True)
    onnx.save(graph, str(path))


def split_table(table: KeypointTable, classes: list[str]) -> tuple[np.ndarray, ...]:
    """The seed's stratified hold-out split (20 %, random_state 2022)."""
    from sklearn.model_selection import train_test_split

    y = np.array([classes.index(label) for label in table.labels])
    return tuple(train_test_split(table.keypoints, y, stratify=y, shuffle=True, **SEED_SPLIT))


def train_classifier(
    csv_path: str | os.PathLike,
    out: str | os.PathLike,
    model: str = "mlp",
    hidden: int = 256,
    epochs: int = 300,
    seed: int = 0,
    name: str = "classifier",
) -> TrainReport:
    """Train on the seed split of a keypoint CSV, report on its hold-out, export ``out/NAME.onnx``."""
    if model not in MODELS:
        raise InputError(f"unknown classifier model '{model}' (choose from {', '.join(MODELS)})")
    _require()
    start = time.perf_counter()
    table = read_table(csv_path)
    classes = sorted(set(table.labels))
    if len(classes) < 2:
        raise InputError(f"{csv_path}: needs at least two labels, found {classes}")
    x_train, x_test, y_train, y_test = split_table(table, classes)
    if model == "mlp":
        trained: MlpModel | SvcModel = train_mlp(x_train, y_train, len(classes), hidden, epochs, seed)
    else:
        trained = train_svc(x_train, y_train, seed)
    rng = np.random.default_rng(seed + 1)

    def accuracy(kpts: np.ndarray) -> float:
        return round(float((trained.probs(kpts).argmax(1) == y_test).mean()), 4)

    pred = trained.probs(x_test).argmax(1)
    per_class, confusion = per_class_report(y_test, pred, classes)
    report = TrainReport(
        model=model, classes=classes, train_rows=len(y_train), test_rows=len(y_test),
        accuracy=accuracy(x_test), accuracy_two_missing=accuracy(drop_keypoints(x_test, 2, rng)),
        accuracy_mirrored=accuracy(mirror(x_test)), per_class=per_class, confusion=confusion,
        split={**SEED_SPLIT, "stratify": True, "shuffle": True}, seconds=0.0,
        extra=dict(trained.settings),
    )  # fmt: skip
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    staged = out / f".{name}.partial.onnx"  # hidden, and still a name the runtime loads (.onnx)
    headline = {k: getattr(report, k) for k in ("accuracy", "accuracy_two_missing", "accuracy_mirrored", "test_rows")}
    source = {"csv": Path(csv_path).name, "csv_sha256": sha256_file(csv_path)}
    try:
        write_graph(trained.to_onnx(), staged, classes, {"model": model, **headline}, source)
        agreement = _check_agreement(trained, staged, table.keypoints)
        os.replace(staged, out / f"{name}.onnx")
        write_checksum(out / f"{name}.onnx")  # <name>.onnx.sha256: what `--verify` checks the graph against
    finally:
        staged.unlink(missing_ok=True)
    report.extra["onnx_vs_trained"] = agreement
    report.seconds = round(time.perf_counter() - start, 1)
    from edgepose.outputs import write_json

    write_json(out / f"{name}.report.json", report.to_dict())
    return report


def _check_agreement(trained: MlpModel | SvcModel, path: Path, kpts: np.ndarray) -> dict[str, Any]:
    """The graph must give the trained model's argmax on every row and probabilities within 1e-4."""
    from edgepose.classifier import KeypointClassifier

    ref = trained.probs(kpts)
    got = KeypointClassifier(path).probs(kpts)
    result = {"rows": len(kpts), "argmax_equal": bool((ref.argmax(1) == got.argmax(1)).all()),
              "max_abs_prob": float(np.abs(ref - got).max())}  # fmt: skip
    if not result["argmax_equal"] or result["max_abs_prob"] > 1e-4:
        raise ExportError(f"classifier graph disagrees with the trained network: {result}")
    return result
