"""Ultralytics pose checkpoint -> ONNX graph with edgepose metadata, checked against PyTorch.

Ultralytics' own exporter builds the graph (it knows its heads); edgepose then adds its metadata,
validates the graph with onnx's checker and measures how far its outputs are from the PyTorch
model's on a real photo. The file appears in ``out`` only when all of that passed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgepose import __version__
from edgepose.errors import ExportError, InputError, MissingExtraError, first_line
from edgepose.integrity import write_checksum
from edgepose.metadata import ModelMeta, sha256_file
from edgepose.outputs import output_folder
from edgepose.postprocess import HEAD_FORMS, declared_form, decode
from edgepose.preprocess import letterbox_tensor
from edgepose.sources import read_image, sample_images

from .graph_edits import gather_nd_topk, last_axis_dfl, set_metadata
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


def has_one_to_one_head(model: Any) -> bool:
    """Whether a checkpoint carries a one-to-one (NMS-free) head, as YOLO26 does."""
    return getattr(model.model[-1], "one2one_cv2", None) is not None


def default_head(model: Any) -> str:
    """``nms-free`` where the model was trained with a one-to-one head (YOLO26): its own answer,
    no NMS, a fixed-size output; ``raw`` otherwise (YOLOv8/YOLO11: edgepose's NMS, which follows
    ``--conf``/``--iou`` at run time, unlike NMS baked into the graph)."""
    return "nms-free" if has_one_to_one_head(model) else "raw"


def torch_reference(model: Any, tensor: np.ndarray, form: str, nms: dict[str, float]) -> np.ndarray:
    """What the graph of head form ``form`` must output, computed by the PyTorch model: its raw
    head, its one-to-one head's top-k rows, or (embedded NMS) its raw head through edgepose's NMS
    at the conf and IoU baked into the graph, as rows."""
    import copy

    model = copy.deepcopy(model).eval()  # the model as trained, before export fuses layers
    if hasattr(model, "end2end"):
        model.end2end = form == "nms-free"
    head = _torch_head(model, tensor)
    if form != "embedded-nms":
        return head
    nc, kpt_shape = len(model.names), tuple(model.model[-1].kpt_shape)
    det = decode(head, nc, kpt_shape, nms["conf"], nms["iou"], int(nms["max_det"]))
    rows = np.concatenate([det.boxes, det.scores[:, None], det.classes[:, None].astype(np.float32),
                           det.keypoints.reshape(len(det), -1)], axis=1)  # fmt: skip
    return rows[None].astype(np.float32)


def parity_input(imgsz: int | tuple[int, int], dynamic: bool, stride: int) -> tuple[np.ndarray, str]:
    """The network input of the parity check: a bundled real photo, letterboxed by the runtime's own
    code to ``imgsz`` (a side, or a static graph's (height, width))."""
    image_path = sample_images()[0]
    shape = (imgsz, imgsz) if isinstance(imgsz, int) else tuple(imgsz)
    tensor, _ = letterbox_tensor(read_image(image_path), shape, stride=stride, auto=dynamic)
    return tensor, image_path.name


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


def rows_drift(got: np.ndarray, reference: np.ndarray, kpt_dims: int) -> dict[str, Any]:
    """Max/mean absolute difference between two post-NMS outputs [1, max_det, 6 + K*D].

    Each detection of either output scoring above 0.01 (the best 200 at most: the top-k's tail can
    swap in and out on near ties) is paired with the other output's row whose box is nearest, so a
    detection only one side has shows as drift; paired boxes and keypoints are compared in input
    pixels, their scores as probabilities."""
    got, ref = got[0], reference[0]
    if got.shape[-1] != ref.shape[-1]:
        raise ExportError(f"exported graph's output {got.shape} differs from its source's {ref.shape}")
    k = (ref.shape[-1] - 6) // kpt_dims
    coords, scores, classes_equal, compared = [], [], True, 0
    for rows, other in ((ref, got), (got, ref)):
        rows = rows[np.argsort(-rows[:, 4], kind="stable")][:200]
        rows = rows[rows[:, 4] > 0.01]
        if not len(rows):
            continue
        compared = compared or len(rows)  # the reference's count, where it has any
        pair = other[np.abs(rows[:, None, :4] - other[None, :, :4]).sum(-1).argmin(1)]
        kpts, kpts_pair = rows[:, 6:].reshape(-1, k, kpt_dims), pair[:, 6:].reshape(-1, k, kpt_dims)
        coords += [np.abs(rows[:, :4] - pair[:, :4]).ravel(), np.abs(kpts[..., :2] - kpts_pair[..., :2]).ravel()]
        scores.append(np.abs(rows[:, 4] - pair[:, 4]))
        if kpt_dims == 3:
            scores.append(np.abs(kpts[..., 2] - kpts_pair[..., 2]).ravel())
        classes_equal = classes_equal and bool((rows[:, 5] == pair[:, 5]).all())
    if not coords:
        return {"detections_compared": 0, "coord_max_abs_px": 0.0, "coord_mean_abs_px": 0.0, "score_max_abs": 0.0}
    coord, score = np.concatenate(coords), np.concatenate(scores)
    return {
        "detections_compared": int(compared),
        "classes_equal": classes_equal,
        "coord_max_abs_px": float(coord.max()),
        "coord_mean_abs_px": float(coord.mean()),
        "score_max_abs": float(score.max()),
    }


def graph_drift(got: np.ndarray, reference: np.ndarray, meta: ModelMeta) -> dict[str, Any]:
    """Drift between two outputs of one pose graph's head form: per anchor (raw) or per detection."""
    if declared_form(meta) == "raw":
        return head_drift(got, reference, meta.kpt_shape[1], len(meta.names))
    return rows_drift(got, reference, meta.kpt_shape[1])


def run_onnx(path: Path, tensor: np.ndarray) -> np.ndarray:
    """The graph's first output for one tensor, on onnxruntime's CPU provider."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: tensor})[0]


def keep_download(path: Path, scratch: Path, out: Path) -> Path:
    """A checkpoint downloaded into ``scratch`` (deleted after the export) moves beside the graph in
    ``out``, so the report's source exists; where ``out`` has a file of that name, the name alone is
    reported. Any other checkpoint is returned as it is."""
    if path.parent.resolve() != scratch.resolve():
        return path
    kept = out / path.name
    return Path(shutil.move(path, kept)) if not kept.exists() else Path(path.name)


def export_pose(
    weights: str | os.PathLike | None = None,
    imgsz: int = 640,
    dynamic: bool = False,
    opset: int | None = None,
    out: str | os.PathLike = "models",
    head: str | None = None,
) -> ExportReport:
    """Export a pose checkpoint to ONNX and return the report; raises ``ExportError`` if it does not hold up.

    ``head`` is the graph's head form (``HEAD_FORMS``); None picks the family's default
    (``default_head``)."""
    if imgsz < 32 or imgsz % 32:
        raise ExportError(f"imgsz must be a positive multiple of 32, got {imgsz}")
    if head is not None and head not in HEAD_FORMS:
        raise ExportError(f"unknown head form '{head}' (choose from {', '.join(HEAD_FORMS)})")
    _require_export_extra()
    import onnx
    from torch.onnx import _constants as onnx_constants

    from .reference import repair_torchvision

    # Ultralytics exports with torch's TorchScript exporter: outside its opsets, torch fails after
    # printing its whole IR graph on stdout
    low, high = onnx_constants.ONNX_MIN_OPSET, onnx_constants.ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET
    if opset is not None and not low <= opset <= high:
        raise InputError(f"opset must be between {low} and {high} (torch's ONNX exporter), got {opset}")
    repair_torchvision()  # embedded NMS traces torchvision.ops.nms, which CPU torch's torchvision cannot load
    from ultralytics import YOLO
    from ultralytics.utils import LOGGER

    LOGGER.setLevel(logging.WARNING)  # edgepose prints its own one-line summary

    start = time.perf_counter()
    out = Path(out)
    with output_folder(out):  # a failed export removes the folder it made, left empty
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
            stride = int(max(yolo.model.stride))
            if imgsz % stride:
                raise ExportError(f"imgsz must be a multiple of {source.name}'s stride {stride}, got {imgsz}")
            form = head or default_head(yolo.model)
            if form == "nms-free" and not has_one_to_one_head(yolo.model):
                raise ExportError(
                    f"{source.name} has no one-to-one head (YOLO26 has one): use --head raw or embedded-nms"
                )
            nms = {
                "conf": 0.25,
                "iou": 0.7,
                "max_det": 300,
            }  # embedded NMS: Ultralytics' defaults, baked into the graph
            tensor, parity_image = parity_input(imgsz, dynamic, stride)
            reference = torch_reference(yolo.model, tensor, form, nms)
            try:  # stdout is for --json - (a failing torch export prints its IR graph there)
                with contextlib.redirect_stdout(sys.stderr):
                    exported = Path(yolo.export(format="onnx", imgsz=imgsz, dynamic=dynamic, opset=opset, simplify=True,
                                                device="cpu", nms={"raw": None, "nms-free": False, "embedded-nms": True}[form],
                                                **(nms if form == "embedded-nms" else {})))  # fmt: skip
            except Exception as exc:
                raise ExportError(f"Ultralytics' ONNX export failed: {first_line(exc)}") from None

            graph = onnx.load(str(exported))
            dfl_rewritten = last_axis_dfl(graph)
            gathers_rewritten = gather_nd_topk(graph)
            if dfl_rewritten or gathers_rewritten:
                onnx.save(graph, str(exported))  # the parity check below runs the rewritten graph
            meta = {p.key: p.value for p in graph.metadata_props}
            meta["head_form"] = json.dumps(form)
            parsed = ModelMeta.parse(meta, source=str(exported))
            settings = {"format": "onnx", "imgsz": imgsz, "dynamic": dynamic, "opset": graph.opset_import[0].version,
                        "simplify": True, "batch": 1, "head_form": form,
                        "dfl_softmax": "last axis" if dfl_rewritten else "as exported",
                        **({"topk_gather": "GatherND"} if gathers_rewritten else {}),
                        **({f"nms_{k}": v for k, v in nms.items()} if form == "embedded-nms" else {})}  # fmt: skip
            fidelity = {
                "image": parity_image,
                "input_shape": list(tensor.shape),
                **graph_drift(run_onnx(exported, tensor), reference, parsed),
            }
            if fidelity["coord_max_abs_px"] > MAX_COORD_DRIFT_PX or fidelity["score_max_abs"] > MAX_SCORE_DRIFT:
                raise ExportError(f"exported graph drifts from PyTorch beyond tolerance: {json.dumps(fidelity)}")
            ours = {
                "head_form": form,
                "keypoint_names": list(
                    parsed.keypoint_names
                ),  # the checkpoint's own names (Ultralytics' kpt_names) first
                "skeleton": [list(e) for e in parsed.skeleton],
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
            source = keep_download(source, work, out)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return ExportReport(
        path=str(final), sha256=sha256_file(final), source=str(source), source_sha256=source_sha,
        settings=settings, fidelity=fidelity, seconds=round(time.perf_counter() - start, 2), metadata=meta,
    )  # fmt: skip
