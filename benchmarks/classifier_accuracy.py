"""Reproduce the default yoga classifier and measure it: the figures of the classifier issue.

    python benchmarks/classifier_accuracy.py [--csv ../shared/data/yoga_pose_keypoint.csv]

Trains each classifier kind (mlp, svc) on the seed split (test_size 0.2, stratified, random_state 2022), then reports hold-out
accuracy, accuracy with 2 random body keypoints missing in every test row (5 draws), mirrored
accuracy, agreement of the ONNX graph with the trained torch/sklearn model on every CSV row, and classifier latency per person on this
CPU (median of repeated batched calls). Writes benchmarks/results/classifier.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from edgepose.classifier import KeypointClassifier
from edgepose.export.classifier import MODELS, drop_keypoints, split_table, train_classifier
from edgepose.keypoint_csv import read_table

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", default=str(ROOT.parent / "shared" / "data" / "yoga_pose_keypoint.csv"))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "classifier.json"))
    args = parser.parse_args()

    table = read_table(args.csv)
    results: dict = {"csv": Path(args.csv).name, "seed_reference_accuracy": 0.91,
                     "cpu": platform.processor() or platform.machine(), "models": {}}  # fmt: skip
    with tempfile.TemporaryDirectory() as work:
        for kind in MODELS:
            report = train_classifier(args.csv, work, model=kind, name=f"yoga-{kind}")
            clf = KeypointClassifier(Path(work) / f"yoga-{kind}.onnx")
            _, x_test, _, y_test = split_table(table, report.classes)
            two_missing = [float((clf.probs(drop_keypoints(x_test, 2, np.random.default_rng(s))).argmax(1) == y_test).mean())
                           for s in range(5)]  # fmt: skip
            batch = np.repeat(x_test[:4], 2, axis=0)  # a frame with 8 persons
            times = []
            for _ in range(2000):
                start = time.perf_counter()
                clf.probs(batch)
                times.append(time.perf_counter() - start)
            results["split"] = report.split
            results["models"][kind] = {
                "accuracy": report.accuracy,
                "accuracy_two_missing_mean_of_5": round(float(np.mean(two_missing)), 4),
                "accuracy_two_missing_min_of_5": round(float(np.min(two_missing)), 4),
                "accuracy_mirrored": report.accuracy_mirrored,
                "onnx_vs_trained": report.extra["onnx_vs_trained"],
                "latency_ms_per_person_p50": round(float(np.median(times)) * 1000 / len(batch), 4),
                "batch": len(batch),
            }
            if kind == "mlp":
                shipped = KeypointClassifier(ROOT / "models" / "yoga-classifier.onnx").probs(x_test)
                results["models"][kind]["shipped_model_same_predictions"] = bool(
                    (shipped.argmax(1) == clf.probs(x_test).argmax(1)).all()
                )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
