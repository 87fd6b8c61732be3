"""edgepose val computes mAP as Ultralytics' validator does, and agrees with `yolo val` on real data."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import edgepose
from edgepose.errors import InputError
from edgepose.keypoints import COCO_SIGMAS
from edgepose.val import (
    ImageMatches,
    average_precision,
    box_iou,
    keypoint_oks,
    keypoint_spec,
    load_dataset,
    map_delta_interval,
    match,
    match_images,
    pooled_map,
)

from .conftest import COCO8_POSE, assert_one_line_error, require_shared
from .trained_models import dataset


def test_oks_and_iou_equal_ultralytics() -> None:
    from ultralytics.utils.metrics import box_iou as u_box_iou
    from ultralytics.utils.metrics import kpt_iou

    rng = np.random.default_rng(1)
    gt = rng.uniform(0, 100, (5, 17, 3))
    gt[..., 2] = rng.integers(0, 3, (5, 17))
    pred = gt[rng.integers(0, 5, 7)] + rng.normal(0, 3, (7, 17, 3))
    area = rng.uniform(100, 5000, 5)
    ours = keypoint_oks(gt, pred, area, np.asarray(COCO_SIGMAS))
    theirs = kpt_iou(torch.tensor(gt), torch.tensor(pred), torch.tensor(area), sigma=list(COCO_SIGMAS)).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-6)
    a = np.sort(rng.uniform(0, 100, (6, 2, 2)), axis=1).reshape(6, 4)[:, [0, 2, 1, 3]]
    b = np.sort(rng.uniform(0, 100, (4, 2, 2)), axis=1).reshape(4, 4)[:, [0, 2, 1, 3]]
    np.testing.assert_allclose(box_iou(a, b), u_box_iou(torch.tensor(a), torch.tensor(b)).numpy(), rtol=1e-6)


def test_matching_and_ap_equal_ultralytics() -> None:
    """Several classes: a prediction matches only labels of its class, AP is per class and mAP their
    mean over the classes with labels (class 3 has labels and no prediction: AP 0)."""
    from ultralytics.models.yolo.pose.val import PoseValidator
    from ultralytics.utils.metrics import ap_per_class

    rng = np.random.default_rng(2)
    validator = PoseValidator()
    images = []
    for _ in range(30):
        sim = rng.uniform(0, 1, (rng.integers(0, 6), rng.integers(0, 9))) ** 0.5
        true, pred = rng.integers(0, 4, sim.shape[0]), rng.integers(0, 3, sim.shape[1])
        ours = match(sim, true[:, None] == pred[None])
        if sim.size:
            theirs = validator.match_predictions(torch.tensor(pred), torch.tensor(true), torch.tensor(sim))
            np.testing.assert_array_equal(ours, theirs.numpy())
        conf = np.sort(rng.uniform(0, 1, sim.shape[1]))[::-1]
        images.append(ImageMatches(ours, ours, conf, pred, true))
    pooled = pooled_map(images)
    tp, conf = np.concatenate([m.tp_pose for m in images]), np.concatenate([m.scores for m in images])
    pred, true = np.concatenate([m.classes for m in images]), np.concatenate([m.target_classes for m in images])
    theirs_ap = ap_per_class(tp, conf, pred, true)[5]
    assert pooled["classes"] == len(theirs_ap) == 4
    assert (
        abs(pooled["pose_map50_95"] - theirs_ap.mean()) < 1e-12
        and abs(pooled["pose_map50"] - theirs_ap[:, 0].mean()) < 1e-12
    )
    one = [ImageMatches(m.tp_pose, m.tp_pose, m.scores, m.classes * 0, m.target_classes * 0) for m in images]
    ap_one = ap_per_class(tp, conf, pred * 0, true * 0)[5][0]
    np.testing.assert_allclose(average_precision(tp, conf, len(true)), ap_one, atol=1e-12)
    assert abs(pooled_map(one)["pose_map50_95"] - ap_one.mean()) < 1e-12


def test_perfect_predictions_score_one() -> None:
    sim = np.eye(3)
    ap = average_precision(match(sim), np.array([0.9, 0.8, 0.7]), 3)
    assert np.allclose(ap, 0.995)  # 101-point interpolation tops out at 0.995, as in Ultralytics
    assert np.allclose(average_precision(match(sim * 0.6), np.array([0.9, 0.8, 0.7]), 3)[3:], 0.0)


def test_val_agrees_with_ultralytics_val(yolo11_onnx: Path, tmp_path: Path) -> None:
    data = require_shared(COCO8_POSE)
    from edgepose.export.reference import ultralytics_model

    proc = subprocess.run([sys.executable, "-m", "edgepose", "val", data, "-m", yolo11_onnx, "--json",
                           tmp_path / "val.json"], capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    ours = json.loads((tmp_path / "val.json").read_text())
    ref = ultralytics_model(str(yolo11_onnx)).val(data=str(data), imgsz=640, batch=1, plots=False, verbose=False,
                                                  device="cpu", project=str(tmp_path), name="val")  # fmt: skip
    assert ours["instances"] > 0
    assert abs(ours["pose_map50_95"] - ref.pose.map) <= 0.005
    assert abs(ours["pose_map50"] - ref.pose.map50) <= 0.005
    assert abs(ours["box_map50_95"] - ref.box.map) <= 0.005
    assert ours["pose_map50_95"] > 0.2  # a real model on real people, not an empty evaluation


def test_val_reads_dataset_sigmas_and_classes_as_ultralytics(yolo11_onnx: Path, tmp_path: Path) -> None:
    """A dataset's own OKS sigmas are used, and labels of classes the model cannot predict (a
    one-class model on a two-class dataset) are left out with a warning: as ``yolo val`` does."""
    from edgepose.export.reference import ultralytics_model

    sigmas = [round(2 * s, 4) for s in COCO_SIGMAS]  # looser than COCO's: every OKS rises
    data = dataset(require_shared(COCO8_POSE).parent, tmp_path, "near-far")  # persons near (class 0) and far (1)
    data.write_text(data.read_text() + f"kpt_oks_sigmas: {sigmas}\n")
    proc = subprocess.run([sys.executable, "-m", "edgepose", "val", data, "-m", yolo11_onnx, "--json",
                           tmp_path / "val.json"], capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    ours = json.loads((tmp_path / "val.json").read_text())
    assert ours["labels_left_out"] > 0 and ours["instances"] > 0 and ours["classes"] == 1
    assert f"warning: {ours['labels_left_out']} label(s) of classes the model cannot predict" in proc.stderr
    ref = ultralytics_model(str(yolo11_onnx)).val(data=str(data), imgsz=640, batch=1, plots=False, verbose=False,
                                                  device="cpu", project=str(tmp_path), name="val")  # fmt: skip
    assert abs(ours["pose_map50_95"] - ref.pose.map) <= 0.005
    assert abs(ours["box_map50_95"] - ref.box.map) <= 0.005
    images, spec = load_dataset(data)
    assert spec.sigmas.tolist() == sigmas
    coco = pooled_map(match_images(edgepose.load(yolo11_onnx, conf=0.001), images, keypoint_spec((17, 3))))
    assert ours["pose_map50_95"] > coco["pose_map50_95"] + 0.02  # the sigmas were read, not COCO's


def test_val_reads_lists_labels_and_folders_as_ultralytics(yolo11_onnx: Path, tmp_path: Path) -> None:
    """coco8-pose's val photos given as Ultralytics reads them, through what it tolerates: a .txt list
    with a byte-order mark whose "./" lines are relative to the list's own folder (and a line that
    names no image), a label row repeated (one person), macOS's hidden ``._`` files beside the
    photos. The figures are those of the plain dataset (a repeated row was scored as a second
    person nobody could match: 0.3330 against 0.3687)."""
    coco8 = require_shared(COCO8_POSE).parent
    root = tmp_path / "messy"
    shutil.copytree(coco8 / "images" / "val", root / "lists" / "images")
    shutil.copytree(coco8 / "labels" / "val", root / "lists" / "labels")
    first = sorted((root / "lists" / "labels").glob("*.txt"))[0]
    first.write_text(first.read_text().splitlines()[0] + "\n" + first.read_text())
    photos = sorted((root / "lists" / "images").glob("*.jpg"))
    (root / "lists" / "images" / f"._{photos[0].name}").write_bytes(b"\x00\x05\x16\x07")
    lines = ["# coco8 val"] + [f"./images/{p.name}" for p in photos]
    (root / "lists" / "val.txt").write_text("\ufeff" + "\n".join(lines) + "\n", encoding="utf-8")
    (root / "data.yaml").write_text(f"path: {root}\nval: lists/val.txt\nkpt_shape: [17, 3]\nnames: {{0: person}}\n")
    (root / "folder.yaml").write_text(f"path: {root}\nval: lists/images\nkpt_shape: [17, 3]\nnames: {{0: person}}\n")
    predictor = edgepose.load(yolo11_onnx, conf=0.001)
    plain = pooled_map(match_images(predictor, *load_dataset(require_shared(COCO8_POSE))))
    for data in ("data.yaml", "folder.yaml"):
        images, spec = load_dataset(root / data)
        assert [p.name for p in images] == [p.name for p in photos], data
        assert pooled_map(match_images(predictor, images, spec)) == plain, data


def test_map_delta_interval_on_real_data(yolo11_dynamic_onnx: Path) -> None:
    """A graph against itself: delta and interval exactly 0. Against the same graph fed 256-pixel
    inputs (a real loss of detail): the delta is negative and lies inside its interval."""
    images, spec = load_dataset(require_shared(COCO8_POSE))
    full = match_images(edgepose.load(yolo11_dynamic_onnx, conf=0.001), images, spec)
    same = map_delta_interval(full, full, resamples=200)
    assert same["delta"] == same["ci95_low"] == same["ci95_high"] == 0.0
    small = match_images(edgepose.load(yolo11_dynamic_onnx, conf=0.001, imgsz=256), images, spec)
    worse = map_delta_interval(full, small, resamples=500)
    assert worse["delta"] < -0.05
    assert worse["ci95_low"] <= worse["delta"] <= worse["ci95_high"] and worse["ci95_low"] < worse["ci95_high"]


def test_val_bad_dataset(yolo11_onnx: Path, tmp_path: Path) -> None:
    bad = tmp_path / "data.yaml"
    bad.write_text("train: images/train\n")
    proc = subprocess.run([sys.executable, "-m", "edgepose", "val", bad, "-m", yolo11_onnx], capture_output=True,
                          text=True)  # fmt: skip
    assert proc.returncode == 3 and proc.stderr.startswith("error:") and "no 'val' split" in proc.stderr
    bad.write_text("val: images\nkpt_shape: [17, 3]\nkpt_oks_sigmas: [0.1, 0.2]\n")
    (tmp_path / "images").mkdir()
    proc = subprocess.run([sys.executable, "-m", "edgepose", "val", bad, "-m", yolo11_onnx], capture_output=True,
                          text=True)  # fmt: skip
    assert_one_line_error(proc, 3, "kpt_oks_sigmas must be 17 positive values")


def test_label_files_are_found_as_ultralytics_finds_them(tmp_path: Path) -> None:
    """The last ``images`` folder becomes ``labels``; a photo in no ``images`` folder has its label beside it."""
    from edgepose.val import read_labels

    for image, label in [("d/images/val/a.jpg", "d/labels/val/a.txt"), ("d/pics/a.jpg", "d/pics/a.txt")]:
        (tmp_path / label).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / label).write_text("0 0.5 0.5 0.2 0.4" + " 0.5 0.5 2" * 17 + "\n")
        assert len(read_labels(tmp_path / image, 100, 100, (17, 3)).boxes) == 1, image


def test_map_delta_interval_needs_labels() -> None:
    empty = np.zeros((0, 10), bool)
    unlabelled = [ImageMatches(empty, empty, np.zeros(0), np.zeros(0, int), np.zeros(0, int), 0)] * 3
    with pytest.raises(InputError, match="none of the images holds a label"):
        map_delta_interval(unlabelled, unlabelled, resamples=10)
