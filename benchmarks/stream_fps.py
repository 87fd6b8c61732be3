"""Stream FPS with overlap vs one frame at a time, on the same video, in the same run.

    python benchmarks/stream_fps.py [--model models/yolo11n-pose.onnx] [--rounds 12] [--frames-each 20] [--save]

Sequential: read a frame, ``predictor(image)`` (engine at its latency defaults: onnxruntime on
every core, OpenVINO's latency hint), track/smooth, next frame. Overlap: ``edgepose.Stream`` on
the same file (reader thread + bounded queue, several inferences in flight: OpenVINO async infer
requests under the throughput hint; one onnxruntime session of cores/2 threads run from 2 threads).
Both ends include decoding the video and the same tracker; with ``--save`` both also draw and
encode an annotated video. Runs are short and alternate (seq, overlap, seq, ...) so load from
other processes hits both alike; the headline is the median over rounds of overlap FPS / the
sequential FPS of the same round (the ratio of median FPS is kept too).
Writes benchmarks/results/stream.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import cv2

import edgepose
from edgepose.device_info import cpu_model
from edgepose.draw import draw_result
from edgepose.stream import Stream, stream_engine
from edgepose.track import Stabilizer, TrackOptions
from edgepose.video import VideoRecorder, sample_video

ROOT = Path(__file__).resolve().parent.parent


def sequential(video: Path, predictor: edgepose.PosePredictor, save: Path | None) -> int:
    """One frame at a time, all in this thread: what a plain loop over cv2.VideoCapture does."""
    capture = cv2.VideoCapture(str(video))
    stabilizer = Stabilizer(TrackOptions(), predictor.classifier)
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    writer = None
    if save:
        size = (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        writer = cv2.VideoWriter(str(save), cv2.VideoWriter_fourcc(*"mp4v"), capture.get(cv2.CAP_PROP_FPS), size)
    frames = 0
    while True:
        ok, image = capture.read()
        if not ok:
            break
        result = stabilizer(predictor(image, name=str(video)), frames / fps)
        if writer is not None:
            writer.write(draw_result(image, result, predictor.meta.skeleton))
        frames += 1
    capture.release()
    if writer is not None:
        writer.release()
    return frames


def overlapped(video: Path, predictor: edgepose.PosePredictor, save: Path | None) -> int:
    frames = 0
    with Stream(video, predictor) as stream:
        recorder = VideoRecorder(save, stream.fps, stream.size) if save else None
        for image, result in stream.iter_frames():
            if recorder:
                recorder.write(draw_result(image, result, predictor.meta.skeleton))
            frames += 1
        if recorder:
            recorder.close()
    return frames


def timed(run, *args) -> float:  # noqa: ANN001
    start = time.perf_counter()
    frames = run(*args)
    return frames / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(ROOT / "models" / "yolo11n-pose.onnx"))
    parser.add_argument("--classifier", default=str(ROOT / "models" / "yoga-classifier.onnx"))
    parser.add_argument("--backends", default="onnxruntime,openvino")
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--frames-each", type=int, default=20, help="frames per sample photo in the test video")
    parser.add_argument("--save", action="store_true", help="also draw and encode an annotated video")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "stream.json"))
    args = parser.parse_args()

    results: dict = {"load_average_before": [round(v, 2) for v in os.getloadavg()],
                     "model": Path(args.model).name, "classifier": Path(args.classifier).name,
                     "cpu": cpu_model(), "cores": os.cpu_count(),
                     "rounds": args.rounds, "save": args.save, "backends": {}}  # fmt: skip
    with tempfile.TemporaryDirectory() as work:
        video = sample_video(Path(work) / "bench.mp4", frames_each=args.frames_each)
        results["video"] = {"frames": 2 * args.frames_each, "size": [1280, 720], "fps": 25}
        save = Path(work) / "out.mp4" if args.save else None
        for backend in args.backends.split(","):
            engine = {"backend": backend}
            try:
                plain = edgepose.load(args.model, classifier=args.classifier, **engine)
            except edgepose.MissingExtraError as exc:
                print(f"{backend}: skipped ({exc})")
                continue
            streaming = edgepose.load(args.model, classifier=args.classifier, **stream_engine(args.model, engine))
            timed(sequential, video, plain, save)  # warm-up both (first runs allocate)
            timed(overlapped, video, streaming, save)
            seq, ovl = [], []
            for _ in range(args.rounds):
                seq.append(timed(sequential, video, plain, save))
                ovl.append(timed(overlapped, video, streaming, save))
            row = {
                "sequential_fps": [round(v, 2) for v in seq],
                "overlap_fps": [round(v, 2) for v in ovl],
                "sequential_fps_median": round(statistics.median(seq), 2),
                "overlap_fps_median": round(statistics.median(ovl), 2),
                # each overlap run over the sequential run just before it: robust to load that drifts
                "speedup_per_round": [round(o / s, 3) for s, o in zip(seq, ovl)],
                "speedup": round(statistics.median(o / s for s, o in zip(seq, ovl)), 3),
                "speedup_of_medians": round(statistics.median(ovl) / statistics.median(seq), 3),
                "overlap_engine": {k: v for k, v in stream_engine(args.model, engine).items() if k != "backend"},
            }
            results["backends"][backend] = row
            print(f"{backend}: sequential {row['sequential_fps_median']} fps, overlap {row['overlap_fps_median']} fps "
                  f"-> {row['speedup']}x  (rounds: {row['sequential_fps']} vs {row['overlap_fps']}; "
                  f"per round {row['speedup_per_round']})")  # fmt: skip
    results["load_average_after"] = [round(v, 2) for v in os.getloadavg()]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
