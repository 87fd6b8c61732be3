"""Train the yoga classifier with "no known pose" and measure it end to end: the classifier issue's figures.

    python benchmarks/classifier_accuracy.py [--data ../shared/data] [--pose-model models/yolo11n-pose.onnx]
        [--out benchmarks/results/classifier.json] [--ship] [--train-seeds 5]

1. Keypoints through edgepose's own pose model (``edgepose dataset``'s code): the most confident
   person of each yoga-train photo (with its image hash), and every person of coco-val-pose and
   coco8-pose (everyday people in no yoga pose).
2. Each classifier kind (mlp, svc) is trained on the seed CSV and yoga-train, split together (a
   photo in both, by label and name, and near copies, by image hash, stay on one side; the seed's
   own split decides the photos it holds), and half of the everyday photos' persons (split by
   photo); the threshold comes from out-of-fold predictions of those rows (folds by photo).
3. Measured on what training never saw: the seed CSV's test split (20 %, stratified,
   random_state 2022; with 2 body keypoints missing, 5 draws; mirrored), and end to end (image ->
   pose -> classifier, through the runtime's predictor and classifier) on yoga-train's held-out photos
   (the most confident person must get the folder's label; "no known pose" counts as wrong) and on
   the held-out everyday photos (share of persons scoring >= 0.5 given a yoga label), plus both
   against the threshold. ``--ship`` copies the MLP to models/yoga-classifier.* first, so the
   shipped graph is the one measured.
4. The folder labels are noisy, so the yoga figures are also given on the labels of a photo-by-photo
   review (``yoga_train_review.csv``): ``family`` leaves out the photos that show a pose outside the
   five (Warrior I, side angle, ...), ``strict`` also the variants the folders hold (side and reverse
   planks under Plank, chair-seated poses); a photo showing another of the five counts under it,
   and a photo whose bytes differ from the reviewed ones drops out (``photos_not_reviewed``).
5. ``--train-seeds N`` trains the MLP again with training seeds 1..N-1 (same split, same recipe):
   how much of a figure near its target is the draw of one training run.

Writes benchmarks/results/classifier.json and classifier_threshold.png.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

import edgepose
from edgepose.classifier import KeypointClassifier
from edgepose.export.classifier import MODELS, drop_keypoints, mirror, train_classifier
from edgepose.export.classifier_data import split_negatives, split_rows, split_sources
from edgepose.integrity import write_checksum
from edgepose.keypoint_csv import format_table, read_table, table_from_images
from edgepose.metadata import sha256_file
from edgepose.sources import list_images

ROOT = Path(__file__).resolve().parent.parent
EVERYDAY = ("coco-val-pose/images/val", "coco8-pose/images/train", "coco8-pose/images/val")
PERSON_SCORE = 0.5  # everyday persons counted: detection score at least this (the figure)
REVIEW = ROOT / "benchmarks" / "yoga_train_review.csv"  # every yoga-train photo, looked at one by one


def build_csvs(data: Path, pose_model: str, work: Path) -> tuple[Path, Path, int]:
    """yoga-train (best person per photo) and everyday persons (all), as keypoint CSVs in ``work``."""
    predictor = edgepose.load(pose_model)
    yoga = table_from_images(predictor, [(folder.name, path) for folder in sorted((data / "yoga-train").iterdir())
                                         if folder.is_dir() for path in list_images(folder)])  # fmt: skip
    everyday = table_from_images(predictor, [("none", path) for sub in EVERYDAY for path in list_images(data / sub)],
                                 all_persons=True)  # fmt: skip
    yoga_csv, everyday_csv = work / "yoga-train.csv", work / "everyday.csv"
    yoga_csv.write_text(format_table(yoga.table))
    everyday_csv.write_text(format_table(everyday.table))
    return yoga_csv, everyday_csv, len(yoga.no_person)


def held_out_photos(data: Path, seed_csv: Path, yoga_csv: Path,
                    everyday_csv: Path) -> tuple[list[tuple[Path, str]], list[Path]]:  # fmt: skip
    """The photos training never saw, found by the very split functions training used."""
    yoga = read_table(yoga_csv)
    _, (_, test) = split_sources([read_table(seed_csv), yoga], sorted(set(yoga.labels)))[0]
    photos = [(data / "yoga-train" / yoga.labels[i] / yoga.image_names[i], yoga.labels[i]) for i in test]
    everyday = read_table(everyday_csv)
    _, held = split_negatives(everyday)
    names = {everyday.image_names[i] for i in held}
    images = [path for sub in EVERYDAY for path in list_images(data / sub) if path.name in names]
    return photos, images


def reviewed_labels(photos: list[tuple[Path, str]]) -> list[str | None]:
    """Each photo's label after the review: the pose it shows (its folder's, or one of the other
    classes), "variant" (a variant its folder holds that is not the pose itself), "other" (a pose
    outside the classes), or None where the review did not see it (or its bytes changed since)."""
    with REVIEW.open(newline="") as f:
        reviewed = {(r["label"], r["image_name"]): (r["sha256"], r["review"]) for r in csv.DictReader(f)}
    out = []
    for path, label in photos:
        sha, verdict = reviewed.get((label, path.name), ("", None))
        out.append(None if sha != sha256_file(path) else label if verdict == "ok" else verdict)
    return out


class Seen(NamedTuple):
    """What the pose model saw, once for every graph measured: the most confident person of each
    yoga photo ([1, K, 3] normalised keypoints, None where it found nobody) and every everyday person
    scoring at least ``PERSON_SCORE``."""

    yoga: list[np.ndarray | None]
    everyday: list[np.ndarray]  # one array per photo with such persons


def see(pose_model: str, photos: list[tuple[Path, str]], everyday: list[Path]) -> Seen:
    """Image -> pose through the runtime's predictor."""
    predictor = edgepose.load(pose_model)
    yoga = []
    for path, _ in photos:
        result = predictor(path)
        persons = result.persons
        yoga.append(result.keypoints_xyn([max(persons, key=lambda p: p.score)]) if persons else None)
    people = []
    for path in everyday:
        result = predictor(path)
        persons = [p for p in result.persons if p.score >= PERSON_SCORE]
        if persons:
            people.append(result.keypoints_xyn(persons))
    return Seen(yoga, people)


def end_to_end(graph: Path, seen: Seen, labels: list[str], reviewed: list[str | None]) -> dict:
    """Pose -> classifier through the runtime's classifier (one ``decide`` call per image, as
    ``predict`` makes); figures at the graph's threshold and the curve against it, and the yoga
    figures on the reviewed labels."""
    clf = KeypointClassifier(graph)
    known_yoga, said = [], []  # each photo's most confident person: pose_score, the label given a known pose
    for kpts in seen.yoga:
        if kpts is None:
            known_yoga.append(0.0)
            said.append(None)
            continue
        _, probs, known = clf.decide(kpts)
        known_yoga.append(float(known[0]))
        said.append(clf.names[int(probs[0].argmax())])
    known_yoga = np.array(known_yoga)
    right = np.array([s == label for s, label in zip(said, labels)])
    known_everyday = np.array([score for kpts in seen.everyday for score in clf.decide(kpts)[2]])
    right_reviewed, scopes = reviewed_scopes(said, labels, reviewed, clf.names)
    curve = [{"threshold": round(float(t), 2), "yoga_correct": _share((known_yoga >= t) & right),
              "yoga_correct_family": _share(((known_yoga >= t) & right_reviewed)[scopes["family"]]),
              "everyday_labelled": _share(known_everyday >= t)}
             for t in np.arange(0.0, 1.0, 0.01)]  # fmt: skip
    t = clf.threshold
    figures = {"photos_not_reviewed": sum(r is None for r in reviewed)}
    for scope, keep in scopes.items():
        figures[scope] = {"yoga_photos": int(keep.sum()),
                          "yoga_correct": _share(((known_yoga >= t) & right_reviewed)[keep]),
                          "yoga_correct_without_rejection": _share(right_reviewed[keep])}  # fmt: skip
    other = np.array([r == "other" for r in reviewed])  # poses outside the five: "no known pose" would be right
    figures["other_poses"] = {"photos": int(other.sum()), "given_a_label": _share((known_yoga >= t)[other])}
    return {"yoga_photos": len(labels), "everyday_persons": len(known_everyday), "threshold": t,
            "yoga_correct": _share((known_yoga >= t) & right), "yoga_correct_without_rejection": _share(right),
            "everyday_labelled": _share(known_everyday >= t), "reviewed_labels": figures,
            "curve": curve}  # fmt: skip


def reviewed_scopes(said: list[str | None], labels: list[str], reviewed: list[str | None],
                    names: list[str]) -> tuple[np.ndarray, dict[str, np.ndarray]]:  # fmt: skip
    """Whether the label each photo was given is its reviewed label (a variant's is its folder's), and
    the photos each reviewed figure keeps: ``family`` those showing one of the classes or a variant
    of their folder's, ``strict`` those showing one of the classes."""
    truth = [r if r in names else label for r, label in zip(reviewed, labels)]
    right = np.array([s == t for s, t in zip(said, truth)])
    return right, {"family": np.array([r is not None and r != "other" for r in reviewed]),
                   "strict": np.array([r in names for r in reviewed])}  # fmt: skip


def _share(hits: np.ndarray) -> float | None:
    """The share of True, to 4 places; None for no photos (a review that matches none of them)."""
    return round(float(hits.mean()), 4) if hits.size else None


def training_seed_figures(seed: int, figures: dict) -> dict:
    """The end-to-end figures of the MLP trained with one training seed, without the curve."""
    kept = ("threshold", "yoga_correct", "everyday_labelled", "reviewed_labels")
    return {"training_seed": seed, **{k: figures[k] for k in kept}}


def seed_figures(graph: Path, seed_csv: Path) -> dict:
    """The seed CSV's test split: accuracy ("no known pose" wrong), 2 body keypoints missing (5 draws), mirrored."""
    clf = KeypointClassifier(graph)
    table = read_table(seed_csv)
    y = np.array([clf.names.index(label) for label in table.labels])
    _, test = split_rows(table, y)
    x, y = table.keypoints[test], y[test]

    def acc(kpts: np.ndarray) -> float:
        return float((clf.decide(kpts)[0] == y).mean())

    two = [acc(drop_keypoints(x, 2, np.random.default_rng(s))) for s in range(5)]
    batch = np.repeat(x[:4], 2, axis=0)  # a frame with 8 persons
    times = []
    for _ in range(2000):
        start = time.perf_counter()
        clf.decide(batch)
        times.append(time.perf_counter() - start)
    return {"test_rows": len(y), "accuracy": round(acc(x), 4), "no_pose": int((clf.decide(x)[0] < 0).sum()),
            "accuracy_two_missing_mean_of_5": round(float(np.mean(two)), 4),
            "accuracy_two_missing_min_of_5": round(float(np.min(two)), 4), "accuracy_mirrored": round(acc(mirror(x)), 4),
            "latency_ms_per_person_p50": round(float(np.median(times)) * 1000 / len(batch), 4)}  # fmt: skip


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results["models"]), figsize=(6 * len(results["models"]), 4), squeeze=False)
    for ax, (kind, figures) in zip(axes[0], results["models"].items()):
        curve = figures["end_to_end"]["curve"]
        ts = [p["threshold"] for p in curve]
        ax.plot(ts, [p["yoga_correct"] for p in curve], label="held-out yoga photos labelled correctly")
        ax.plot(ts, [p["yoga_correct_family"] for p in curve], color="C0", linestyle=":",
                label="the same on the reviewed labels (family)")  # fmt: skip
        ax.plot(ts, [p["everyday_labelled"] for p in curve], label="held-out everyday persons given a yoga label")
        ax.axvline(figures["end_to_end"]["threshold"], color="grey", linestyle="--", label="graph's threshold")
        ax.axhline(0.9, color="C0", linewidth=0.5)
        ax.axhline(0.05, color="C1", linewidth=0.5)
        ax.set(title=f"{kind}: end to end (YOLO11n-pose -> classifier)", xlabel="threshold on pose_score", ylim=(0, 1))
        ax.legend(fontsize=8, loc="center left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--pose-model", default=str(ROOT / "models" / "yolo11n-pose.onnx"))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "classifier.json"))
    parser.add_argument("--ship", action="store_true", help="Copy the MLP to models/yoga-classifier.* first.")
    parser.add_argument("--train-seeds", type=int, default=1, choices=range(1, 21), metavar="N",
                        help="Also train the MLP with training seeds 1..N-1; their end-to-end figures.")  # fmt: skip
    args = parser.parse_args()

    data = Path(args.data)
    seed_csv = data / "yoga_pose_keypoint.csv"
    results: dict = {"pose_model": Path(args.pose_model).name, "cpu": platform.processor() or platform.machine(),
                     "models": {}}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        yoga_csv, everyday_csv, no_person = build_csvs(data, args.pose_model, work)
        photos, everyday = held_out_photos(data, seed_csv, yoga_csv, everyday_csv)
        reviewed = reviewed_labels(photos)
        seen = see(args.pose_model, photos, everyday)
        labels = [label for _, label in photos]
        results["yoga_photos_without_person"] = no_person
        for kind in MODELS:
            report = train_classifier([seed_csv, yoga_csv], work, model=kind, name=f"yoga-{kind}",
                                      negatives=[everyday_csv])  # fmt: skip
            graph = work / f"yoga-{kind}.onnx"
            if kind == "mlp" and args.ship:
                for suffix in (".onnx", ".report.json"):
                    shutil.copy(work / f"yoga-{kind}{suffix}", ROOT / "models" / f"yoga-classifier{suffix}")
                write_checksum(ROOT / "models" / "yoga-classifier.onnx")
            results["models"][kind] = {
                "seed_test_split": seed_figures(graph, seed_csv),
                "end_to_end": end_to_end(graph, seen, labels, reviewed),
                "training": {k: report.to_dict()[k] for k in ("train_rows", "sources", "rejection", "seconds")},
            }
        if args.train_seeds > 1:
            runs = results["mlp_training_seeds"] = [training_seed_figures(0, results["models"]["mlp"]["end_to_end"])]
            for seed in range(1, args.train_seeds):
                train_classifier([seed_csv, yoga_csv], work, model="mlp", seed=seed, name=f"yoga-mlp-{seed}",
                                 negatives=[everyday_csv])  # fmt: skip
                runs.append(training_seed_figures(seed, end_to_end(work / f"yoga-mlp-{seed}.onnx", seen, labels,
                                                                   reviewed)))  # fmt: skip
        shipped = ROOT / "models" / "yoga-classifier.onnx"
        results["shipped_is_the_mlp"] = shipped.read_bytes() == (work / "yoga-mlp.onnx").read_bytes()
    for figures in results["models"].values():  # the curve is in the plot; keep the JSON readable
        figures["training"]["rejection"]["validation"].pop("curve")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    plot(results, out.with_name("classifier_threshold.png"))
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({k: {m: {"seed": v["seed_test_split"], "e2e": {x: y for x, y in v["end_to_end"].items()
                                                                    if x != "curve"}}
                          for m, v in results["models"].items()} if k == "models" else v
                      for k, v in results.items()}, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
