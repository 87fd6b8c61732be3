"""The keypoint classifier as a graph: in-graph features, the networks, and their ONNX export.

The graph's contract: input ``keypoints`` float32 [N, K, 3] (x, y normalised by image width and
height, keypoint confidence), output ``probs`` float32 [N, C] — or [N, C + 1] for a classifier
trained with negatives, whose last column is the probability of "none of these" and whose
metadata ``reject`` holds the threshold the runtime compares ``1 - probs[:, C]`` with.
Missing-keypoint masking, the position/size normalisation, the mirror averaging and the rule that
a person with too few body keypoints holds no known pose are operations inside the graph, so the
runtime only feeds keypoints.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from edgepose import __version__
from edgepose.classifier import CLASSIFIER_TASK
from edgepose.keypoints import COCO_FLIP_INDEX, COCO_KEYPOINTS

from .graph_edits import set_metadata

CONF_THRESHOLD = 0.5  # below this a keypoint counts as missing, as Ultralytics' xyn zeroes it
BODY = np.arange(5, 17)  # shoulders to ankles: the points drop-out removes
MIN_BODY = 4  # a person with fewer placed body keypoints holds no known pose (classifiers with negatives)
# Limb segments whose directions the features carry beside the positions: the joint angles that tell a
# yoga pose from a stance are then one layer away, not a function the network must build from coordinates.
LIMBS = ((5, 7), (7, 9), (6, 8), (8, 10), (11, 13), (13, 15), (12, 14), (14, 16), (5, 6), (11, 12), (5, 11),
         (6, 12), (0, 5), (0, 6))  # fmt: skip
OPSET = 17


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

        features = features_of(self.paired, kpts)
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


def features_of(module: Any, kpts: np.ndarray) -> np.ndarray:
    import torch

    with torch.inference_mode():
        return module(torch.from_numpy(np.ascontiguousarray(kpts, dtype=np.float32))).numpy()


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
