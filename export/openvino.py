"""An edgepose ONNX graph (pose or classifier) -> an OpenVINO IR folder that carries its metadata.

The ONNX graph's ``metadata_props`` travel in the IR's rt_info under ``framework`` (OpenVINO's ONNX
frontend puts them there); edgepose adds an ``edgepose`` section with the IR's own export
settings and its measured drift from the ONNX graph. The runtime reads both (backends.py).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgepose.backends import OpenVinoBackend
from edgepose.classifier import CLASSIFIER_TASK
from edgepose.errors import ExportError, MissingExtraError, first_line
from edgepose.integrity import write_checksum
from edgepose.metadata import ModelMeta, parse_value, sha256_file

from .graph_edits import gather_nd_topk
from .pose import graph_drift, run_onnx

PRECISIONS = ("fp32", "fp16", "int8")


def _require() -> Any:
    try:
        import openvino as ov
    except ImportError:
        raise MissingExtraError("export", "openvino") from None
    return ov


def onnx_metadata(path: Path) -> dict[str, str]:
    """The ``metadata_props`` of an ONNX graph, refusing files that are not edgepose graphs."""
    import onnx

    try:
        graph = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and others for a file that is not a graph
        raise ExportError(f"{path} is not an ONNX graph: {first_line(exc)}") from None
    meta = {p.key: p.value for p in graph.metadata_props}
    if parse_value(meta.get("task", '""')) not in ("pose", CLASSIFIER_TASK):
        raise ExportError(f"{path} is not an edgepose pose or classifier graph (no task metadata)")
    return meta


def ir_folder(out: Path, stem: str, precision: str) -> Path:
    """Ultralytics' naming (``NAME_openvino_model``), with the precision for non-FP32 IR."""
    return out / (f"{stem}_openvino_model" if precision == "fp32" else f"{stem}_{precision}_openvino_model")


def replace_dir(staged: Path, final: Path) -> None:
    """Move a finished folder into place; an older one is removed only after the new one is there."""
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, old)
    os.replace(staged, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def check_against_onnx(source: Path, ir: Path, meta: dict[str, str], tensor: np.ndarray | None) -> dict[str, Any]:
    """The IR's outputs next to the ONNX graph's: head drift on the parity image for pose graphs,
    probability drift and argmax agreement on a fixed set of keypoints for classifiers."""
    backend = OpenVinoBackend(ir, device="CPU")
    if parse_value(meta["task"]) == CLASSIFIER_TASK:
        rng = np.random.default_rng(0)
        kpts = rng.uniform(0, 1, (256, 17, 3)).astype(np.float32)
        kpts[..., 2] = rng.uniform(0.3, 1, (256, 17))  # about a quarter of the points count as missing
        ref, got = run_onnx(source, kpts), backend.run(kpts)
        return {"rows": len(kpts), "argmax_equal": bool((ref.argmax(1) == got.argmax(1)).all()),
                "max_abs_prob": float(np.abs(ref - got).max())}  # fmt: skip
    assert tensor is not None
    parsed = ModelMeta.parse(meta, source=str(source))
    return {"input_shape": list(tensor.shape), **graph_drift(backend.run(tensor), run_onnx(source, tensor), parsed)}


def save_ir(model: Any, source: Path, out: Path, precision: str, settings: dict[str, Any], parity: np.ndarray | None,
            gate: Callable[[Path], dict[str, Any]] | None = None) -> tuple[Path, dict[str, Any]]:  # fmt: skip
    """Write ``model`` (an ov.Model read from ``source``) as IR with metadata; return its folder and fidelity.

    ``gate`` measures the staged IR's accuracy (it may refuse it: then nothing is written); what
    it returns joins the fidelity as ``accuracy``."""
    ov = _require()
    meta = onnx_metadata(source)
    final = ir_folder(out, source.stem, precision)
    staged = Path(tempfile.mkdtemp(prefix=f".{final.name}.partial-", dir=out))
    staged.chmod(0o755)  # mkdtemp makes it private; an exported model folder is for others to read
    try:
        ours = {"export_settings": {**parse_value(meta.get("export_settings", "{}")), **settings,
                                    "format": "openvino", "precision": precision, "source_graph": source.name,
                                    "source_graph_sha256": sha256_file(source)}}  # fmt: skip
        for key, value in ours.items():
            model.set_rt_info(json.dumps(value), ["edgepose", key])
        xml = staged / f"{source.stem}.xml"
        ov.save_model(model, str(xml), compress_to_fp16=precision == "fp16")
        fidelity = check_against_onnx(source, staged, meta, parity)
        if gate is not None:
            fidelity["accuracy"] = gate(xml)
        model.set_rt_info(json.dumps(fidelity), ["edgepose", "fidelity"])
        ov.save_model(model, str(xml), compress_to_fp16=precision == "fp16")  # again, now with its fidelity
        for file in (xml, xml.with_suffix(".bin")):
            write_checksum(file)  # what `--verify` checks the IR against
        replace_dir(staged, final)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    return final, fidelity


def read_onnx(source: Path) -> Any:
    """The ONNX graph as an ov.Model (metadata included, under rt_info 'framework').

    A one-to-one head's top-k gathers as Ultralytics exports them (a graph from
    ``export(nms=False)`` that edgepose's export did not rewrite) are rewritten first
    (``gather_nd_topk``): OpenVINO's CPU plugin cannot compile them."""
    import onnx

    ov = _require()
    graph = onnx.load(str(source))
    ml = sorted({node.op_type for node in graph.graph.node if node.domain == "ai.onnx.ml"})
    if ml:  # an SVC classifier: OpenVINO has no conversion for sklearn's operators
        raise ExportError(f"{source.name} uses {', '.join(ml)} (ai.onnx.ml), which OpenVINO cannot convert; "
                          "onnxruntime runs it (edgepose does so even beside an OpenVINO pose model)")  # fmt: skip
    if not gather_nd_topk(graph):
        return ov.Core().read_model(str(source))
    with tempfile.TemporaryDirectory() as work:
        rewritten = Path(work) / source.name
        onnx.save(graph, str(rewritten))
        return ov.Core().read_model(str(rewritten))
