"""Ultralytics pose checkpoint -> ONNX graph with edgepose metadata, checked against PyTorch.

Ultralytics' own exporter builds the graph (it knows its heads); edgepose then adds its metadata,
validates the graph with onnx's checker and measures how far its outputs are from the PyTorch
model's on a real photo. The file appears in ``out`` only when all of that passed.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgepose import __version__
from edgepose.errors import ExportError, MissingExtraError, first_line
from edgepose.integrity import write_checksum
from edgepose.keypoints import COCO_KEYPOINTS, COCO_SKELETON
from edgepose.metadata import sha256_file
from edgepose.preprocess import letterbox_tensor
from edgepose.sources import read_image, sample_images

from .weights import resolve_weights

# Largest differences accepted between the graph and PyTorch on the parity image.
MAX_COORD_DRIFT_PX = 0.05
MAX_SCORE_DRIFT = 1e-3


@dataclass
class ExportReport:
    """What an export wrote and how closely it reproduces its source."""

    path: str
    sha256: str
    source: str
    source_sha256: str
    settings: dict[str, Any]
    fidelity: dict[str, Any]
    seconds: float
    metadata: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _require_export_extra() -> None:
    for module in ("torch", "ultralytics", "onnx"):
        try:
            __import__(module)
        except ImportError:
            raise MissingExtraError("export", module) from None


def _torch_head(model: Any, tensor: np.ndarray) -> np.ndarray:
    """The PyTorch model's raw head output for one NCHW tensor."""
    import torch

    with torch.inference_mode():
        out = model(torch.from_numpy(tensor))
    out = out[0] if isinstance(out, (list, tuple)) else out
    return out.detach().cpu().numpy()


def parity_input(imgsz: int, dynamic: bool, stride: int) -> tuple[np.ndarray, str]:
    """The network input of the parity check: a bundled real photo, letterboxed by the runtime's own code."""
    image_path = sample_images()[0]
    tensor, _ = letterbox_tensor(read_image(image_path), (imgsz, imgsz), stride=stride, auto=dynamic)
    return tensor, image_path.name


def set_metadata(model: Any, props: dict[str, str]) -> None:
    """Replace an ONNX model's ``metadata_props`` (string values; edgepose's are JSON-encoded)."""
    del model.metadata_props[:]
    for key, value in props.items():
        model.metadata_props.add(key=key, value=value)


def last_axis_dfl(model: Any) -> bool:
    """Rewrite the head's DFL (distribution focal loss decode) so its softmax runs over the last axis.

    Ultralytics exports DFL as Transpose(0,2,1,3) -> Softmax(axis=1) over 16 bins -> a 1x1 Conv
    with the bin indices as weights. onnxruntime runs a softmax on a middle axis slowly: 5.6 ms of
    a ~50 ms forward pass at 640. Transposing the other way, softmax on the last axis and a MatMul
    with the same weights as a column give the same numbers (bit for bit on onnxruntime's CPU
    provider, 1.2 ms). Returns whether the pattern was found (a head without DFL is left alone)."""
    from onnx import helper, numpy_helper

    graph = model.graph
    producer = {out: node for node in graph.node for out in node.output}
    users: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            users.setdefault(name, []).append(node)
    weights = {init.name: init for init in graph.initializer}

    def attribute(node: Any, name: str) -> Any:
        return next((helper.get_attribute_value(a) for a in node.attribute if a.name == name), None)

    for softmax in graph.node:
        transpose = producer.get(softmax.input[0]) if softmax.op_type == "Softmax" else None
        after = users.get(softmax.output[0], [])
        if transpose is None or transpose.op_type != "Transpose" or len(after) != 1 or after[0].op_type != "Conv":
            continue
        conv = after[0]
        if list(attribute(transpose, "perm") or []) != [0, 2, 1, 3] or attribute(softmax, "axis") != 1:
            continue
        if len(users[transpose.output[0]]) != 1 or len(conv.input) != 2 or conv.input[1] not in weights:
            continue
        weight = numpy_helper.to_array(weights[conv.input[1]])
        if weight.ndim != 4 or weight.shape[0] != 1 or weight.shape[2:] != (1, 1):
            continue
        for a in transpose.attribute:
            if a.name == "perm":
                a.CopyFrom(helper.make_attribute("perm", [0, 1, 3, 2]))
        for a in softmax.attribute:
            if a.name == "axis":
                a.CopyFrom(helper.make_attribute("axis", -1))
        column = f"{conv.input[1]}_column"
        graph.initializer.append(numpy_helper.from_array(weight.reshape(-1, 1), column))
        matmul = helper.make_node("MatMul", [softmax.output[0], column], list(conv.output),
                                  name=conv.name.rsplit("/", 2)[0] + "/MatMul")  # fmt: skip
        graph.node.insert(list(graph.node).index(conv), matmul)
        graph.node.remove(conv)
        if not any(conv.input[1] in node.input for node in graph.node):
            graph.initializer.remove(weights[conv.input[1]])
        changed = {transpose.output[0], softmax.output[0], *conv.output}  # their shapes changed: drop the stale ones
        for info in [v for v in graph.value_info if v.name in changed]:
            graph.value_info.remove(info)
        return True
    return False


def head_drift(got: np.ndarray, reference: np.ndarray, kpt_dims: int, nc: int) -> dict[str, Any]:
    """Max/mean absolute difference between two raw pose-head outputs [1, C, anchors].

    Compared in the head's own units: box and keypoint coordinates in input pixels, scores as
    probabilities; coordinates count only for anchors the reference scores above 0.01, since the
    rest never become detections.
    """
    got, ref = got[0], reference[0]
    if got.shape != ref.shape:
        raise ExportError(f"exported graph's output {got.shape} differs from its source's {ref.shape}")
    live = ref[4 : 4 + nc].max(0) > 0.01
    kpts_ref = ref[4 + nc :].reshape(-1, kpt_dims, ref.shape[-1])
    kpts_got = got[4 + nc :].reshape(-1, kpt_dims, ref.shape[-1])
    coord = np.concatenate(
        [np.abs(ref[:4] - got[:4])[:, live].ravel(), np.abs(kpts_ref[:, :2] - kpts_got[:, :2])[..., live].ravel()]
    )
    score = np.abs(ref[4 : 4 + nc] - got[4 : 4 + nc]).ravel()
    if kpt_dims == 3:
        score = np.concatenate([score, np.abs(kpts_ref[:, 2] - kpts_got[:, 2]).ravel()])
    return {
        "anchors_compared": int(live.sum()),
        "coord_max_abs_px": float(coord.max()) if coord.size else 0.0,
        "coord_mean_abs_px": float(coord.mean()) if coord.size else 0.0,
        "score_max_abs": float(score.max()),
    }


def run_onnx(path: Path, tensor: np.ndarray) -> np.ndarray:
    """The graph's first output for one tensor, on onnxruntime's CPU provider."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: tensor})[0]


def export_pose(
    weights: str | os.PathLike | None = None,
    imgsz: int = 640,
    dynamic: bool = False,
    opset: int | None = None,
    out: str | os.PathLike = "models",
) -> ExportReport:
    """Export a pose checkpoint to ONNX and return the report; raises ``ExportError`` if it does not hold up."""
    if imgsz < 32 or imgsz % 32:
        raise ExportError(f"imgsz must be a positive multiple of 32, got {imgsz}")
    _require_export_extra()
    import onnx
    from ultralytics import YOLO
    from ultralytics.utils import LOGGER

    LOGGER.setLevel(logging.WARNING)  # edgepose prints its own one-line summary

    start = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".edgepose-export-", dir=out))  # same filesystem: rename is atomic
    try:
        source = resolve_weights(weights, download_dir=work)
        source_sha = sha256_file(source)
        local = work / source.name
        if source.resolve() != local.resolve():
            shutil.copy2(source, local)  # Ultralytics writes beside the checkpoint: keep that in our tmp dir
        try:
            yolo = YOLO(str(local))
        except Exception as exc:  # torch.load / Ultralytics raise many types for a bad checkpoint
            raise ExportError(f"{source} is not an Ultralytics checkpoint: {first_line(exc)}") from None
        if yolo.task != "pose":
            raise ExportError(f"{source} is a '{yolo.task}' model, not a pose model")
        tensor, parity_image = parity_input(imgsz, dynamic, int(max(yolo.model.stride)))
        reference = _torch_head(yolo.model.eval(), tensor)  # before export fuses layers: the model as trained
        try:
            exported = Path(
                yolo.export(format="onnx", imgsz=imgsz, dynamic=dynamic, opset=opset, simplify=True, device="cpu")
            )
        except Exception as exc:
            raise ExportError(f"Ultralytics' ONNX export failed: {first_line(exc)}") from None

        graph = onnx.load(str(exported))
        dfl_rewritten = last_axis_dfl(graph)
        if dfl_rewritten:
            onnx.save(graph, str(exported))  # the parity check below runs the rewritten graph
        meta = {p.key: p.value for p in graph.metadata_props}
        kpt_shape = json.loads(meta.get("kpt_shape", "[17, 3]"))
        coco = kpt_shape[0] == len(COCO_KEYPOINTS)
        settings = {"format": "onnx", "imgsz": imgsz, "dynamic": dynamic, "opset": graph.opset_import[0].version,
                    "simplify": True, "batch": 1,
                    "dfl_softmax": "last axis" if dfl_rewritten else "as exported"}  # fmt: skip
        fidelity = {
            "image": parity_image,
            "input_shape": list(tensor.shape),
            **head_drift(run_onnx(exported, tensor), reference, kpt_shape[1], len(yolo.names)),
        }
        if fidelity["coord_max_abs_px"] > MAX_COORD_DRIFT_PX or fidelity["score_max_abs"] > MAX_SCORE_DRIFT:
            raise ExportError(f"exported graph drifts from PyTorch beyond tolerance: {json.dumps(fidelity)}")
        ours = {
            "keypoint_names": list(COCO_KEYPOINTS) if coco else [f"kpt_{i}" for i in range(kpt_shape[0])],
            "skeleton": [list(e) for e in COCO_SKELETON] if coco else [],
            "source_file": source.name,
            "source_sha256": source_sha,
            "export_settings": settings,
            "edgepose_version": __version__,
            "fidelity": fidelity,
        }
        for key, value in ours.items():
            meta[key] = json.dumps(value)
        set_metadata(graph, meta)
        try:
            onnx.checker.check_model(graph, full_check=True)
        except onnx.checker.ValidationError as exc:
            raise ExportError(f"onnx checker rejected the graph: {first_line(exc)}") from None
        staged = work / f"{source.stem}.onnx.partial"
        onnx.save(graph, str(staged))
        final = out / f"{source.stem}.onnx"
        os.replace(staged, final)
        write_checksum(final)  # <graph>.onnx.sha256: what `--verify` checks the graph against
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return ExportReport(
        path=str(final), sha256=sha256_file(final), source=str(source), source_sha256=source_sha,
        settings=settings, fidelity=fidelity, seconds=round(time.perf_counter() - start, 2), metadata=meta,
    )  # fmt: skip
