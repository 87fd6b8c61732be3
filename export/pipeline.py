"""``edgepose export``: a checkpoint or an edgepose ONNX graph -> the requested format and precision.

Every graph goes through ONNX first (checked against PyTorch in pose.py); OpenVINO IR, FP16 and
INT8 graphs are then derived from that ONNX graph and each one's drift from it is measured.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgepose.errors import ExportError, InputError, apply_only
from edgepose.integrity import sidecar, write_checksum
from edgepose.metadata import ModelMeta, parse_value, sha256_file
from edgepose.outputs import output_folder

from .graph_edits import set_metadata
from .pose import ExportReport, export_pose, graph_drift, keep_download, parity_input, run_onnx
from .quantize import KEEP_FLOAT

log = logging.getLogger("edgepose")

FORMATS = ("onnx", "openvino")


def export_model(
    weights: str | os.PathLike | None = None,
    format: str = "onnx",
    imgsz: int | None = None,
    dynamic: bool = False,
    opset: int | None = None,
    out: str | os.PathLike = "models",
    half: bool = False,
    int8: bool = False,
    calib: str | os.PathLike | None = None,
    keep_float: str | None = None,
    head: str | None = None,
    data: str | os.PathLike | None = None,
    max_drop: float | None = None,
) -> list[ExportReport]:
    """Export and return one report per graph written (the ONNX source first, then what derives from it).

    ``head``, ``imgsz`` (default 640), ``opset`` and ``dynamic`` shape a checkpoint's graph
    (``export_pose``); a graph keeps its own. ``calib``, ``keep_float`` (default "head") and ``data``
    are INT8's.
    With ``int8`` and ``data`` (a YOLO pose dataset yaml) the INT8 graph's pose mAP50-95 is
    measured against its FP32 source before it is written (``accuracy_gate``); ``max_drop``
    (points) refuses it, writing nothing, when it loses more; on the OpenVINO route ``max_drop``
    first has NNCF keep the most sensitive ops float until ``data`` says the drop is met."""
    if format not in FORMATS:
        raise InputError(f"unknown format '{format}' (choose from {', '.join(FORMATS)})")
    if half and int8:
        raise InputError("--half and --int8 are exclusive")
    if half and format != "openvino":
        raise InputError("--half applies to --format openvino (FP16 IR weights)")
    if dynamic and (int8 or format == "openvino"):
        raise InputError("OpenVINO and INT8 export start from a static ONNX graph; leave out --dynamic")
    graph = weights is not None and Path(weights).suffix == ".onnx"  # an edgepose graph to convert
    if graph and (given := [flag for flag, value in (("--imgsz", imgsz), ("--opset", opset), ("--head", head))
                            if value is not None]):  # fmt: skip
        what = "form" if given == ["--head"] else "shape"
        raise InputError(
            apply_only(given, f"to checkpoints; {Path(weights).name} keeps the {what} it was exported with")
        )
    if not int8 and (given := [flag for flag, value in (("--calib", calib), ("--keep-float", keep_float),
                                                         ("--data", data)) if value is not None]):  # fmt: skip
        raise InputError(apply_only(given, "to --int8"))
    keep_float = keep_float or "head"
    if keep_float not in KEEP_FLOAT:
        raise InputError(f"unknown keep_float '{keep_float}' (choose from {', '.join(KEEP_FLOAT)})")
    if max_drop is not None and not (int8 and data):
        raise InputError("--max-drop gates an INT8 export on measured accuracy: give --int8 and --data DATA.yaml")
    if int8 and calib is None:
        raise InputError("--int8 needs --calib DIR|VIDEO: real images (300+ recommended) or a video to calibrate on")
    if int8:
        from edgepose.val import load_dataset  # every label file checked before anything is written

        from .quantize import calibration_overlap, check_calibration_source

        check_calibration_source(calib)  # before anything is written
        if data is not None and (shared := calibration_overlap(calib, load_dataset(data)[0])):
            log.warning(f"--data and --calib share {shared} image(s): the drop measured on them is "
                        "optimistic (the INT8 ranges were fitted to them); calibrate on other images")  # fmt: skip
    out = Path(out)
    derive = dict(format=format, half=half, int8=int8, calib=calib, keep_float=keep_float, data=data,
                  max_drop=max_drop)  # fmt: skip
    with output_folder(out):  # a failed export removes the folder it made, left empty
        if graph:
            source = Path(weights)  # type: ignore[arg-type]
            if not source.is_file():
                raise InputError(f"no such file: {source}")
            if format == "onnx" and not int8:
                raise InputError(f"{source} is already ONNX: ask for --format openvino or --int8")
            return [_derive(source, out, **derive)]
        checkpoint = dict(imgsz=640 if imgsz is None else imgsz, dynamic=dynamic, opset=opset, head=head)
        if format == "onnx" and not int8:
            return [export_pose(weights, out=out, **checkpoint)]
        # The checkpoint's ONNX graph goes into place only once what derives from it is written: an
        # INT8 graph refused by --max-drop leaves nothing behind, and an older graph of that name stays.
        staging = Path(tempfile.mkdtemp(prefix=".edgepose-onnx-", dir=out))
        try:
            first = export_pose(weights, out=staging, **checkpoint)
            derived = _derive(Path(first.path), out, **derive)
            final = out / Path(first.path).name
            os.replace(first.path, final)
            os.replace(sidecar(Path(first.path)), sidecar(final))
            first.source = str(keep_download(Path(first.source), staging, out))  # a downloaded one, kept
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        first.path = derived.source = str(final)
        return [first, derived]


def _derive(source: Path, out: Path, format: str, half: bool, int8: bool, calib: str | os.PathLike | None,
            keep_float: str, data: str | os.PathLike | None, max_drop: float | None) -> ExportReport:  # fmt: skip
    """The OpenVINO IR and/or INT8 graph of an edgepose ONNX graph, written into ``out``, with its drift
    from ``source`` (and, with ``data``, its accuracy against it)."""
    start = time.perf_counter()
    from .openvino import onnx_metadata, read_onnx, save_ir

    props = onnx_metadata(source)
    pose = parse_value(props["task"]) == "pose"
    if int8 and not pose:
        raise InputError("--int8 applies to pose graphs; a classifier graph is already tiny")
    meta = ModelMeta.parse(props, source=str(source)) if pose else None
    tensors, parity = [], None
    if pose:
        assert meta is not None
        if parse_value(props.get("export_settings", "{}")).get("dynamic"):
            raise InputError("INT8 and OpenVINO export start from a static ONNX graph; export without --dynamic")
        parity, _ = parity_input(meta.imgsz, False, meta.stride)  # a static graph's (height, width)
        if int8:
            from .quantize import calibration_tensors

            tensors = calibration_tensors(calib, meta, meta.imgsz)
    gate = None
    if int8 and data is not None:

        def gate(candidate: Path) -> dict[str, Any]:
            return accuracy_gate(source, candidate, str(data), max_drop, len(tensors))

    if format == "onnx":
        path, fidelity, settings = _int8_onnx(source, out, tensors, parity, meta, keep_float, gate)
    else:
        precision = "int8" if int8 else "fp16" if half else "fp32"
        if int8:
            from .quantize import quantize_ir

            model, settings = quantize_ir(source, tensors, keep_float, None if data is None else str(data), max_drop)
        else:
            model, settings = read_onnx(source), {}
        path, fidelity = save_ir(model, source, out, precision, settings, parity, gate)
    artefact = next(path.glob("*.xml")) if path.is_dir() else path
    return ExportReport(
        path=str(path), sha256=sha256_file(artefact), source=str(source), source_sha256=sha256_file(source),
        settings={"format": format, "precision": "int8" if int8 else "fp16" if half else "fp32", **settings},
        fidelity=fidelity, seconds=round(time.perf_counter() - start, 2),
    )  # fmt: skip


def accuracy_gate(source: Path, candidate: Path, data: str, max_drop: float | None, calibration: int) -> dict[str, Any]:
    """FP32 and INT8 pose mAP50-95 on ``data``, paired on the same images; refuses (ExportError)
    an INT8 graph that loses more than ``max_drop`` points. The figures go into the graph."""
    from edgepose.compare import map_comparison

    found = map_comparison(str(source), str(candidate), data)
    ref, got = found["reference"], found["candidate"]
    low, high = found["pose_map50_95_delta_ci95"]
    drop = round(-found["pose_map50_95_delta"] * 100, 2)
    figures = {"data": str(data), "images": found["images"], "persons": int(ref["instances"]),
               "calibration_images": calibration, "fp32_pose_map50_95": round(ref["pose_map50_95"], 4),
               "int8_pose_map50_95": round(got["pose_map50_95"], 4), "drop_points": drop,
               "drop_points_ci95": [round(-high * 100, 2), round(-low * 100, 2)], "max_drop_points": max_drop}  # fmt: skip
    if max_drop is not None and -found["pose_map50_95_delta"] * 100 > max_drop:  # unrounded: 0.004 is not 0
        raise ExportError(
            f"INT8 loses {drop:.2f} points of pose mAP50-95 on {data} (FP32 {ref['pose_map50_95']:.4f} -> INT8 "
            f"{got['pose_map50_95']:.4f}, 95 % interval {-high * 100:.2f} to {-low * 100:.2f} over "
            f"{found['images']} images), more than --max-drop {max_drop}: nothing written"
        )
    return figures


def _int8_onnx(source: Path, out: Path, tensors: list, parity: Any, meta: Any, keep_float: str,
               gate: Callable[[Path], dict[str, Any]] | None = None) -> tuple:  # fmt: skip
    """Quantise, give the graph its source's metadata plus its own settings and drift (and, with
    a ``gate``, its measured accuracy, which may refuse it), write atomically."""
    import onnx

    from .openvino import onnx_metadata
    from .quantize import quantize_onnx

    final = out / f"{source.stem}_int8.onnx"
    work = Path(tempfile.mkdtemp(prefix=".edgepose-int8-", dir=out))
    try:
        staged = work / final.name
        settings = quantize_onnx(source, staged, tensors, keep_float)
        fidelity = graph_drift(run_onnx(staged, parity), run_onnx(source, parity), meta)
        fidelity["input_shape"] = list(parity.shape)
        model = onnx.load(str(staged))
        props = onnx_metadata(source)
        export_settings = {**parse_value(props.get("export_settings", "{}")), **settings, "precision": "int8",
                           "source_graph": source.name, "source_graph_sha256": sha256_file(source)}  # fmt: skip
        set_metadata(model, {**props, "export_settings": json.dumps(export_settings), "fidelity": json.dumps(fidelity)})
        onnx.save(model, str(staged))
        if gate is not None:
            fidelity["accuracy"] = gate(staged)
            set_metadata(model, {**props, "export_settings": json.dumps(export_settings),
                                 "fidelity": json.dumps(fidelity)})  # fmt: skip
            onnx.save(model, str(staged))
        os.replace(staged, final)
        write_checksum(final)  # what `--verify` checks the graph against
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return final, fidelity, settings
