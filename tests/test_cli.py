"""The CLI end to end, in subprocesses, as a user types it: results, files, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from .conftest import assert_one_line_error
from .conftest import edgepose_cli as edgepose


def test_predict_json_schema_and_annotated_images(yolo11_onnx: Path, samples: list[Path], tmp_path: Path) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    for s in samples:
        (folder / s.name).write_bytes(s.read_bytes())
    out = tmp_path / "out"
    proc = edgepose("predict", folder, "--model", yolo11_onnx, "--json", out / "r.json", "--save", out)
    assert proc.returncode == 0, proc.stderr
    results = json.loads((out / "r.json").read_text())
    assert [Path(r["image"]).name for r in results] == ["bus.jpg", "zidane.jpg"]
    bus, zidane = results
    assert (bus["width"], bus["height"]) == (810, 1080) and len(bus["persons"]) == 4
    assert len(zidane["persons"]) == 2
    for person in bus["persons"] + zidane["persons"]:
        assert set(person) == {"box", "score", "keypoints"}
        x1, y1, x2, y2 = person["box"]
        assert 0 <= x1 < x2 <= 1280 and 0 <= y1 < y2 <= 1080 and 0.25 < person["score"] <= 1
        assert np.array(person["keypoints"]).shape == (17, 3)
    for s in samples:
        annotated = cv2.imread(str(out / s.name))
        assert annotated.shape == cv2.imread(str(s)).shape
        assert not np.array_equal(annotated, cv2.imread(str(s)))  # something was drawn


def test_predict_thresholds_change_results(yolo11_onnx: Path, samples: list[Path]) -> None:
    low = json.loads(edgepose("predict", samples[0], "-m", yolo11_onnx, "--conf", "0.01", "--json", "-").stdout)
    one = json.loads(edgepose("predict", samples[0], "-m", yolo11_onnx, "--max-det", "1", "--json", "-").stdout)
    assert len(low[0]["persons"]) > 4 and len(one[0]["persons"]) == 1


def test_info_prints_metadata(yolo11_onnx: Path) -> None:
    proc = edgepose("info", yolo11_onnx)
    info = json.loads(proc.stdout)
    assert info["task"] == "pose" and info["kpt_shape"] == [17, 3] and info["input_shape"] == [640, 640]
    assert info["keypoint_names"][0] == "nose" and info["source_file"] == "yolo11n-pose.pt"


def test_unavailable_device_falls_back_with_warning(yolo11_onnx: Path, samples: list[Path]) -> None:
    proc = edgepose("predict", samples[0], "-m", yolo11_onnx, "--device", "cuda", "--json", "-")
    assert proc.returncode == 0
    assert "warning: device 'cuda': CUDAExecutionProvider not available" in proc.stderr
    assert len(json.loads(proc.stdout)[0]["persons"]) == 4


def test_tensorrt_and_cuda_options_are_built_and_handed_over(yolo11_onnx: Path, samples: list[Path],
                                                             tmp_path: Path) -> None:  # fmt: skip
    """--device tensorrt: engine and timing caches in --trt-cache, FP16 kernels with --precision f16, handed to
    onnxruntime for each provider it has; where it has neither, a warning each and the CPU's very results."""
    import onnxruntime as ort

    from edgepose.backends import open_backend, provider_options

    cache = tmp_path / "trt"
    built = dict(provider_options("tensorrt", "f16", cache))
    assert list(built) == ["TensorrtExecutionProvider", "CUDAExecutionProvider"]
    trt = built["TensorrtExecutionProvider"]
    assert trt["trt_fp16_enable"] == trt["trt_engine_cache_enable"] == trt["trt_timing_cache_enable"] == "True"
    assert trt["trt_engine_cache_path"] == trt["trt_timing_cache_path"] == str(cache)
    assert dict(provider_options("tensorrt"))["TensorrtExecutionProvider"]["trt_fp16_enable"] == "False"
    assert dict(provider_options("cuda")) == {"CUDAExecutionProvider": built["CUDAExecutionProvider"]}
    assert provider_options("cpu") == []
    backend = open_backend(yolo11_onnx, device="tensorrt", precision="f16", trt_cache=cache)
    available = ort.get_available_providers()
    session = backend.session.get_provider_options()  # what onnxruntime holds, per registered provider
    for provider, options in built.items():
        if provider in available and provider in backend.providers:  # onnxruntime-gpu with its libraries
            held = {k: {"True": "1", "False": "0"}.get(v, v) for k, v in options.items()}
            assert {k: session[provider][k] for k in held} == held and backend.provider_options[provider] == options
        else:
            assert provider not in backend.provider_options
    if "TensorrtExecutionProvider" not in available:
        cpu = edgepose("predict", samples[0], "-m", yolo11_onnx, "--json", "-")
        proc = edgepose("predict", samples[0], "-m", yolo11_onnx, "--device", "tensorrt", "--precision", "f16",
                        "--trt-cache", cache, "--json", "-")  # fmt: skip
        assert proc.returncode == 0 and proc.stdout == cpu.stdout, proc.stderr
        assert proc.stderr.splitlines() == [
            "warning: device 'tensorrt': TensorrtExecutionProvider, CUDAExecutionProvider not available in this "
            "onnxruntime; using CPUExecutionProvider",
            "warning: precision f16 requested, but onnxruntime's CPUExecutionProvider runs the graph's own types "
            "(precision is OpenVINO's CPU setting, and f16 TensorRT's)",
            "engine: onnxruntime CPUExecutionProvider, precision as the graph (f16 requested)"]  # fmt: skip


def test_compare_two_result_files(yolo11_onnx: Path, samples: list[Path], tmp_path: Path) -> None:
    """compare A.json B.json: runs made elsewhere (the arm64 check's x86 vs arm64), paired by image name."""
    from edgepose.results import Result

    classifier = Path(__file__).resolve().parent.parent / "models" / "yoga-classifier.onnx"
    runs = {}
    for name, conf in (("all", "0.25"), ("sure", "0.8")):
        runs[name] = tmp_path / f"{name}.json"
        proc = edgepose("predict", "-m", yolo11_onnx, "-c", classifier, "--conf", conf, "--json", runs[name])
        assert proc.returncode == 0, proc.stderr
    records = json.loads(runs["all"].read_text())
    assert [Result.from_dict(r).to_dict() for r in records] == records  # the JSON reads back as it was written
    sure = sum(len(r["persons"]) for r in json.loads(runs["sure"].read_text()))
    report = json.loads(edgepose("compare", runs["all"], runs["sure"], "--json", "-").stdout)
    assert report["images"] == 2 and report["persons"] == {"matched": sure, "missed": 6 - sure, "extra": 0}
    assert 0 < sure < 6 and report["keypoint_drift_px"]["max"] == 0.0 and report["box_iou_mean"] == 1.0
    assert report["labels"] == {"compared": sure, "same": sure}  # "no known pose" (null) compared too
    assert set(report["per_keypoint_drift_px"]) >= {"nose", "left_ankle"}
    one = tmp_path / "one.json"
    one.write_text(json.dumps(records[:1]))
    assert_one_line_error(edgepose("compare", runs["all"], one), 3, "hold different images or frames")
    assert_one_line_error(edgepose("compare", runs["all"], runs["sure"], "--images", tmp_path), 3,
                          "two JSON files are compared as they are")  # fmt: skip
    (tmp_path / "bad.json").write_text("[{}]")
    assert_one_line_error(edgepose("compare", runs["all"], tmp_path / "bad.json"), 3, "not a predict --json file")


def test_python_api(yolo11_onnx: Path, samples: list[Path]) -> None:
    import edgepose as ep

    predictor = ep.load(yolo11_onnx)
    result = predictor(cv2.imread(str(samples[1])))
    assert len(result) == 2
    person = max(result.persons, key=lambda p: p.box[0])
    assert np.array_equal(person.keypoint("left_wrist"), person.keypoint(ep.Keypoint.LEFT_WRIST))
    assert np.array_equal(person.keypoint(9), person.keypoints[9])
    with pytest.raises(ep.InputError):
        predictor(np.zeros((10, 10), np.uint8))
    with pytest.raises(ep.ModelError):
        ep.load("nope.onnx")
    black = predictor(np.zeros((480, 640, 3), np.uint8))
    assert len(black) == 0


def test_spin_changes_how_threads_wait_not_results(yolo11_onnx: Path, samples: list[Path]) -> None:
    """--spin gives back onnxruntime's busy-waiting threads (off by default) and nothing else."""
    import edgepose as ep

    def spinning(predictor: ep.PosePredictor) -> str:
        return predictor.backend.session.get_session_options().get_session_config_entry(
            "session.intra_op.allow_spinning"
        )

    plain, spin = ep.load(yolo11_onnx), ep.load(yolo11_onnx, spin=True)
    assert (spinning(plain), spinning(spin)) == ("0", "1")
    image = cv2.imread(str(samples[0]))
    assert plain(image).to_dict() == spin(image).to_dict()
    runs = [edgepose("predict", samples[0], "-m", yolo11_onnx, "--json", "-", *flag) for flag in ([], ["--spin"])]
    assert all(r.returncode == 0 for r in runs), [r.stderr for r in runs]
    assert json.loads(runs[0].stdout) == json.loads(runs[1].stdout)
