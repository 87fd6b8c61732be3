"""INT8 pose graphs from real calibration images: ONNX (onnxruntime.quantization, static QDQ) and
OpenVINO IR (NNCF post-training quantisation).

What stays in float (``keep_float``), measured by ``benchmarks/int8_accuracy.py``:

- ``head`` (default): the head's decode arithmetic (DFL, anchor offsets, stride multiplies,
  sigmoids: every node of the head module outside its ``cv*`` conv branches) and the last conv of
  each branch, whose outputs are box/keypoint offsets in pixels.
- ``decode``: the decode arithmetic only; the branch output convs are quantised too. More
  keypoint drift, and since export's DFL rewrite no faster than ``head`` on onnxruntime here.
- On the onnxruntime route, ``head`` and ``decode`` also keep the stem conv and the attention's
  MatMul/Softmax float (``float_nodes`` says why).
- ``none``: everything. The onnxruntime route's QDQ graph then quantises the decode's Add/Mul
  outputs and pose mAP50-95 on coco8-pose falls to 0.00; kept only to show that.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edgepose.errors import ExportError, InputError, first_line
from edgepose.metadata import ModelMeta, sha256_file
from edgepose.preprocess import letterbox_tensor
from edgepose.sources import list_images, read_image

log = logging.getLogger("edgepose")
RECOMMENDED_CALIBRATION_IMAGES = 300
CALIBRATION_VIDEO_FRAMES = 300  # frames taken from a --calib video, evenly spaced over it


def check_calibration_source(calib: str | os.PathLike) -> None:
    """Refuse a --calib that cannot give a frame before anything is exported: a missing path, a
    folder without images, a file that is no video, a video that does not open."""
    from edgepose.video_source import VIDEO_SUFFIXES, VideoSource

    path = Path(calib)
    if path.is_dir():
        list_images(path)
    elif path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
        VideoSource(path).release()
    elif path.exists():
        raise InputError(f"--calib takes a folder of images or a video file, got {path}")
    else:
        raise InputError(f"calibration folder or video not found: {path}")


def calibration_overlap(calib: str | os.PathLike, dataset: list[Path]) -> int:
    """How many of a dataset's images are also --calib images (the same bytes, whatever the path):
    the INT8 ranges were fitted to those, so a drop measured on them flatters the graph."""
    folder = Path(calib)
    if not folder.is_dir():
        return 0  # frames of a video are not the dataset's photos
    by_size: dict[int, list[Path]] = {}
    for image in list_images(folder):
        by_size.setdefault(image.stat().st_size, []).append(image)
    hashes: dict[int, set[str]] = {}  # hashed only for sizes a dataset image has
    shared = 0
    for image in dataset:
        size = image.stat().st_size if image.is_file() else -1
        if size in by_size:
            if size not in hashes:
                hashes[size] = {sha256_file(p) for p in by_size[size]}
            shared += sha256_file(image) in hashes[size]
    return shared


def calibration_images(calib: str | os.PathLike) -> Iterator[np.ndarray]:
    """The images of a --calib source: every readable image of a folder (unreadable ones skipped
    with a warning), or up to ``CALIBRATION_VIDEO_FRAMES`` frames of a video, evenly spaced over it
    (a kiosk owner's own footage of the scene the device will see)."""
    from edgepose.video_source import VideoSource

    path = Path(calib)
    if path.is_dir():
        for image_path in list_images(path):
            try:
                yield read_image(image_path)
            except InputError as exc:
                log.warning(f"calibration: skipping {exc}")
        return
    video = VideoSource(path)
    try:
        count = video.frame_count or 0  # 0 where the container does not say: its first frames
        wanted = np.linspace(0, count - 1, CALIBRATION_VIDEO_FRAMES).round().astype(int).tolist()
        wanted = set(wanted) if count > CALIBRATION_VIDEO_FRAMES else None
        kept = index = 0
        while kept < CALIBRATION_VIDEO_FRAMES and video.grab():
            if (wanted is None or index in wanted) and (image := video.retrieve()) is not None:
                kept += 1
                yield image
            index += 1
    finally:
        video.release()


def calibration_tensors(calib: str | os.PathLike, meta: ModelMeta, input_shape: tuple[int, int]) -> list[np.ndarray]:
    """The calibration source's images, letterboxed to the graph's input by the runtime's own code."""
    tensors = [letterbox_tensor(image, input_shape, stride=meta.stride, auto=False)[0]
               for image in calibration_images(calib)]  # fmt: skip
    if not tensors:
        what = "frames in calibration video" if Path(calib).is_file() else "readable images in calibration folder"
        raise InputError(f"no {what}: {calib}")
    if len(tensors) < RECOMMENDED_CALIBRATION_IMAGES:
        log.warning(
            f"calibrating on {len(tensors)} image(s); {RECOMMENDED_CALIBRATION_IMAGES} or more are recommended "
            "for stable INT8 ranges (check the accuracy report)"
        )
    return tensors


KEEP_FLOAT = ("head", "decode", "none")
POSE_HEAD = re.compile(
    r"(.*/model\.\d+/)(?:one2one_)?cv4\."
)  # the module with the keypoint branch cv4 is the pose head
MODULE = re.compile(r"/model\.\d+/")  # a node inside one of the model's modules
# A head branch's output conv, inside the head: cv2/cv3/cv4 end in a third conv (``cv4.0/cv4.0.2/Conv``);
# YOLO26's keypoint branch ends in its own conv module (``cv4_kpts.0/Conv``)
BRANCH_OUTPUT = re.compile(r"cv\d\.\d+/(?:one2one_)?cv\d\.\d+\.2/Conv$|cv4_kpts\.\d+/Conv$")


def float_nodes(onnx_path: Path, keep_float: str = "head", stem_and_attention: bool = False) -> list[str]:
    """Names of the nodes to keep in float: those of the head that ``keep_float`` names and, with
    ``stem_and_attention`` (the onnxruntime route; ignored for ``none``), the stem and the attention.

    - The head is the module holding the keypoint branch ``cv4`` (``/model.23/`` in YOLO11n-pose):
      its decode nodes (a one-to-one head's top-k too) and, for ``head``, each ``cv*`` branch's
      last conv (``cv4.0/cv4.0.2/Conv``); the rest of the ``cv*`` branches is left to quantise.
      Nodes outside every module (embedded NMS, wrapped around the model) stay float too.
    - The stem is the module of the conv reading the image (``/model.0/``: conv and SiLU).
    - The attention is the body's Softmax and MatMul nodes (in YOLO11's C2PSA, the only ones; YOLOv8
      has none) and the Mul (q scale) and Transposes feeding them.

    Measured: onnxruntime's QDQ graph quantises every op's output, the stem's SiLU and the Softmax
    included; keeping the stem and attention float there cut mean keypoint drift against FP32 from
    6.05 / 2.82 px to 2.53 / 2.37 px in ``benchmarks/int8_accuracy.py``'s two folds, and from
    4.0-5.1 to 3.4-3.8 px over the 10 coco8-pose and bundled photos for each of 4 calibration sets,
    at no cost in speed (the stem's 3-channel conv gains little from int8). NNCF only
    quantises conv and matmul inputs; the same rule there moved keypoints further (3.03 against
    2.25 px) and cost 2.8 points of pose mAP, so the OpenVINO route keeps only the head float."""
    if keep_float == "none":
        return []
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    found = next((m for n in graph.node if (m := POSE_HEAD.match(n.name))), None)
    if found is None:
        return []
    head = found.group(1)
    names = []
    for node in graph.node:
        if not node.name.startswith(head):
            continue
        inside = node.name[len(head) :].removeprefix("one2one_")  # YOLO26's NMS-free graph keeps its one2one_ branches
        last_conv = keep_float == "head" and BRANCH_OUTPUT.match(inside)
        if not inside.startswith("cv") or last_conv:
            names.append(node.name)
    names += [n.name for n in graph.node if not MODULE.search(n.name)]  # after the model: top-k or embedded NMS
    if not stem_and_attention:
        return names
    body = [n for n in graph.node if not n.name.startswith(head) and MODULE.search(n.name)]
    stem_conv = next((n for n in body if n.op_type == "Conv" and graph.input[0].name in n.input), None)
    if stem_conv is not None:
        stem = stem_conv.name[: MODULE.search(stem_conv.name).end()]  # type: ignore[union-attr]
        names += [n.name for n in body if n.name.startswith(stem)]
    if any(n.op_type == "Softmax" for n in body):
        made = {out: n for n in body for out in n.output}
        todo, attention = [n for n in body if n.op_type in ("MatMul", "Softmax")], set()
        while todo:  # back from each through the Mul (q scale) and Transposes feeding it
            node = todo.pop()
            if node.name not in attention:
                attention.add(node.name)
                todo += [made[i] for i in node.input if i in made and made[i].op_type in ("Mul", "Transpose")]
        names += sorted(attention)
    return names


def silu_products(onnx_path: Path) -> list[str]:
    """Names of the Mul nodes that finish a SiLU (``x * sigmoid(x)``).

    NNCF treats a Mul of two activations as an int8 op and puts quantisers on both its inputs;
    OpenVINO's CPU plugin then can no longer fuse the SiLU into the convolution before it, and runs
    each of the 83 SiLUs of YOLO11n-pose as its own f32 kernel. Leaving these Mul nodes out of the
    quantisation (the next conv's input is still quantised) measured, on 154 coco-val-pose images
    with 64 others calibrating: inference 1.93x as fast as the FP32 IR instead of 1.46x, and -0.23
    instead of -0.72 points of pose mAP50-95. Not for onnxruntime: its QDQ graph has no fused
    int8 SiLU, and the float SiLU between DequantizeLinear and QuantizeLinear was slower there
    (1.08x FP32 against 1.34x)."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    made = {out: node for node in graph.node for out in node.output}
    return [node.name for node in graph.node if node.op_type == "Mul" and len(node.input) == 2
            and any((s := made.get(b)) is not None and s.op_type == "Sigmoid" and s.input[0] == a
                    for a, b in (node.input, node.input[::-1]))]  # fmt: skip


def quantize_onnx(source: Path, target: Path, tensors: list[np.ndarray], keep_float: str = "head") -> dict:
    """Static QDQ quantisation: per-channel int8 weights, uint8 activations, each activation's range
    the mean over the calibration images of its per-image min and max (onnxruntime's
    ``CalibMovingAverage``). The global min/max let a few extreme activations stretch ranges: on 154
    coco-val-pose images with 64 others calibrating, it lost 2.35 points of pose mAP50-95 against
    0.45 with the mean, at the same speed (the graphs differ only in their scales); in
    ``benchmarks/int8_accuracy.py``'s two folds, -0.91 points against -1.69."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self, name: str) -> None:
            self.items = iter([{name: t} for t in tensors])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.items, None)

    with tempfile.TemporaryDirectory(dir=target.parent) as work:
        import onnx

        prepared = Path(work) / "prepared.onnx"
        ops = {node.op_type for node in onnx.load(str(source), load_external_data=False).graph.node}
        # onnxruntime's symbolic shape inference fails on a top-k or NMS (post-NMS heads); onnx's own is enough there
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=bool(ops & {"TopK", "NonMaxSuppression"}))
        excluded = float_nodes(prepared, keep_float, stem_and_attention=True)

        input_name = onnx.load(str(prepared), load_external_data=False).graph.input[0].name
        try:
            quantize_static(str(prepared), str(target), Reader(input_name), quant_format=QuantFormat.QDQ,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
                            nodes_to_exclude=excluded, extra_options={"CalibMovingAverage": True})  # fmt: skip
        except Exception as exc:  # onnxruntime.quantization raises assorted types
            raise ExportError(f"onnxruntime quantisation failed: {first_line(exc)}") from None
    return {"route": "onnxruntime.quantization", "quant_format": "QDQ", "weights": "int8 per-channel",
            "activations": "uint8", "calibration": "MinMax, mean over images", "images": len(tensors),
            "keep_float": keep_float, "float_nodes": len(excluded)}  # fmt: skip


def quantize_ir(source: Path, tensors: list[np.ndarray], keep_float: str = "head",
                data: str | None = None, max_drop: float | None = None) -> tuple[Any, dict]:  # fmt: skip
    """NNCF post-training quantisation of the ONNX graph read by OpenVINO (mixed preset), each
    SiLU's product left unquantised (``silu_products`` says why).

    With ``data`` and ``max_drop`` (points of pose mAP50-95) it is NNCF's accuracy-aware
    quantisation instead: ops are put back in float, most sensitive first, until the INT8 graph
    loses at most ``max_drop`` on ``data``'s images (about 15 minutes on 2 cores for 108 of them).
    Measured (``benchmarks/int8_accuracy.py``, both folds pooled, docs/openvino-int8.md): plain
    NNCF -0.49 points at 1.74x the FP32 IR; validated at 0.5 on the calibration half, the control
    kept one fold's graph as it was and reverted ops on the other, -0.73 at 1.63x."""
    import nncf

    from .openvino import read_onnx

    model = read_onnx(source)
    silu = silu_products(source)
    onnx_names = set(float_nodes(source, keep_float)) | set(silu)
    # OpenVINO's ONNX reader splits a node into ops named after it: a Conv with bias becomes the
    # Convolution '<name>/WithoutBiases' plus an Add '<name>'; NNCF must be told every one of them
    excluded = [op.get_friendly_name() for op in model.get_ops()
                if op.get_friendly_name() in onnx_names or op.get_friendly_name().rsplit("/", 1)[0] in onnx_names]  # fmt: skip
    options = {"preset": nncf.QuantizationPreset.MIXED, "subset_size": len(tensors),
               "ignored_scope": nncf.IgnoredScope(names=excluded, validate=False) if excluded else None}  # fmt: skip
    settings = {"route": "nncf", "preset": "mixed", "images": len(tensors), "keep_float": keep_float,
                "float_nodes": len(excluded), "silu_products_unquantised": len(silu)}  # fmt: skip
    nncf.set_log_level(logging.ERROR)
    with contextlib.redirect_stdout(sys.stderr):  # NNCF's progress bar: stdout is for --json - output
        if data is None or max_drop is None:
            return nncf.quantize(model, nncf.Dataset(tensors), **options), settings
        images, validate = pose_map_validation(source, data)
        quantized = nncf.quantize_with_accuracy_control(
            model, nncf.Dataset(tensors), nncf.Dataset(images), validate, max_drop=max_drop / 100,
            drop_type=nncf.DropType.ABSOLUTE, **options,
        )  # fmt: skip
    return quantized, {**settings, "accuracy_control": {"data": str(data), "max_drop_points": max_drop}}


def pose_map_validation(source: Path, data: str) -> tuple[list[Path], Callable[[Any, Any], float]]:
    """``data``'s images and NNCF's validation function: pose mAP50-95 of a compiled model, with
    the runtime's own letterbox, decode and matching (those of ``source``, the FP32 graph)."""
    from edgepose.predictor import load
    from edgepose.val import load_dataset, match_images, pooled_map

    images, spec = load_dataset(data)
    predictor = load(source, conf=0.001)

    class Compiled:  # what match_images needs: the classes, and detect() through a compiled model
        def __init__(self, compiled: Any) -> None:
            self.compiled = compiled
            self.names = predictor.names

        def detect(self, image: np.ndarray, conf: float | None = None, clip: bool = True) -> Any:
            tensor, box = predictor.preprocess(image)
            return predictor.decode(self.compiled(tensor)[0], box, conf=conf, clip=clip)

    def validate(compiled: Any, items: Any) -> float:
        return pooled_map(match_images(Compiled(compiled), list(items), spec))["pose_map50_95"]  # type: ignore[arg-type]

    return list(images), validate
