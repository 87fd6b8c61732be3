"""Stream FPS in the benchmark harness: a video one frame at a time against edgepose's overlapped
``Stream``, same video, same model, in alternating rounds.

Sequential is what a plain ``cv2.VideoCapture`` loop does: read a frame, ``predictor(image)``
with the engine at its latency defaults, track and smooth, next frame. Overlapped is
``edgepose.Stream``: a reader thread decoding and letterboxing into a bounded queue, several
inferences in flight (OpenVINO async requests under the throughput hint; onnxruntime sessions
of cores/2 threads run from a small pool), postprocessing in frame order. Both sides decode the
same file and run the same tracker (and classifier, when given); with ``draw`` both also draw
each frame and encode an annotated video. Rounds alternate (sequential, overlapped, ...) so load
from other processes hits both alike; the headline is the median of each round's ratio.

Each pass also counts the CPU time of this process (every thread): CPU per frame and how busy it
kept the usable cores say where the time goes. When the overlapped loop keeps every core busy,
more overlap cannot help; ``speedup_ceiling`` (cores / the overlapped loop's CPU per frame,
against the sequential FPS) is the most any schedule of that same work could reach here.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from .device_info import usable_cores
from .errors import InputError
from .predictor import PosePredictor, load
from .stream import Stream, stream_engine
from .track import Stabilizer, TrackOptions
from .video_source import VideoSource

SAMPLE = "sample"  # --video sample: a video made from the bundled photos
# frames per photo: 120 frames (about 4 s a pass) make one round's ratio steady to a few per cent;
# 40 frames let single rounds range from x1.15 to x1.6 on this 2-core machine
SAMPLE_FRAMES_EACH = 60
STREAM_ROUNDS = 6
ENGINE_KEYS = ("device", "threads", "hint", "precision")  # what the report says of the overlapped engine


def sequential(video: Path, predictor: PosePredictor, save: Path | None = None) -> int:
    """One frame at a time, all in this thread; returns the frames processed."""
    from .draw import draw_result
    from .video import VideoRecorder

    source = VideoSource(video)
    stabilizer = Stabilizer(TrackOptions(), predictor.classifier, predictor.conf)
    recorder = VideoRecorder(save, source.fps, (source.width, source.height)) if save else None
    frames = 0
    try:
        while source.grab():
            image = source.retrieve()
            if image is None:
                break
            result = stabilizer(predictor(image, name=str(video), **stabilizer.frame_options), frames / source.fps)
            if recorder:
                recorder.write(draw_result(image, result, predictor.meta.skeleton))
            frames += 1
    except BaseException:
        if recorder:
            recorder.abort()  # a failed pass keeps no half-written video
        raise
    finally:
        source.release()
    if recorder:
        recorder.close()
    return frames


def overlapped(video: Path, predictor: PosePredictor, save: Path | None = None) -> int:
    """The same video through ``edgepose.Stream``; returns the frames processed."""
    from .draw import draw_result
    from .video import VideoRecorder

    frames = 0
    with Stream(video, predictor) as stream:
        recorder = VideoRecorder(save, stream.fps, stream.size) if save else None
        try:
            for image, result in stream.iter_frames():
                if recorder:
                    recorder.write(draw_result(image, result, predictor.meta.skeleton))
                frames += 1
        except BaseException:
            if recorder:
                recorder.abort()
            raise
    if recorder:
        recorder.close()
    return frames


class Pass(NamedTuple):
    """One pass over the video: frames per second of wall time and CPU milliseconds per frame."""

    fps: float
    cpu_ms: float


def _pass(run: Callable[..., int], video: Path, predictor: PosePredictor, save: Path | None) -> Pass:
    wall, cpu = time.perf_counter(), time.process_time()
    frames = run(video, predictor, save)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if not frames:  # OpenCV opens some files that hold no frame it can decode (a still image, say)
        raise InputError(f"{video}: no frame of it could be read as video")
    return Pass(frames / wall, 1000 * cpu / frames)


def stream_fps(model: str | os.PathLike, video: str | os.PathLike, engine: dict[str, Any],
               rounds: int = STREAM_ROUNDS, draw: bool = False) -> dict[str, Any]:  # fmt: skip
    """Sequential and overlapped FPS over ``rounds`` alternating rounds on one engine (``engine``:
    ``edgepose.load`` keywords such as classifier, backend, device, threads, precision)."""
    if rounds < 1:
        raise InputError(f"stream rounds must be at least 1, got {rounds}")
    with tempfile.TemporaryDirectory(prefix="edgepose-stream-") as work:
        path = Path(video) if str(video) != SAMPLE else _sample(Path(work))
        probe = VideoSource(path)  # a bad video fails here, in one line, before anything is timed
        facts = {"video": str(video), "frames": probe.frame_count, "size": [probe.width, probe.height],
                 "fps": round(probe.fps, 2)}  # fmt: skip
        probe.release()
        overlap_engine = stream_engine(model, engine)
        plain = load(model, **engine)
        streaming = load(model, **overlap_engine)
        save = Path(work) / "annotated.mp4" if draw else None
        _pass(sequential, path, plain, save)  # warm-up: first runs allocate
        _pass(overlapped, path, streaming, save)
        seq_passes, ovl_passes = [], []
        for _ in range(rounds):
            seq_passes.append(_pass(sequential, path, plain, save))
            ovl_passes.append(_pass(overlapped, path, streaming, save))
    seq, ovl = [p.fps for p in seq_passes], [p.fps for p in ovl_passes]
    cores = usable_cores()
    return {
        **facts,
        "rounds": rounds,
        "draw": draw,
        "overlap_engine": {k: overlap_engine[k] for k in ENGINE_KEYS if overlap_engine.get(k) is not None},
        "sequential_fps": [round(v, 2) for v in seq],
        "overlap_fps": [round(v, 2) for v in ovl],
        "sequential_fps_median": round(statistics.median(seq), 2),
        "overlap_fps_median": round(statistics.median(ovl), 2),
        # each overlapped round over the sequential round just before it: robust to drifting load
        "speedup": round(statistics.median(o / s for s, o in zip(seq, ovl)), 3),
        "speedup_per_round": [round(o / s, 3) for s, o in zip(seq, ovl)],
        "cores": cores,
        "sequential_cpu_ms_per_frame": round(statistics.median(p.cpu_ms for p in seq_passes), 2),
        "overlap_cpu_ms_per_frame": round(statistics.median(p.cpu_ms for p in ovl_passes), 2),
        # share of the usable cores' time the loop kept busy: cpu per frame x fps / (1000 x cores)
        "sequential_cpu_busy": round(statistics.median(p.cpu_ms * p.fps for p in seq_passes) / (1000 * cores), 3),
        "overlap_cpu_busy": round(statistics.median(p.cpu_ms * p.fps for p in ovl_passes) / (1000 * cores), 3),
        "speedup_ceiling": round(
            statistics.median(1000 * cores / o.cpu_ms / s.fps for s, o in zip(seq_passes, ovl_passes)), 3
        ),
    }


def _sample(work: Path) -> Path:
    from .video import sample_video

    return sample_video(work / "sample.mp4", frames_each=SAMPLE_FRAMES_EACH)
