"""The shipped yoga classifier: its ONNX contract, its invariances, and the CLI verbs around it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import edgepose
from edgepose.classifier import KeypointClassifier
from edgepose.keypoint_csv import read_table

from .conftest import ROOT, SHARED_DATA, require_shared
from .conftest import edgepose_cli as run

YOGA = ROOT / "models" / "yoga-classifier.onnx"
YOGA_CSV = SHARED_DATA / "yoga_pose_keypoint.csv"


@pytest.fixture(scope="module")
def clf() -> KeypointClassifier:
    return KeypointClassifier(YOGA)


def _pose(rng: np.random.Generator, n: int = 6) -> np.ndarray:
    kpts = np.ones((n, 17, 3), np.float32)
    kpts[..., :2] = rng.uniform(0.2, 0.8, (n, 17, 2))
    return kpts


def test_contract(clf: KeypointClassifier) -> None:
    assert clf.names == ["Downdog", "Goddess", "Plank", "Tree", "Warrior2"]
    assert clf.keypoint_names == edgepose.COCO_KEYPOINTS
    probs = clf.probs(_pose(np.random.default_rng(0)))
    assert probs.shape == (6, 5) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)
    assert clf.probs(np.zeros((0, 17, 3), np.float32)).shape == (0, 5)
    assert clf.report["accuracy"] >= 0.96


def test_invariant_to_position_and_size(clf: KeypointClassifier) -> None:
    kpts = _pose(np.random.default_rng(1))
    moved = kpts.copy()
    moved[..., :2] = kpts[..., :2] * 0.5 + 0.1
    np.testing.assert_allclose(clf.probs(kpts), clf.probs(moved), atol=1e-4)


def test_low_confidence_is_the_same_as_missing(clf: KeypointClassifier) -> None:
    kpts = _pose(np.random.default_rng(2))
    low, zero = kpts.copy(), kpts.copy()
    low[:, [7, 13], 2] = 0.2
    zero[:, [7, 13]] = 0
    np.testing.assert_allclose(clf.probs(low), clf.probs(zero), atol=1e-6)


def test_predict_adds_labels(yolo11_onnx: Path, samples: list[Path]) -> None:
    proc = run("predict", samples[0], "-m", yolo11_onnx, "--classifier", YOGA, "--json", "-")
    assert proc.returncode == 0, proc.stderr
    persons = json.loads(proc.stdout)[0]["persons"]
    assert len(persons) == 4
    assert all(p["label"] in KeypointClassifier(YOGA).names and 0.2 < p["label_score"] <= 1 for p in persons)


def test_eval_reaches_the_issue_figure_on_the_seed_csv() -> None:
    data = require_shared(YOGA_CSV)
    proc = run("eval", YOGA, data, "--json", "-")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["rows"] == 1006 and report["accuracy"] >= 0.96
    assert np.array(report["confusion"]).sum() == 1006


def test_csv_without_conf_marks_placed_points() -> None:
    table = read_table(require_shared(YOGA_CSV))
    assert table.keypoints.shape == (1006, 17, 3)
    assert set(np.unique(table.keypoints[..., 2])) <= {0.0, 1.0}


def test_train_cli_writes_graph_and_report(tmp_path: Path) -> None:
    data = require_shared(YOGA_CSV)
    proc = run("train", data, "--out", tmp_path, "--epochs", "5", "--name", "quick")
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "quick.report.json").read_text())
    assert report["test_rows"] == 202 and report["extra"]["onnx_vs_trained"]["argmax_equal"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["quick.onnx", "quick.onnx.sha256", "quick.report.json"]
    assert KeypointClassifier(tmp_path / "quick.onnx", verify=True).names == report["classes"]


def test_train_svc_exports_under_the_same_contract(tmp_path: Path) -> None:
    """The SVC graph (torch features + skl2onnx SVC joined with onnx.compose) takes [N,17,3] -> probs
    and matches sklearn (checked at export); it must still classify with keypoints missing."""
    data = require_shared(YOGA_CSV)
    proc = run("train", data, "--model", "svc", "--out", tmp_path, "--name", "svc")
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "svc.report.json").read_text())
    assert report["model"] == "svc" and report["extra"]["onnx_vs_trained"]["max_abs_prob"] <= 1e-4
    assert report["accuracy"] >= 0.95 and report["accuracy_two_missing"] >= 0.9
    clf = KeypointClassifier(tmp_path / "svc.onnx")
    table = read_table(data)
    probs = clf.probs(table.keypoints[:8])
    assert probs.shape == (8, 5) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert clf.report["model"] == "svc"


def test_dataset_builder_round_trip(yolo11_onnx: Path, samples: list[Path], tmp_path: Path) -> None:
    images = tmp_path / "images"
    for label, sample in zip(["Tree", "Plank"], samples):
        (images / label).mkdir(parents=True)
        (images / label / sample.name).write_bytes(sample.read_bytes())
    (images / "Plank" / "black.png").write_bytes(__import__("cv2").imencode(".png", np.zeros((64, 64, 3), np.uint8))[1])
    out = tmp_path / "k.csv"
    proc = run("dataset", images, "-m", yolo11_onnx, "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert "black.png: no person found" in proc.stderr  # reported, not silently dropped
    table = read_table(out)
    assert table.labels == ["Plank", "Tree"] and table.keypoints.shape == (2, 17, 3)
    assert 0 <= table.keypoints[..., :2].min() and table.keypoints[..., :2].max() <= 1
    assert run("eval", YOGA, out).returncode == 0  # the CSV it writes is one eval reads
