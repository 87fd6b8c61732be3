"""What a kiosk screen shows over time: person-count changes, id changes and label changes on the
static segments of a real video, with edgepose's stream defaults (confirmation of new persons and
ByteTrack's low-score association), with each alone, and with neither.

    python benchmarks/track_stability.py [--model M ...] [--frames-each 60] [--photos DIR]

The video is made as ``edgepose bench --video sample``'s is: each photo shown for
``--frames-each`` frames at 1280x720 with a few pixels of shake. Photos: the two bundled ones and,
when ../shared/data is there, coco8-pose's eight (or any --photos folder). On a static segment
the right answer is a constant person count, one id per person and one label per id; every change
counted here is a flicker a kiosk user would see. Writes benchmarks/results/track_stability.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import edgepose
from edgepose.sources import list_images, sample_images
from edgepose.stream import Stream, stream_engine
from edgepose.track import TrackOptions
from edgepose.video import sample_video

ROOT = Path(__file__).resolve().parent.parent
COCO8 = ROOT.parent / "shared" / "data" / "coco8-pose" / "images"
SETTINGS = {
    "defaults": TrackOptions(),
    "confirmation only": TrackOptions(low_conf=1.0),
    "low-score association only": TrackOptions(confirm=1),
    "neither (every person at --conf, from its first frame)": TrackOptions(confirm=1, low_conf=1.0),
}


TOTALS = ("person_count_changes", "id_set_changes", "label_changes", "frames_with_nobody")


def flicker(results: list[edgepose.Result], segment: range) -> dict:
    """Changes from one frame to the next within ``segment`` (frame indices)."""
    frames = [results[i] for i in segment]
    counts = [len(r.persons) for r in frames]
    ids = [sorted(p.id for p in r.persons) for r in frames]
    labels: dict[int, str] = {}
    label_changes = 0
    for frame in frames:
        for person in frame.persons:
            label_changes += person.id in labels and labels[person.id] != person.label
            labels[person.id] = person.label
    return {
        "person_count_changes": sum(a != b for a, b in zip(counts, counts[1:])),
        "id_set_changes": sum(a != b for a, b in zip(ids, ids[1:])),
        "label_changes": label_changes,
        "distinct_ids": len({i for frame in ids for i in frame}),
        "frames_with_nobody": counts.count(0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", help="repeatable; default: the static and the dynamic graph")
    parser.add_argument("--classifier", default=str(ROOT / "models" / "yoga-classifier.onnx"))
    parser.add_argument("--frames-each", type=int, default=60)
    parser.add_argument("--photos", help="folder of photos after the bundled two (default: coco8-pose's, if present)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "track_stability.json"))
    args = parser.parse_args()
    models = args.model or [
        str(ROOT / "models" / "yolo11n-pose.onnx"),
        str(ROOT / "models" / "dynamic" / "yolo11n-pose.onnx"),
    ]
    n = args.frames_each
    folder = Path(args.photos) if args.photos else COCO8
    photos = sample_images()
    if folder.is_dir():  # coco8-pose keeps its photos in images/train and images/val
        for sub in sorted(d for d in folder.iterdir() if d.is_dir()) or [folder]:
            photos += list_images(sub)
    segments = {photo.name: range(i * n, (i + 1) * n) for i, photo in enumerate(photos)}
    runs = []
    with tempfile.TemporaryDirectory() as work:
        video = sample_video(Path(work) / "sample.mp4", frames_each=n, photos=photos)
        for model in models:
            predictor = edgepose.load(model, classifier=args.classifier, **stream_engine(model, {}))
            for name, options in SETTINGS.items():
                results = list(Stream(video, predictor, track=options))
                run = {"model": str(Path(model).relative_to(ROOT) if Path(model).is_relative_to(ROOT) else model),
                       "settings": name, "low_conf": options.low_conf, "confirm": options.confirm,
                       "segments": {photo: flicker(results, frames) for photo, frames in segments.items()}}  # fmt: skip
                run["total"] = {key: sum(seg[key] for seg in run["segments"].values()) for key in TOTALS}
                runs.append(run)
                print(json.dumps({k: run[k] for k in ("model", "settings", "total")}))
    report = {"video": {"photos": [p.name for p in photos], "frames_each": n, "size": [1280, 720], "fps": 25.0},
              "conf": 0.25, "runs": runs}  # fmt: skip
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
