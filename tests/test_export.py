"""Export writes a checked graph with Ultralytics' and edgepose's metadata, and fails cleanly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from edgepose.errors import ExportError
from edgepose.export import DEFAULT_WEIGHTS_SHA256, export_pose
from edgepose.metadata import EDGEPOSE_KEYS, ModelMeta, sha256_file

ULTRALYTICS_KEYS = ("task", "stride", "imgsz", "names", "kpt_shape", "batch", "end2end", "args")


def _props(path: Path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def test_metadata_has_ultralytics_and_edgepose_keys(yolo11_onnx: Path) -> None:
    props = _props(yolo11_onnx)
    assert set(ULTRALYTICS_KEYS) <= set(props)
    assert set(EDGEPOSE_KEYS) <= set(props)
    assert json.loads(props["source_sha256"]) == DEFAULT_WEIGHTS_SHA256
    assert json.loads(props["source_file"]) == "yolo11n-pose.pt"
    assert json.loads(props["export_settings"])["dynamic"] is False
    fidelity = json.loads(props["fidelity"])
    assert fidelity["coord_max_abs_px"] < 0.05 and fidelity["anchors_compared"] > 0
    meta = ModelMeta.parse(props)
    assert meta.kpt_shape == (17, 3) and meta.keypoint_names[9] == "left_wrist" and len(meta.skeleton) == 19
    onnx.checker.check_model(str(yolo11_onnx), full_check=True)


def test_ultralytics_still_loads_the_graph(yolo11_onnx: Path, samples: list[Path]) -> None:
    from edgepose.export.reference import ultralytics_model

    result = ultralytics_model(str(yolo11_onnx)).predict(str(samples[0]), verbose=False, device="cpu")[0]
    assert result.keypoints.data.shape[1:] == (17, 3) and len(result.boxes) >= 3


def test_dynamic_export_has_symbolic_input(yolo11_dynamic_onnx: Path) -> None:
    dims = onnx.load(str(yolo11_dynamic_onnx)).graph.input[0].type.tensor_type.shape.dim
    assert not dims[2].HasField("dim_value") and not dims[3].HasField("dim_value")


def test_export_leaves_only_the_graph_and_its_checksum(yolo11_onnx: Path) -> None:
    from edgepose.integrity import verify_model

    assert sorted(p.name for p in yolo11_onnx.parent.iterdir()) == [yolo11_onnx.name, yolo11_onnx.name + ".sha256"]
    sidecar = (yolo11_onnx.parent / (yolo11_onnx.name + ".sha256")).read_text()
    assert sidecar == f"{sha256_file(yolo11_onnx)}  {yolo11_onnx.name}\n"  # sha256sum format
    verify_model(yolo11_onnx)


def test_unknown_remote_name_fails_offline_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="--weights") as info:
        export_pose("yolov8n-pose.pt", out=tmp_path)
    assert "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_missing_checkpoint_path(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="no such checkpoint"):
        export_pose(tmp_path / "nope" / "x.pt", out=tmp_path / "out")


def test_not_a_checkpoint(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.pt"
    bogus.write_text("not a checkpoint")
    with pytest.raises(ExportError, match="not an Ultralytics checkpoint"):
        export_pose(bogus, out=tmp_path / "out")
    assert not (tmp_path / "out").exists()  # not even the folder it made
    photo = tmp_path / "bus.jpg"  # Ultralytics would guess a 'detect' model from any file: refused by its suffix
    photo.write_bytes(b"\xff\xd8 not weights")
    with pytest.raises(ExportError, match=r"bus.jpg is not a PyTorch checkpoint \(\*\.pt\)"):
        export_pose(photo, out=tmp_path / "out")
    assert not (tmp_path / "out").exists()  # not even the folder it made


def test_detection_checkpoint_is_refused(tmp_path: Path) -> None:
    from ultralytics import YOLO

    weights = tmp_path / "yolov8n.pt"
    YOLO("yolov8n.yaml").save(str(weights))
    with pytest.raises(ExportError, match="'detect' model, not a pose model"):
        export_pose(weights, out=tmp_path / "out")


def test_bad_imgsz_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="multiple of 32"):
        export_pose(imgsz=333, out=tmp_path)


def test_imgsz_off_a_stride_64_checkpoint_is_refused(tmp_path: Path) -> None:
    """A P6 model (stride 64) at 352, a multiple of 32 only: torch's trace failed on mismatched tensor sizes."""
    from ultralytics import YOLO

    checkpoint = tmp_path / "yolov8n-pose-p6.pt"
    YOLO("yolov8n-pose-p6.yaml").save(str(checkpoint))
    with pytest.raises(ExportError, match="imgsz must be a multiple of yolov8n-pose-p6.pt's stride 64, got 352"):
        export_pose(checkpoint, imgsz=352, out=tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("dynamic", [False, True])
def test_last_axis_dfl_gives_the_same_numbers_as_ultralytics_graph(
    yolo11_weights: Path, samples: list[Path], tmp_path: Path, dynamic: bool
) -> None:
    """The DFL rewrite (softmax over the last axis, MatMul for the 1x1 conv) changes no output bit on
    real photos, against Ultralytics' own export of the same checkpoint, static and dynamic."""
    import shutil

    import numpy as np
    import onnxruntime as ort
    from ultralytics import YOLO

    from edgepose.export.graph_edits import last_axis_dfl
    from edgepose.preprocess import letterbox_tensor
    from edgepose.sources import read_image

    local = tmp_path / yolo11_weights.name
    shutil.copy2(yolo11_weights, local)
    original = onnx.load(YOLO(str(local)).export(format="onnx", dynamic=dynamic, simplify=True, device="cpu"))
    rewritten = onnx.load_from_string(original.SerializeToString())
    assert last_axis_dfl(rewritten) and not last_axis_dfl(rewritten)  # found once, then nothing left to do
    onnx.checker.check_model(rewritten, full_check=True)
    softmax = [n for n in rewritten.graph.node if n.op_type == "Softmax" and "/dfl/" in n.name]
    assert [onnx.helper.get_attribute_value(a) for n in softmax for a in n.attribute] == [-1]
    sessions = [ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
                for m in (original, rewritten)]  # fmt: skip
    for path in samples:
        tensor, _ = letterbox_tensor(read_image(path), (640, 640), auto=dynamic)
        a, b = (s.run(None, {"images": tensor})[0] for s in sessions)
        assert np.array_equal(a, b), f"{path.name}: max difference {np.abs(a - b).max()}"


def test_exported_graphs_record_the_dfl_rewrite(yolo11_onnx: Path, yolov8_onnx: Path) -> None:
    for path in (yolo11_onnx, yolov8_onnx):
        assert json.loads(_props(path)["export_settings"])["dfl_softmax"] == "last axis"
        assert not [n for n in onnx.load(str(path)).graph.node if n.op_type == "Conv" and "/dfl/" in n.name]


def test_rows_drift_sees_a_detection_only_the_graph_has() -> None:
    """Post-NMS outputs are paired both ways: a row the exported graph adds (here 50 px off its
    nearest source row) is drift, where pairing only the source's rows passed it as 0."""
    from edgepose.export.pose import rows_drift

    rng = np.random.default_rng(0)
    source = np.zeros((1, 300, 6 + 17 * 3), np.float32)
    source[0, :3, :4], source[0, :3, 6:] = rng.uniform(0, 600, (3, 4)), rng.uniform(0, 600, (3, 51))
    source[0, :3, 4] = [0.9, 0.8, 0.7]
    graph = source.copy()
    assert rows_drift(graph, source, 3)["coord_max_abs_px"] == 0
    graph[0, 3] = source[0, 0] + np.r_[np.full(4, 50.0), np.zeros(53)]
    graph[0, 3, 4] = 0.6
    drift = rows_drift(graph, source, 3)
    assert drift["coord_max_abs_px"] == 50 and drift["score_max_abs"] == pytest.approx(0.3)


def test_a_downloaded_checkpoint_is_kept_beside_its_graph(tmp_path: Path) -> None:
    """The export's scratch folder is deleted after it: a checkpoint downloaded there moves to ``out``
    (the report's source must exist); a file of that name already in ``out`` is left as it is."""
    from edgepose.export.pose import keep_download

    scratch, out = tmp_path / "scratch", tmp_path / "out"
    scratch.mkdir(), out.mkdir()
    (scratch / "a.pt").write_bytes(b"weights a")
    assert keep_download(scratch / "a.pt", scratch, out) == out / "a.pt" and (out / "a.pt").read_bytes() == b"weights a"
    (scratch / "b.pt").write_bytes(b"new b")
    (out / "b.pt").write_bytes(b"the user's b")
    assert (
        keep_download(scratch / "b.pt", scratch, out) == Path("b.pt") and (out / "b.pt").read_bytes() == b"the user's b"
    )
    assert keep_download(tmp_path / "mine.pt", scratch, out) == tmp_path / "mine.pt"  # a local checkpoint: itself
