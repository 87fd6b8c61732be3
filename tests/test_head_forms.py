"""Every head form and keypoint set a user brings from Ultralytics: raw, NMS-free (YOLO26's
one-to-one head) and embedded NMS; custom keypoint sets with their own names. Each graph, exported by
Ultralytics itself or by edgepose, gives the persons Ultralytics' own predict gives on that graph."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest

import edgepose
from edgepose.errors import ModelError
from edgepose.export.reference import ultralytics_model
from edgepose.val import box_iou

from .conftest import COCO8_POSE, ROOT, assert_one_line_error, edgepose_cli, require_shared
from .trained_models import BODY21, FACE5

CONF = 0.1  # briefly trained models score their persons 0.1-0.5; Ultralytics' 0.25 would leave too few


def ultralytics_export(weights: Path, work: Path, nms: bool | None) -> Path:
    """The graph Ultralytics' own ``export(format="onnx", nms=...)`` writes (beside a copy of the checkpoint)."""
    work.mkdir(parents=True, exist_ok=True)
    local = work / weights.name
    shutil.copy(weights, local)
    return Path(ultralytics_model(str(local)).export(format="onnx", imgsz=640, nms=nms, device="cpu"))


def photos() -> list[Path]:
    """The bundled photos and coco8-pose's 8 (which the briefly trained models have seen: they must find someone)."""
    coco8 = COCO8_POSE.parent / "images"
    return [*edgepose.sources.sample_images(), *sorted(coco8.glob("*/*.jpg"))]


def assert_same_persons(graph: Path, conf: float = CONF) -> int:
    """edgepose's persons on every test image equal Ultralytics' predict of the same graph: boxes
    IoU >= 0.99, keypoints <= 0.5 px mean, same scores and classes. Returns the persons compared."""
    reference = ultralytics_model(str(graph))
    ours = edgepose.load(graph, conf=conf)
    compared = 0
    for image in photos():
        ref = reference.predict(str(image), imgsz=640, conf=conf, verbose=False, device="cpu")[0]
        got = ours(image)
        assert len(got) == len(ref.boxes), image.name
        if not len(got):
            continue
        ref_boxes, boxes = ref.boxes.xyxy.numpy(), np.array([p.box for p in got.persons])
        scores = np.array([p.score for p in got.persons])
        # pair by box and score together: a briefly trained model puts boxes of two classes, or two
        # zero-area boxes at the image edge, on the same spot
        cost = np.abs(ref_boxes[:, None] - boxes[None]).sum(-1) + 1000 * np.abs(
            ref.boxes.conf.numpy()[:, None] - scores
        )
        if len(ref.names) > 1:
            classes = np.array([ref.names[int(c)] for c in ref.boxes.cls])
            cost[classes[:, None] != np.array([p.cls for p in got.persons])[None, :]] = np.inf
        best = cost.argmin(1)
        assert len(set(best.tolist())) == len(best) and np.isfinite(cost.min(1)).all(), image.name
        iou = box_iou(ref_boxes, boxes)[np.arange(len(best)), best]
        sized = (ref_boxes[:, 2:] - ref_boxes[:, :2]).min(1) >= 1  # IoU means nothing for a zero-area box
        assert iou[sized].min(initial=1) >= 0.99 and np.abs(ref_boxes - boxes[best]).max() <= 0.5, image.name
        kpts = np.array([got.persons[j].keypoints for j in best])
        err = np.linalg.norm(ref.keypoints.data.numpy()[..., :2] - kpts[..., :2], axis=-1).mean()
        assert err <= 0.5, image.name
        np.testing.assert_allclose(ref.boxes.conf.numpy(), scores[best], atol=1e-3)
        compared += len(got)
    return compared


@pytest.mark.parametrize("nms", [False, True, None], ids=["nms-free", "embedded-nms", "raw"])
def test_yolo26_exported_by_ultralytics(yolo26_weights: Path, nms: bool | None, tmp_path: Path) -> None:
    graph = ultralytics_export(yolo26_weights, tmp_path, nms)
    form = edgepose.load(graph).head_form
    assert form == {False: "nms-free", True: "embedded-nms", None: "raw"}[nms]
    assert assert_same_persons(graph) >= 5


def test_yolo26_exported_by_edgepose(yolo26_weights: Path, sample_video: Path, tmp_path: Path) -> None:
    """edgepose's default for a model with a one-to-one head is that head, NMS-free; the parity
    check against PyTorch ran on it and the form is in the metadata. The classifier and a video
    stream run on it as on a raw graph."""
    from edgepose.export import export_pose

    report = export_pose(yolo26_weights, out=tmp_path)
    assert report.settings["head_form"] == "nms-free" and report.fidelity["detections_compared"] > 0
    assert report.fidelity["coord_max_abs_px"] <= 0.05
    predictor = edgepose.load(report.path)
    assert predictor.head_form == "nms-free" and predictor.backend.output_shape == (1, 300, 57)
    assert assert_same_persons(Path(report.path)) >= 5
    proc = edgepose_cli("predict", sample_video, "-m", report.path, "--conf", CONF, "--json", "-",
                        "--classifier", ROOT / "models" / "yoga-classifier.onnx")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    frames = [json.loads(line) for line in proc.stdout.splitlines()]
    persons = [p for f in frames for p in f["persons"]]
    assert len(frames) == 20 and persons and all("label" in p and "id" in p for p in persons)


def test_yolo11_with_embedded_nms(yolo11_weights: Path, tmp_path: Path) -> None:
    graph = ultralytics_export(yolo11_weights, tmp_path, nms=True)
    assert edgepose.load(graph).head_form == "embedded-nms"
    assert assert_same_persons(graph, conf=0.25) >= 10


@pytest.mark.parametrize("form", ["embedded-nms", "nms-free"])
def test_edgepose_export_head_option(yolo11_weights: Path, yolo26_weights: Path, form: str, tmp_path: Path) -> None:
    """``--head`` on the CLI; a model without a one-to-one head cannot be NMS-free: one line, nothing written."""
    proc = edgepose_cli("export", "--weights", yolo11_weights, "--head", form, "--out", tmp_path)
    if form == "nms-free":
        assert_one_line_error(proc, 5, "no one-to-one head")
        assert not list(tmp_path.iterdir())
        return
    assert proc.returncode == 0, proc.stderr
    graph = tmp_path / "yolo11n-pose.onnx"
    assert json.loads(edgepose_cli("info", graph).stdout)["head_form"] == form
    assert assert_same_persons(graph, conf=0.25) >= 10


def test_val_of_nms_free_graph_agrees_with_ultralytics(nms_free_weights: Path, tmp_path: Path) -> None:
    """Scored on an NMS-free graph with real detections (the briefly trained YOLO26 weights score ~0)."""
    data = require_shared(COCO8_POSE)
    graph = ultralytics_export(nms_free_weights, tmp_path, nms=False)
    assert edgepose.load(graph).head_form == "nms-free"
    proc = edgepose_cli("val", data, "-m", graph, "--json", tmp_path / "val.json")
    assert proc.returncode == 0, proc.stderr
    ours = json.loads((tmp_path / "val.json").read_text())
    ref = ultralytics_model(str(graph)).val(data=str(data), imgsz=640, batch=1, plots=False, verbose=False,
                                            device="cpu", project=str(tmp_path), name="val")  # fmt: skip
    assert ours["instances"] > 0 and ours["pose_map50_95"] > 0.1  # not an empty evaluation
    assert abs(ours["pose_map50_95"] - ref.pose.map) <= 0.005
    assert abs(ours["box_map50_95"] - ref.box.map) <= 0.005


@pytest.mark.parametrize("layout", ["body21", "face5"])
def test_custom_keypoint_sets(layout: str, custom_weights: dict[str, Path], tmp_path: Path) -> None:
    """A 21-point, 2-class model and a 5-point x,y-only model: exported by edgepose, they match
    Ultralytics' predict and name their points in the JSON and the drawing."""
    weights = custom_weights[layout]
    proc = edgepose_cli("export", "--weights", weights, "--out", tmp_path)
    assert proc.returncode == 0, proc.stderr
    graph = tmp_path / f"{weights.stem}.onnx"
    names = BODY21 if layout == "body21" else FACE5
    info = json.loads(edgepose_cli("info", graph).stdout)
    assert info["keypoint_names"] == list(names) and info["skeleton"] == []
    assert assert_same_persons(graph) >= 3
    image = COCO8_POSE.parent / "images" / "train" / "000000000036.jpg"
    proc = edgepose_cli("predict", image, "-m", graph, "--conf", CONF, "--json", "-", "--save", tmp_path / "draw")
    assert proc.returncode == 0, proc.stderr
    person = json.loads(proc.stdout)[0]["persons"][0]
    assert len(person["keypoints"]) == len(names)
    if layout == "body21":
        assert person["class"] in ("near", "far")
    else:
        assert "class" not in person and {k[2] for k in person["keypoints"]} == {1.0}  # [K, 2]: no confidence
    drawn = cv2.imread(str(tmp_path / "draw" / image.name))
    plain = cv2.imread(str(image))
    assert drawn.shape == plain.shape and (drawn != plain).any()


def test_classifier_refuses_a_custom_layout(custom_weights: dict[str, Path], tmp_path: Path) -> None:
    """The yoga classifier needs COCO's 17 points; a face model is refused in one line."""
    assert edgepose_cli("export", "--weights", custom_weights["face5"], "--out", tmp_path).returncode == 0
    graph = tmp_path / f"{custom_weights['face5'].stem}.onnx"
    proc = edgepose_cli("predict", "-m", graph, "--classifier", ROOT / "models" / "yoga-classifier.onnx")
    assert_one_line_error(proc, 4, "expects 17 keypoints")


def _rewrite(graph: Path, target: Path, drop: tuple[str, ...] = (), set_: dict[str, str] | None = None) -> Path:
    from edgepose.export.graph_edits import set_metadata

    model = onnx.load(str(graph))
    set_metadata(model, {p.key: p.value for p in model.metadata_props if p.key not in drop} | (set_ or {}))
    onnx.save(model, str(target))
    return target


def test_head_form_that_cannot_be_told_is_refused(yolo11_weights: Path, yolo11_onnx: Path, tmp_path: Path) -> None:
    """A (1, 300, 57) graph whose metadata declares no NMS, and a raw graph whose metadata says
    NMS-free: one ``error:`` line each, exit 4, in the CLI and ModelError in the API."""
    nms = ultralytics_export(yolo11_weights, tmp_path / "nms", nms=True)
    undeclared = _rewrite(nms, tmp_path / "undeclared.onnx", set_={"args": "{'nms': False}"})
    lying = _rewrite(yolo11_onnx, tmp_path / "lying.onnx", drop=("head_form",), set_={"end2end": "True"})
    for graph, fragment in ((undeclared, "post-NMS head"), (lying, "it is a raw head")):
        assert_one_line_error(edgepose_cli("predict", "-m", graph), 4, fragment)
        with pytest.raises(ModelError):
            edgepose.load(graph)


def assert_ir_matches(onnx_graph: Path, ir: Path) -> None:
    """The IR's persons are the ONNX graph's on every test photo (boxes and keypoints within 0.01 px)."""
    for image in photos():
        want, got = edgepose.load(onnx_graph, conf=CONF)(image), edgepose.load(ir, conf=CONF)(image)
        assert len(want) == len(got)
        for a, b in zip(want.persons, got.persons):
            assert np.abs(a.box - b.box).max() < 0.01 and np.abs(a.keypoints - b.keypoints).max() < 0.01


def test_ultralytics_nms_free_graph_converts_to_openvino(yolo26_weights: Path, tmp_path: Path) -> None:
    """Ultralytics' own NMS-free graph (its top-k gathers as exported) converts to IR all the same."""
    from edgepose.export.pipeline import export_model

    graph = ultralytics_export(yolo26_weights, tmp_path, nms=False)
    assert "GatherElements" in {n.op_type for n in onnx.load(str(graph)).graph.node}
    assert_ir_matches(graph, Path(export_model(graph, format="openvino", out=tmp_path / "ir")[-1].path))


def test_post_nms_graphs_convert_to_openvino_and_int8(yolo26_weights: Path, yolo11_weights: Path,
                                                      samples: list[Path], tmp_path: Path) -> None:  # fmt: skip
    """An NMS-free YOLO26 graph as OpenVINO IR gives the ONNX graph's persons (its top-k gathers
    rewritten so OpenVINO compiles them); an embedded-NMS YOLO11 graph quantises to INT8 with the
    NMS left float and still finds the photo's persons."""
    from edgepose.export import export_pose
    from edgepose.export.pipeline import export_model

    onnx_graph = Path(export_pose(yolo26_weights, out=tmp_path / "y26").path)
    assert json.loads(edgepose_cli("info", onnx_graph).stdout)["export_settings"]["topk_gather"] == "GatherND"
    assert_ir_matches(onnx_graph, Path(export_model(onnx_graph, format="openvino", out=tmp_path / "y26")[-1].path))

    calib = tmp_path / "calib"
    calib.mkdir()
    for image in photos():
        shutil.copy(image, calib)
    nms_graph = Path(export_pose(yolo11_weights, out=tmp_path / "y11", head="embedded-nms").path)
    int8 = Path(export_model(nms_graph, int8=True, calib=calib, out=tmp_path / "y11")[-1].path)
    nodes = onnx.load(str(int8)).graph.node
    made = {out: node for node in nodes for out in node.output}
    quantised = [made[n.input[0]].name for n in nodes if n.op_type == "QuantizeLinear" and n.input[0] in made]
    assert quantised and not [name for name in quantised if "/model." not in name]  # nothing after the model
    assert "NonMaxSuppression" in {n.op_type for n in nodes}
    for image in samples:
        want, got = edgepose.load(nms_graph)(image), edgepose.load(int8)(image)
        assert len(got) >= len(want) - 1 and len(got) > 0
        iou = box_iou(np.array([p.box for p in want.persons]), np.array([p.box for p in got.persons]))
        assert np.median(iou.max(1)) >= 0.8
