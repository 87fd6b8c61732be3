"""The shipped yoga classifier: its ONNX contract, its invariances, "no known pose", and the CLI verbs around it."""

from __future__ import annotations

import csv
import importlib.util
import json
import logging
from pathlib import Path

import numpy as np
import pytest

import edgepose
from edgepose.classifier import KeypointClassifier
from edgepose.keypoint_csv import KeypointTable, format_table, read_table
from edgepose.metadata import sha256_file
from edgepose.sources import list_images

from .conftest import ROOT, SHARED_DATA, assert_one_line_error, require_shared
from .conftest import edgepose_cli as run

YOGA = ROOT / "models" / "yoga-classifier.onnx"
YOGA_CSV = SHARED_DATA / "yoga_pose_keypoint.csv"
OLD_YOGA = ROOT / "tests" / "data" / "yoga-classifier-0.1.onnx"  # shipped before "no known pose": no reject metadata
COCO8_IMAGES = SHARED_DATA / "coco8-pose" / "images" / "train"


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
    kpts = _pose(np.random.default_rng(0))
    out = clf.outputs(kpts)
    assert out.shape == (6, 6) and out.dtype == np.float32  # the five poses, then "none"
    np.testing.assert_allclose(out.sum(1), 1, atol=1e-5)
    probs = clf.probs(kpts)
    assert probs.shape == (6, 5)
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)
    assert clf.probs(np.zeros((0, 17, 3), np.float32)).shape == (0, 5)
    assert clf.threshold is not None and 0 < clf.threshold < 1
    assert clf.report["accuracy"] >= 0.95 and clf.report["false_accept_held_out"] <= 0.05


def test_info_shows_the_classifier_and_its_threshold(clf: KeypointClassifier) -> None:
    proc = run("info", YOGA)
    assert proc.returncode == 0, proc.stderr
    meta = json.loads(proc.stdout)
    assert meta["task"] == "pose-classifier" and meta["names"] == clf.names
    assert meta["reject"]["threshold"] == clf.threshold and meta["report"]["accuracy"] == clf.report["accuracy"]


def test_too_little_of_the_body_is_no_known_pose(clf: KeypointClassifier) -> None:
    """Inside the graph: fewer than 4 placed body keypoints (shoulders to ankles) is "none", whatever the rest."""
    kpts = _pose(np.random.default_rng(3))
    kpts[:, 5:, 2] = 0
    kpts[:, 5:8, 2] = 1  # 3 body points
    out = clf.outputs(kpts)
    np.testing.assert_allclose(out[:, -1], 1, atol=1e-6)
    assert (clf.decide(kpts)[0] == -1).all()


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


def test_standing_people_get_no_label(yolo11_onnx: Path, samples: list[Path]) -> None:
    """The README's first command: the pedestrians of bus.jpg hold no yoga pose. Each gets label null,
    no label score, and the pose score that decided it (below the graph's threshold)."""
    proc = run("predict", samples[0], "-m", yolo11_onnx, "--classifier", YOGA, "--json", "-")
    assert proc.returncode == 0, proc.stderr
    persons = json.loads(proc.stdout)[0]["persons"]
    threshold = KeypointClassifier(YOGA).threshold
    standing = [p for p in persons if p["score"] >= 0.5]
    assert len(persons) == 4 and len(standing) >= 3
    assert all(p["label"] is None and p["label_score"] is None and 0 <= p["pose_score"] < threshold for p in standing)
    assert list(persons[0]) == ["box", "score", "keypoints", "label", "label_score", "pose_score"]


def test_a_graph_from_before_rejection_labels_as_before(yolo11_onnx: Path, samples: list[Path]) -> None:
    """The shipped graph of edgepose 0.1 (no reject metadata, [N, 5] output) still loads and gives every
    person the argmax label, with no pose_score in the JSON."""
    old = KeypointClassifier(OLD_YOGA)
    assert old.threshold is None and old.outputs(_pose(np.random.default_rng(4))).shape == (6, 5)
    proc = run("predict", samples[0], "-m", yolo11_onnx, "--classifier", OLD_YOGA, "--json", "-")
    assert proc.returncode == 0, proc.stderr
    persons = json.loads(proc.stdout)[0]["persons"]
    assert len(persons) == 4 and all(p["label"] in old.names and 0.2 < p["label_score"] <= 1 for p in persons)
    assert all("pose_score" not in p for p in persons)
    kpts = np.array([p["keypoints"] for p in persons], np.float32) / [810, 1080, 1]  # bus.jpg's size
    assert [old.names[i] for i in old.outputs(kpts).argmax(1)] == [p["label"] for p in persons]


def test_eval_reaches_the_issue_figure_on_the_seed_csv() -> None:
    data = require_shared(YOGA_CSV)
    proc = run("eval", YOGA, data, "--json", "-")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["rows"] == 1006 and report["accuracy"] >= 0.95 and report["classes"][-1] == "none"
    assert (
        np.array(report["confusion"]).sum() == 1006 and report["no_pose"] == np.array(report["confusion"])[:, -1].sum()
    )


def test_label_review_covers_every_yoga_train_photo() -> None:
    """benchmarks/yoga_train_review.csv, the photo-by-photo review behind the classifier benchmark's
    reviewed-label figures: one verdict per yoga-train photo (ok, variant, other, or the class it shows),
    what a photo shows wherever that is not its folder's pose, and each row's hash that of the photo in
    ../shared (a photo whose bytes changed drops out of those figures)."""
    with (ROOT / "benchmarks" / "yoga_train_review.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    classes = {r["label"] for r in rows}
    assert len(rows) == len({(r["label"], r["image_name"]) for r in rows}) == 1080 and len(classes) == 5
    assert {r["review"] for r in rows} <= {"ok", "variant", "other"} | classes
    assert all(r["shown"] for r in rows if r["review"] != "ok") and all(r["review"] != r["label"] for r in rows)
    folder = require_shared(SHARED_DATA / "yoga-train")
    photos = {(label, path.name) for label in classes for path in list_images(folder / label)}
    assert photos == {(r["label"], r["image_name"]) for r in rows}
    assert all(sha256_file(folder / r["label"] / r["image_name"]) == r["sha256"] for r in rows)


def test_reviewed_label_figures_keep_and_score_the_right_photos() -> None:
    """The benchmark's reviewed-label scoring: a photo relabelled to another class is right when given that
    class, a variant counts under its folder's label in ``family`` and not at all in ``strict``, and a pose
    outside the classes (or a photo the review never saw) in neither."""
    spec = importlib.util.spec_from_file_location("classifier_accuracy", ROOT / "benchmarks" / "classifier_accuracy.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    said = ["Plank", "Tree", "Plank", "Plank", None, "Tree"]
    labels = ["Plank", "Plank", "Plank", "Plank", "Tree", "Tree"]
    reviewed = ["Plank", "Tree", "variant", "Tree", "other", None]
    right, scopes = bench.reviewed_scopes(said, labels, reviewed, ["Plank", "Tree"])
    assert right.tolist() == [True, True, True, False, False, True]
    assert scopes["family"].tolist() == [True, True, True, True, False, False]
    assert scopes["strict"].tolist() == [True, True, False, True, False, False]


def test_csv_without_conf_marks_placed_points() -> None:
    table = read_table(require_shared(YOGA_CSV))
    assert table.keypoints.shape == (1006, 17, 3)
    assert set(np.unique(table.keypoints[..., 2])) <= {0.0, 1.0}


def test_train_cli_writes_graph_and_report(tmp_path: Path) -> None:
    """Without negatives: a closed-set classifier, as before (no reject metadata, [N, C] output)."""
    data = require_shared(YOGA_CSV)
    proc = run("train", data, "--out", tmp_path, "--epochs", "5", "--name", "quick")
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "quick.report.json").read_text())
    assert report["test_rows"] == 202 and report["extra"]["onnx_vs_trained"]["argmax_equal"]
    assert report["rejection"] is None and report["sources"][0]["split"] == "seed rows"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["quick.onnx", "quick.onnx.sha256", "quick.report.json"]
    clf = KeypointClassifier(tmp_path / "quick.onnx", verify=True)
    assert clf.names == report["classes"] and clf.threshold is None


def test_train_with_negatives_adds_no_known_pose(yolo11_onnx: Path, tmp_path: Path) -> None:
    """--negatives from a folder of everyday photos: every person the pose model finds is a negative,
    half of the photos held out; the graph gets a "none" column and a threshold chosen on
    out-of-fold predictions, and the report says what it costs and what it rejects. An image that
    cannot be read is skipped and reported (exit 6, as `dataset`), the graph written from the rest."""
    data = require_shared(YOGA_CSV)
    negatives = tmp_path / "everyday"
    negatives.mkdir()
    for image in list_images(require_shared(COCO8_IMAGES)):
        (negatives / image.name).write_bytes(image.read_bytes())
    (negatives / "broken.jpg").write_bytes(b"not a photo")
    proc = run("train", data, "--out", tmp_path, "--epochs", "5", "--name", "quick", "--negatives", negatives,
               "--pose-model", yolo11_onnx, "--max-false-accept", "0.2")  # fmt: skip
    assert proc.returncode == 6, proc.stderr
    assert proc.stderr.count("warning: skipped") == 1 and "broken.jpg" in proc.stderr
    assert proc.stderr.splitlines()[-1].startswith("error: 1 --negatives image(s) could not be read")
    report = json.loads((tmp_path / "quick.report.json").read_text())
    rejection = report["rejection"]
    assert rejection["max_false_accept"] == 0.2 and rejection["validation"]["false_accept"] <= 0.2
    assert rejection["held_out_negatives"]["rows"] >= 1 and rejection["held_out_negatives"]["train_rows"] >= 1
    unreadable = rejection["held_out_negatives"]["unreadable_images"]
    assert len(unreadable) == 1 and "broken.jpg" in unreadable[0]
    assert len(rejection["validation"]["curve"]) == 100 and "no known pose below" in proc.stdout
    assert np.array(report["confusion"]).shape == (6, 6)  # the five poses and "none"
    clf = KeypointClassifier(tmp_path / "quick.onnx", verify=True)
    assert clf.threshold == rejection["threshold"] and clf.outputs(read_table(data).keypoints[:3]).shape == (3, 6)


def test_threshold_that_cannot_hold_the_false_accept_target_says_so(caplog: pytest.LogCaptureFixture) -> None:
    """Negatives the classifier scores 1.0 pass any threshold: the chosen one (capped at 1.0) says so."""
    from edgepose.export.classifier import choose_threshold

    negative = np.array([True] * 4 + [False] * 2)
    with caplog.at_level(logging.WARNING, logger="edgepose"):
        threshold, curve = choose_threshold(np.array([1, 1, 1, 0.3, 0.9, 1], np.float32), ~negative, negative, 0.25)
    assert threshold == 1.0 and curve[-1]["false_accept"] == 0.75 and curve[-1]["accuracy"] == 0.5
    assert "no threshold holds false accepts at 0.25: at 1, the highest, 75.00% of the validation" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="edgepose"):
        threshold, curve = choose_threshold(np.array([1, 0.2, 0.1, 0.3, 0.9, 1], np.float32), ~negative, negative, 0.25)
    assert threshold == 0.3001 and curve[-1]["false_accept"] == 0.25 and not caplog.text


def test_train_svc_exports_under_the_same_contract(yolo11_onnx: Path, samples: list[Path], tmp_path: Path) -> None:
    """The SVC graph (torch features + skl2onnx SVC joined with onnx.compose) takes [N,17,3] -> probs
    and matches sklearn (checked at export); it must still classify with keypoints missing. OpenVINO
    cannot convert sklearn's operators: beside an OpenVINO pose model it runs on onnxruntime, and
    converting it is refused in one line."""
    data = require_shared(YOGA_CSV)
    proc = run("train", data, "--model", "svc", "--out", tmp_path, "--name", "svc")
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "svc.report.json").read_text())
    assert report["model"] == "svc" and report["extra"]["onnx_vs_trained"]["max_abs_prob"] <= 1e-4
    assert report["accuracy"] >= 0.95 and report["accuracy_two_missing"] >= 0.9
    clf = KeypointClassifier(tmp_path / "svc.onnx")
    assert clf.threshold is None
    table = read_table(data)
    probs = clf.probs(table.keypoints[:8])
    assert probs.shape == (8, 5) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert clf.report["model"] == "svc"
    labels = []
    for backend in ("onnxruntime", "openvino"):
        proc = run("predict", samples[1], "-m", yolo11_onnx, "-c", tmp_path / "svc.onnx", "--backend", backend,
                   "--json", "-")  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        labels.append([p["label"] for p in json.loads(proc.stdout)[0]["persons"]])
    assert labels[0] == labels[1] and labels[0]
    converted = run("export", "--weights", tmp_path / "svc.onnx", "--format", "openvino", "--out", tmp_path / "ir")
    assert_one_line_error(converted, 5, "SVMClassifier (ai.onnx.ml), which OpenVINO cannot convert")
    assert not (tmp_path / "ir").exists()


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
    assert table.image_hashes is not None and len(set(table.image_hashes)) == 2  # two photos, two hashes
    assert run("eval", YOGA, out).returncode == 0  # the CSV it writes is one eval reads


def test_a_malformed_image_hash_is_a_one_line_error(tmp_path: Path) -> None:
    text = format_table(KeypointTable(["a.jpg"], ["Tree"], np.ones((1, 17, 3), np.float32), ["ab" * 32]))
    (tmp_path / "good.csv").write_text(text)
    assert read_table(tmp_path / "good.csv").image_hashes == ["ab" * 32]
    (tmp_path / "bad.csv").write_text(text.replace("ab" * 32, "not-a-hash"))
    assert_one_line_error(run("eval", YOGA, tmp_path / "bad.csv"), 3, "bad.csv:2: image_hash must be 64 hex digits")


def test_a_csv_saved_with_a_byte_order_mark_reads_as_without(tmp_path: Path) -> None:
    """Excel's "CSV UTF-8" starts the file with a BOM, which would hide the first column's name."""
    text = format_table(KeypointTable(["a.jpg"], ["Tree"], np.full((1, 17, 3), 0.5, np.float32)))
    (tmp_path / "bom.csv").write_text("\ufeff" + text, encoding="utf-8")
    table = read_table(tmp_path / "bom.csv")
    assert table.image_names == ["a.jpg"] and table.labels == ["Tree"]


def test_dataset_of_a_flat_folder_keeps_every_person(yolo11_onnx: Path, samples: list[Path], tmp_path: Path) -> None:
    """Negatives for `train`: a flat folder, one label, a row per person found."""
    out = tmp_path / "none.csv"
    proc = run("dataset", samples[0].parent, "-m", yolo11_onnx, "--label", "none", "--all-persons", "--out", out)
    assert proc.returncode == 0, proc.stderr
    table = read_table(out)
    found = [len(edgepose.load(yolo11_onnx)(path).persons) for path in samples]
    assert len(table.labels) == sum(found) and set(table.labels) == {"none"}
    assert table.image_hashes[0] == table.image_hashes[found[0] - 1] != table.image_hashes[-1]  # per photo


def test_a_later_csv_with_few_photos_of_a_label_adds_them_to_training() -> None:
    """A supplementary CSV: 7 Tree rows of seed photos (linked to the seed's rows, so on their side of
    the split) and 3 new Tree photos, too few to hold a fifth out: those are trained on, not refused."""
    from edgepose.export.classifier_data import split_sources

    seed = read_table(require_shared(YOGA_CSV))
    tree = [i for i, label in enumerate(seed.labels) if label == "Tree"][:7]
    extra = KeypointTable([seed.image_names[i] for i in tree] + ["new1.jpg", "new2.jpg", "new3.jpg"], ["Tree"] * 10,
                          np.concatenate([seed.keypoints[tree], seed.keypoints[tree[:3]]]))  # fmt: skip
    (seed_train, seed_test), (train, scored) = split_sources([seed, extra], sorted(set(seed.labels)))[0]
    assert len(seed_test) == 202 and {7, 8, 9} <= set(train.tolist())  # the new photos: trained on
    assert set(scored.tolist()) <= set(range(7)) and len(train) + len(scored) == 10
