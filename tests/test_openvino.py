"""OpenVINO IR (FP32/FP16/INT8) and INT8 ONNX: exported from the real graph, measured against it,
loadable by every runtime verb, and refused cleanly when the inputs are wrong."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgepose.classifier import KeypointClassifier
from edgepose.compare import compare_models
from edgepose.predictor import load

from .conftest import COCO8_POSE, ROOT, assert_one_line_error, require_shared
from .conftest import edgepose_cli as edgepose

CLASSIFIER = ROOT / "models" / "yoga-classifier.onnx"


def export(*args: object) -> dict:
    proc = edgepose("export", *args, "--json", "-")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    return report[-1] if isinstance(report, list) else report


@pytest.fixture(scope="module")
def calib(samples: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("calib")
    for sample in samples:
        shutil.copy(sample, folder)
    return folder


@pytest.fixture(scope="module")
def ir(yolo11_ir: Path) -> Path:
    return yolo11_ir


@pytest.fixture(scope="module")
def optimised(yolo11_onnx: Path, calib: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """FP16 IR, INT8 ONNX and INT8 IR of the same graph."""
    out = tmp_path_factory.mktemp("optimised")
    return {
        "fp16_ir": Path(export("--weights", yolo11_onnx, "--format", "openvino", "--half", "--out", out)["path"]),
        "int8_onnx": Path(export("--weights", yolo11_onnx, "--int8", "--calib", calib, "--out", out)["path"]),
        "int8_ir": Path(
            export("--weights", yolo11_onnx, "--format", "openvino", "--int8", "--calib", calib, "--out", out)["path"]
        ),  # fmt: skip
    }


def test_ir_matches_onnxruntime_on_real_images(yolo11_onnx: Path, ir: Path, samples: list[Path]) -> None:
    assert sorted(p.suffix for p in ir.iterdir()) == [".bin", ".sha256", ".sha256", ".xml"]  # + sidecars
    report = compare_models(load(yolo11_onnx), load(ir), samples)
    assert report["persons"] == {"matched": 6, "missed": 0, "extra": 0}
    assert report["keypoint_drift_px"]["mean"] <= 0.5 and report["keypoint_drift_px"]["max"] <= 0.5


def test_ir_carries_the_graphs_metadata(yolo11_onnx: Path, ir: Path) -> None:
    predictor = load(ir)
    assert predictor.backend.name == "openvino" and predictor.meta.kpt_shape == (17, 3)
    settings = json.loads(predictor.backend.metadata["export_settings"])
    assert settings["format"] == "openvino" and settings["precision"] == "fp32"
    assert settings["source_graph"] == yolo11_onnx.name
    assert json.loads(predictor.backend.metadata["fidelity"])["coord_max_abs_px"] < 0.05


def test_classifier_ir_gives_identical_labels(ir: Path, samples: list[Path], tmp_path: Path) -> None:
    clf_ir = Path(export("--weights", CLASSIFIER, "--format", "openvino", "--out", tmp_path)["path"])
    onnx_labels = [[(p.label, round(p.pose_score, 3)) for p in load(ir, classifier=CLASSIFIER)(s).persons]
                   for s in samples]  # fmt: skip
    ir_labels = [[(p.label, round(p.pose_score, 3)) for p in load(ir, classifier=clf_ir)(s).persons] for s in samples]
    assert ir_labels == onnx_labels and all(onnx_labels)
    assert KeypointClassifier(clf_ir).threshold == KeypointClassifier(CLASSIFIER).threshold  # "none" travels too
    kpts = np.random.default_rng(1).uniform(0, 1, (64, 17, 3)).astype(np.float32)
    a, b = KeypointClassifier(CLASSIFIER).outputs(kpts), KeypointClassifier(clf_ir).outputs(kpts)
    assert a.shape == b.shape == (64, 6) and (a.argmax(1) == b.argmax(1)).all() and np.abs(a - b).max() < 1e-4


@pytest.mark.parametrize("kind", ["fp16_ir", "int8_onnx", "int8_ir"])
def test_optimised_graphs_load_in_predict_and_stay_close(
    kind: str, optimised: dict[str, Path], yolo11_onnx: Path, samples: list[Path]
) -> None:
    proc = edgepose("predict", "--model", optimised[kind], "--json", "-")
    assert proc.returncode == 0, proc.stderr
    assert [len(r["persons"]) for r in json.loads(proc.stdout)] in ([4, 2], [4, 3], [5, 2])
    report = compare_models(load(yolo11_onnx), load(optimised[kind]), samples)
    assert report["persons"]["matched"] >= 5
    # FP16 weights barely move; INT8 (2 calibration images here) stays within a few pixels on average.
    assert report["keypoint_drift_px"]["mean"] <= (0.5 if kind == "fp16_ir" else 8.0)


@pytest.mark.parametrize("kind", ["fp16_ir", "int8_onnx", "int8_ir"])
def test_optimised_graphs_load_in_val(kind: str, optimised: dict[str, Path]) -> None:
    data = require_shared(COCO8_POSE)
    proc = edgepose("val", data, "--model", optimised[kind], "--json", "-")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["pose_map50_95"] > 0.2


@pytest.mark.parametrize("kind", ["fp16_ir", "int8_onnx", "int8_ir"])
def test_optimised_graphs_load_in_bench(kind: str, optimised: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = edgepose("bench", "--model", optimised[kind], "--runs", "2", "--warmup", "0", "--no-cold-start",
                    "--json", out)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (target,) = json.loads(out.read_text())["targets"]
    assert target["status"] == "ok" and target["backend"] == ("onnxruntime" if kind == "int8_onnx" else "openvino")


def test_int8_keeps_head_float(optimised: dict[str, Path]) -> None:
    settings = json.loads(load(optimised["int8_onnx"]).backend.metadata["export_settings"])
    assert settings["precision"] == "int8" and settings["float_nodes"] > 0 and settings["images"] == 2
    assert settings["keep_float"] == "head"


def test_int8_float_nodes_are_the_stem_attention_and_head(yolo11_onnx: Path, yolov8_onnx: Path) -> None:
    """The rule finds the stem, the attention and the head by graph structure, on both
    architectures, and leaves the rest of the body to quantise."""
    import onnx

    from edgepose.export.quantize import float_nodes

    for path, attention in ((yolo11_onnx, True), (yolov8_onnx, False)):
        graph = onnx.load(str(path), load_external_data=False).graph
        ops = {n.name: n.op_type for n in graph.node}
        head = next(n for n in graph.node if graph.output[0].name in n.output).name.split("/")[1]
        kept = float_nodes(path, "head", stem_and_attention=True)
        body = [n for n in kept if n.split("/")[1] != head]
        stem = next(n for n in graph.node if n.op_type == "Conv" and graph.input[0].name in n.input)
        assert [n for n in body if ops[n] == "Conv"] == [stem.name]  # every other body conv quantises
        assert sorted(ops[n] for n in body if ops[n] in ("MatMul", "Softmax")) == (
            ["MatMul", "MatMul", "Softmax"] if attention else []
        )
        assert not [n for n in float_nodes(path, "head") if n.split("/")[1] != head]  # the OpenVINO route's rule
        assert float_nodes(path, "none", stem_and_attention=True) == []


def test_int8_ir_leaves_each_silu_to_fuse_into_its_conv(yolo11_onnx: Path, yolov8_onnx: Path,
                                                        optimised: dict[str, Path]) -> None:  # fmt: skip
    """Every SiLU's Mul is found on both architectures, and the INT8 IR has no quantiser between a
    SiLU's sigmoid and its product (NNCF put one there, which kept OpenVINO from fusing the SiLU
    into the conv: 1.46x FP32 instead of 1.93x)."""
    import onnx
    import openvino as ov

    from edgepose.export.quantize import silu_products

    for path in (yolo11_onnx, yolov8_onnx):
        graph = onnx.load(str(path), load_external_data=False).graph
        named = {n.name for n in graph.node if n.op_type == "Mul" and n.name.endswith("/act/Mul")}  # Ultralytics' SiLU
        assert len(named) > 50 and set(silu_products(path)) == named
    products = set(silu_products(yolo11_onnx))
    settings = json.loads(load(optimised["int8_ir"]).backend.metadata["export_settings"])
    assert settings["silu_products_unquantised"] == len(products)
    model = ov.Core().read_model(optimised["int8_ir"] / f"{yolo11_onnx.stem}.xml")
    inputs = {op.get_friendly_name(): [op.input_value(i).get_node().get_type_name() for i in range(2)]
              for op in model.get_ops() if op.get_friendly_name() in products}  # fmt: skip
    assert len(inputs) == len(products)
    assert {name: kinds for name, kinds in inputs.items() if "FakeQuantize" in kinds} == {}


def test_int8_keep_float_decode(yolo11_onnx: Path, optimised: dict[str, Path], calib: Path, samples: list[Path],
                                tmp_path: Path) -> None:  # fmt: skip
    """--keep-float decode quantises the head branches' output convs too: fewer float nodes, and
    the graph still finds every person the FP32 graph finds."""
    path = Path(export("--weights", yolo11_onnx, "--int8", "--calib", calib, "--keep-float", "decode",
                       "--out", tmp_path)["path"])  # fmt: skip
    settings = json.loads(load(path).backend.metadata["export_settings"])
    head = json.loads(load(optimised["int8_onnx"]).backend.metadata["export_settings"])
    assert settings["keep_float"] == "decode" and 0 < settings["float_nodes"] < head["float_nodes"]
    report = compare_models(load(yolo11_onnx), load(path), samples)
    assert report["persons"]["matched"] == 6 and report["persons"]["missed"] == 0


def test_export_report_measures_the_derived_graph(yolo11_onnx: Path, tmp_path: Path) -> None:
    report = export("--weights", yolo11_onnx, "--format", "openvino", "--half", "--report", "--out", tmp_path)
    accuracy = report["accuracy"]
    assert accuracy["reference"] == str(yolo11_onnx) and accuracy["images"] == 2
    assert accuracy["persons"] == {"matched": 6, "missed": 0, "extra": 0}
    assert 0 < accuracy["keypoint_drift_px"]["mean"] <= 0.5  # FP16 weights move keypoints, a little


def test_compare_cli_reports_drift_and_map(yolo11_onnx: Path, ir: Path) -> None:
    data = require_shared(COCO8_POSE)
    proc = edgepose("compare", yolo11_onnx, ir, "--data", data, "--json", "-")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["persons"]["missed"] == 0 and report["keypoint_drift_px"]["n"] > 0
    assert set(report["per_keypoint_drift_px"]) >= {"nose", "left_ankle"}
    assert abs(report["map"]["pose_map50_95_delta"]) < 0.005
    low, high = report["map"]["pose_map50_95_delta_ci95"]
    assert low <= report["map"]["pose_map50_95_delta"] <= high and high - low < 0.01  # two graphs that agree


def test_compare_against_pytorch(yolo11_weights: Path, yolo11_onnx: Path) -> None:
    proc = edgepose("compare", yolo11_weights, yolo11_onnx, "--json", "-")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["persons"] == {"matched": 6, "missed": 0, "extra": 0}
    assert report["keypoint_drift_px"]["max"] < 0.05


def test_int8_without_calib_is_refused(yolo11_onnx: Path, tmp_path: Path) -> None:
    assert_one_line_error(edgepose("export", "--weights", yolo11_onnx, "--int8", "--out", tmp_path), 3,
                          "--int8 needs --calib")  # fmt: skip
    assert not list(tmp_path.iterdir())


def test_calibration_folder_without_images_is_refused(yolo11_onnx: Path, tmp_path: Path) -> None:
    empty = tmp_path / "calib"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")
    out = tmp_path / "out"
    proc = edgepose(
        "export", "--weights", yolo11_onnx, "--format", "openvino", "--int8", "--calib", empty, "--out", out
    )
    assert_one_line_error(proc, 3, "no images in folder")
    assert not out.exists() or not list(out.iterdir())


def test_ir_without_its_bin_is_refused(ir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(ir, broken)
    next(broken.glob("*.bin")).unlink()
    assert_one_line_error(edgepose("predict", "--model", broken), 4, "weights file")


def test_calibration_from_a_video(yolo11_onnx: Path, sample_video: Path, samples: list[Path], tmp_path: Path) -> None:
    """A kiosk owner's footage calibrates INT8: frames evenly spaced over the video (all 20 of
    the test video, under the 300 taken), recorded in the graph's settings."""
    report = export("--weights", yolo11_onnx, "--int8", "--calib", sample_video, "--out", tmp_path)
    assert report["settings"]["images"] == 20
    assert len(load(report["path"])(samples[0]).persons) >= 3  # bus.jpg


def test_calibration_frames_are_spread_over_a_long_video(tmp_path: Path) -> None:
    """A 450-frame video gives 300 frames from its start to its end (it gave its first 300: the step
    was 450 // 300 = 1)."""
    import cv2

    from edgepose.export.quantize import CALIBRATION_VIDEO_FRAMES, calibration_images

    video = tmp_path / "long.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 25, (64, 64))
    for i in range(450):  # the frame's index in two flat channels, which MJPG keeps within a level or two
        writer.write(np.dstack([np.full((64, 64), c, np.uint8) for c in (i // 15 * 8, i % 15 * 16, 0)]))
    writer.release()
    index = [round(f[..., 0].mean() / 8) * 15 + round(f[..., 1].mean() / 16) for f in calibration_images(video)]
    assert len(index) == CALIBRATION_VIDEO_FRAMES == 300
    assert index[0] == 0 and index[-1] == 449 and index == sorted(index)


def test_static_rectangular_graph_converts(yolo11_weights: Path, samples: list[Path], tmp_path: Path) -> None:
    """Ultralytics' own export at imgsz [256, 416] (a static graph wider than high) converts to IR,
    its parity input of that shape (it was made square, which OpenVINO refused)."""
    from ultralytics import YOLO

    from edgepose.export.reference import repair_torchvision

    repair_torchvision()
    shutil.copy(yolo11_weights, tmp_path / "rect.pt")
    graph = Path(YOLO(str(tmp_path / "rect.pt")).export(format="onnx", imgsz=[256, 416], device="cpu"))
    report = export("--weights", graph, "--format", "openvino", "--out", tmp_path / "ir")
    assert report["fidelity"]["input_shape"] == [1, 3, 256, 416] and report["fidelity"]["coord_max_abs_px"] < 0.5
    persons = load(report["path"])(samples[0]).persons
    assert len(persons) == len(load(graph)(samples[0]).persons) >= 3


@pytest.mark.parametrize("kind", ["unreadable", "no-frames"])
def test_calibration_video_that_gives_no_frame_is_refused(yolo11_onnx: Path, kind: str, tmp_path: Path) -> None:
    video = tmp_path / "calib.avi"
    if kind == "unreadable":
        video.write_bytes(b"not a video at all" * 100)
    else:  # a real AVI (MJPG) that opens and holds no frame
        import cv2

        cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 25, (64, 64)).release()
    out = tmp_path / "out"
    proc = edgepose("export", "--weights", yolo11_onnx, "--int8", "--calib", video, "--out", out)
    assert_one_line_error(proc, 3, "not a readable video" if kind == "unreadable" else "no frames in calibration video")
    assert not out.exists() or not list(out.iterdir())


def test_int8_accuracy_gate(yolo11_weights: Path, yolo11_onnx: Path, calib: Path, tmp_path: Path) -> None:
    """``--data`` measures INT8 against FP32 before writing; ``--max-drop`` refuses a graph that
    loses more (here: everything quantised, which loses every keypoint) and writes nothing; a
    calibration folder that holds some of the data's images (a copy counts) is warned about."""
    data = require_shared(COCO8_POSE)
    out = tmp_path / "out"
    overlapping = tmp_path / "calib"
    shutil.copytree(calib, overlapping)
    shutil.copy(next((data.parent / "images" / "val").glob("*.jpg")), overlapping / "copy.jpg")
    # from the checkpoint: its FP32 graph goes into place only with the INT8 one, so nothing is left
    proc = edgepose("export", "--weights", yolo11_weights, "--imgsz", 320, "--int8", "--calib", overlapping,
                    "--keep-float", "none", "--data", data, "--max-drop", 5, "--out", out)  # fmt: skip
    *warnings, last = proc.stderr.splitlines()  # the 3-image calibration warns first
    assert proc.returncode == 5 and last.startswith("error: INT8 loses") and "Traceback" not in proc.stderr
    assert all(line.startswith("warning:") for line in warnings), proc.stderr
    assert any("--data and --calib share 1 image(s)" in line for line in warnings), proc.stderr
    assert "more than --max-drop 5" in last and not out.exists()
    for fmt in ("onnx", "openvino"):
        proc = edgepose("export", "--weights", yolo11_onnx, "--format", fmt, "--int8", "--calib", calib,
                        "--data", data, "--max-drop", 10, "--out", out, "--json", "-")  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        accuracy = json.loads(proc.stdout)["fidelity"]["accuracy"]
        assert accuracy["images"] == 4 and accuracy["persons"] > 0 and accuracy["fp32_pose_map50_95"] > 0.2
        assert accuracy["drop_points"] <= 10 and accuracy["max_drop_points"] == 10
        low, high = accuracy["drop_points_ci95"]
        assert low <= accuracy["drop_points"] <= high
        info = json.loads(edgepose("info", json.loads(proc.stdout)["path"]).stdout)
        assert info["fidelity"]["accuracy"] == accuracy
        if fmt == "openvino":  # NNCF's accuracy-aware quantisation ran (it met 10 points without reverting ops)
            assert info["export_settings"]["accuracy_control"]["max_drop_points"] == 10
    proc = edgepose("export", "--weights", yolo11_onnx, "--int8", "--calib", calib, "--out", out)
    assert proc.returncode == 0 and "accuracy not measured" in proc.stdout
    assert_one_line_error(edgepose("export", "--weights", yolo11_onnx, "--int8", "--calib", calib, "--max-drop", 1,
                                   "--out", out), 3, "--max-drop gates")  # fmt: skip


@pytest.mark.parametrize("precision", ["f32", "bf16", "f16"])
def test_engine_reports_the_precision_openvino_compiled(yolo11_onnx: Path, samples: list[Path], precision: str,
                                                        caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    import cv2
    import openvino as ov

    from edgepose.backends import open_backend
    from edgepose.preprocess import letterbox_tensor

    reference = open_backend(yolo11_onnx, backend="openvino", precision="f32")
    assert reference.engine["precision"] == {"requested": "f32", "compiled": "f32"}  # every CPU runs f32
    with caplog.at_level(logging.WARNING, logger="edgepose"):
        backend = open_backend(yolo11_onnx, backend="openvino", precision=precision)
    compiled = backend.engine["precision"]["compiled"]
    assert backend.engine["precision"]["requested"] == precision and compiled in ("f32", "bf16", "f16")
    capabilities = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    assert compiled != "bf16" or "BF16" in capabilities
    assert compiled != "f16" or "FP16" in capabilities
    # what the report says runs is what runs: the very numbers of f32 exactly when f32 compiled
    tensor, _ = letterbox_tensor(cv2.imread(str(samples[0])), (640, 640))
    assert np.array_equal(reference.run(tensor), backend.run(tensor)) == (compiled == "f32")
    warnings = [r.getMessage() for r in caplog.records if "requested" in r.getMessage()]
    if compiled == precision:
        assert warnings == []
    else:  # asking for what the CPU cannot run names what runs instead
        assert warnings == [f"precision {precision} requested, but OpenVINO CPU runs {compiled} on this CPU "
                            f"(its capabilities: {', '.join(capabilities)})"]  # fmt: skip


def test_predict_info_and_bench_report_requested_and_compiled_precision(yolo11_onnx: Path, samples: list[Path],
                                                                       tmp_path: Path) -> None:  # fmt: skip
    from edgepose.backends import open_backend

    compiled = open_backend(yolo11_onnx, backend="openvino", precision="f16").engine["precision"]["compiled"]
    shown = f"precision {compiled}" + (" (f16 requested)" if compiled != "f16" else "")
    proc = edgepose("predict", samples[0], "-m", yolo11_onnx, "--backend", "openvino", "--precision", "f16",
                    "--json", tmp_path / "r.json")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("engine: ") == 1 and f"engine: OpenVINO CPU, {shown}\n" in proc.stderr, proc.stderr
    proc = edgepose("info", yolo11_onnx, "--backend", "openvino", "--precision", "f16")
    assert proc.returncode == 0, proc.stderr
    engine = json.loads(proc.stdout)["engine"]
    assert engine["precision"] == {"requested": "f16", "compiled": compiled} and engine["execution_devices"] == ["CPU"]
    assert json.loads(edgepose("info", yolo11_onnx).stdout)["engine"]["provider"] == "CPUExecutionProvider"
    proc = edgepose("bench", "-m", yolo11_onnx, "--backend", "openvino", "--precision", "f16", "--runs", "2",
                    "--warmup", "0", "--no-cold-start", "--json", tmp_path / "b.json")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (target,) = json.loads((tmp_path / "b.json").read_text())["targets"]
    assert (target["precision"], target["precision_requested"]) == (compiled, "f16")
    assert f"OpenVINO:CPU, {shown};" in proc.stdout
