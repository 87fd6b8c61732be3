"""Shared fixtures: real graphs exported once per session from real (or architecture-real) weights."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("EDGEPOSE_SHARED_DATA", ROOT.parent / "shared" / "data"))
COCO8_POSE = SHARED_DATA / "coco8-pose" / "coco8-pose.yaml"


def pytest_configure(config: pytest.Config) -> None:
    """Ultralytics is the reference in these tests; make its torchvision import work on CPU torch."""
    from edgepose.export.reference import repair_torchvision

    repair_torchvision()


def edgepose_cli(
    *args: object, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """``python -m edgepose ARGS`` as a user types it, with no stdin."""
    return subprocess.run([sys.executable, "-m", "edgepose", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, stdin=subprocess.DEVNULL)  # fmt: skip


def assert_one_line_error(proc: subprocess.CompletedProcess, code: int, fragment: str) -> None:
    """The CLI's contract for bad input: one ``error:`` line, the documented exit code, no traceback."""
    assert proc.returncode == code, proc.stderr
    assert proc.stderr.startswith("error:") and proc.stderr.count("\n") == 1, proc.stderr
    assert "Traceback" not in proc.stderr and fragment in proc.stderr


def require_shared(path: Path) -> Path:
    """Skip, naming the path, when the shared data beside the checkout is absent."""
    if not path.exists():
        pytest.skip(f"shared data not found at {path} (it lives in ../shared/data beside the checkout)")
    return path


@pytest.fixture(scope="session")
def samples() -> list[Path]:
    from edgepose.sources import sample_images

    return sample_images()


@pytest.fixture(scope="session")
def yolo11_weights() -> Path:
    from edgepose.export.weights import default_weights

    return default_weights()


@pytest.fixture(scope="session")
def yolo11_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The README's main export: default weights, static 640."""
    from edgepose.export import export_pose

    return Path(export_pose(out=tmp_path_factory.mktemp("yolo11-static")).path)


@pytest.fixture(scope="session")
def yolo11_dynamic_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edgepose.export import export_pose

    return Path(export_pose(dynamic=True, out=tmp_path_factory.mktemp("yolo11-dynamic")).path)


@pytest.fixture(scope="session")
def yolo11_int8_onnx(yolo11_onnx: Path, samples: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """INT8 of the static graph (onnxruntime static QDQ, by edgepose's export), calibrated on the bundled photos."""
    from edgepose.export.pipeline import export_model

    calib = tmp_path_factory.mktemp("calib-samples")
    for sample in samples:
        shutil.copy(sample, calib)
    return Path(export_model(yolo11_onnx, int8=True, calib=calib, out=tmp_path_factory.mktemp("yolo11-int8"))[-1].path)


@pytest.fixture(scope="session")
def yolo11_ir(yolo11_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The static graph as FP32 OpenVINO IR (a folder, by edgepose's export)."""
    from edgepose.export.pipeline import export_model

    return Path(export_model(yolo11_onnx, format="openvino", out=tmp_path_factory.mktemp("yolo11-ir"))[-1].path)


@pytest.fixture(scope="session")
def yolov8_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A YOLOv8-pose checkpoint built from Ultralytics' yolov8n-pose.yaml (no real v8 weights offline)."""
    import torch
    from ultralytics import YOLO

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("yolov8") / "yolov8n-pose-scratch.pt"
    YOLO("yolov8n-pose.yaml").save(str(path))
    return path


@pytest.fixture(scope="session")
def yolov8_onnx(yolov8_weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edgepose.export import export_pose

    return Path(export_pose(yolov8_weights, out=tmp_path_factory.mktemp("yolov8-static")).path)


@pytest.fixture(scope="session")
def detect_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real Ultralytics *detection* graph (YOLOv8n architecture), to be refused as not-pose."""
    from ultralytics import YOLO

    work = tmp_path_factory.mktemp("detect")
    weights = work / "yolov8n-detect.pt"
    YOLO("yolov8n.yaml").save(str(weights))
    return Path(YOLO(str(weights)).export(format="onnx", imgsz=320))


SAMPLE_VIDEO_FRAMES_EACH = 10  # frames per bundled photo in the test video (bus.jpg, then zidane.jpg)


@pytest.fixture(scope="session")
def sample_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real video made from the bundled photos: each shown for 10 frames at 25 fps, 640x360,
    shifted a few pixels from frame to frame (edgepose.video.sample_video)."""
    from edgepose.video import sample_video as make

    return make(tmp_path_factory.mktemp("video") / "samples.mp4", frames_each=SAMPLE_VIDEO_FRAMES_EACH,
                size=(640, 360))  # fmt: skip


@pytest.fixture(scope="session")
def yolo26_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A YOLO26-pose checkpoint (Ultralytics' yolo26n-pose.yaml, with what fits of yolo11n-pose's
    weights) trained 200 epochs on coco8-pose's 8 photos: scores up to ~0.3 on them, not flat."""
    from .trained_models import dataset, train

    coco8 = require_shared(COCO8_POSE).parent
    from edgepose.export.weights import default_weights

    work = tmp_path_factory.mktemp("yolo26")
    return train("yolo26n-pose.yaml", dataset(coco8, work), work, default_weights(), epochs=200)


@pytest.fixture(scope="session")
def nms_free_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """YOLO11n-pose with a one-to-one (NMS-free) head copied from its trained one-to-many head."""
    from edgepose.export.weights import default_weights

    from .trained_models import one_to_one

    return one_to_one(default_weights(), tmp_path_factory.mktemp("nms-free"))


@pytest.fixture(scope="session")
def custom_weights(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """YOLO11n-pose with custom keypoint sets (trained from yolo11n-pose's weights on rewritten
    coco8-pose labels): ``body21`` (kpt_shape [21, 3], classes near/far), ``face5`` ([5, 2])."""
    from edgepose.export.weights import default_weights

    from .trained_models import dataset, train

    coco8 = require_shared(COCO8_POSE).parent
    out = {}
    for layout in ("body21", "face5"):
        work = tmp_path_factory.mktemp(layout)
        out[layout] = train("yolo11n-pose.yaml", dataset(coco8, work, layout), work, default_weights(), epochs=60,
                            lr0=0.0005)  # fmt: skip
    return out
